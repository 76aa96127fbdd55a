"""On-screen text: RapidOCR (PP-OCR detection + recognition, ONNX models inside the PyPI wheel)."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from facevid.udfs.base import cached_model


def _engine(max_side: int) -> Any:
    from rapidocr import RapidOCR

    # limit_type "max": detection never upscales (its default scales the SHORT side up to 736 px,
    # 3x the work on a 480 px frame); no angle classifier: overlay text is upright
    engine = RapidOCR(params={"Global.use_cls": False, "Det.limit_type": "max", "Det.limit_side_len": max_side})
    logging.getLogger("RapidOCR").setLevel(logging.ERROR)  # it logs every model load and empty frame
    return engine


def count_text(bgr: np.ndarray, min_score: float = 0.5, max_side: int = 640) -> tuple[int, str]:
    """(non-space characters recognised with confidence >= ``min_score``, the text) in one frame,
    detected at most ``max_side`` pixels on the longest side."""
    result = cached_model(("rapidocr", max_side), lambda: _engine(max_side))(bgr)
    texts = [t for t, s in zip(result.txts or (), result.scores or (), strict=False) if s >= min_score]
    return sum(len("".join(t.split())) for t in texts), " ".join(texts)
