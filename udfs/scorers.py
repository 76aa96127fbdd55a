"""Pluggable learned quality scores: any ONNX model that maps an image to a score.

``aesthetic`` and ``iqa`` (MUSIQ-style image quality) see the whole frame; ``fiqa`` (face image
quality, e.g. DSL-FIQA) and ``age`` see the face box. Each is enabled by its ``<name>_path`` in
the quality stage's params (a local ``.onnx`` file). Input: RGB resized to ``scorer_size``,
ImageNet-normalised, NCHW float32; the score is the mean of the model's first output. A score
without a path is null and the run says so once.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from udfs.base import cached_model

SCORES = ("aesthetic", "iqa", "fiqa", "age")
_ON_FACE = {"fiqa", "age"}
_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
_STD = np.array([0.229, 0.224, 0.225], np.float32)
_warned = threading.Event()
log = logging.getLogger("facevid.quality")


def scorer_paths(params: Any) -> dict[str, tuple[bool, str]]:
    """Validation checks for each configured score model path."""
    checks = {}
    for name in SCORES:
        path = getattr(params, f"{name}_path", None)
        checks[name] = (path is None or Path(path).is_file(), f"{name}_path {path} does not exist")
    return checks


def _session(path: str) -> Any:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    return ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])


def _prepare(bgr: np.ndarray, size: int) -> np.ndarray:
    rgb = cv2.cvtColor(cv2.resize(bgr, (size, size), interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2RGB)
    x = (rgb.astype(np.float32) / 255.0 - _MEAN) / _STD
    return x.transpose(2, 0, 1)[None]


def score_image(params: Any, frame: np.ndarray, box: np.ndarray | None) -> dict[str, float]:
    """Scores of the configured models on one frame (face models need ``box``, original pixels)."""
    enabled = {n: getattr(params, f"{n}_path") for n in SCORES if getattr(params, f"{n}_path", None)}
    if len(enabled) < len(SCORES) and not _warned.is_set():
        _warned.set()
        off = [n for n in SCORES if n not in enabled]
        log.warning("quality: learned scores %s are off (null); set %s in the quality stage's params "
                    "to an ONNX model to enable them", ", ".join(off), ", ".join(f"{n}_path" for n in off))
    out: dict[str, float] = {}
    for name, path in enabled.items():
        img = frame
        if name in _ON_FACE:
            if box is None:
                continue
            x, y, w, h = (int(v) for v in box)
            img = frame[max(0, y):max(0, y) + max(1, h), max(0, x):max(0, x) + max(1, w)]
            if img.size == 0:
                continue
        sess = cached_model(("onnx", path), lambda p=path: _session(p))
        result = sess.run(None, {sess.get_inputs()[0].name: _prepare(img, params.scorer_size)})
        out[name] = float(np.mean(result[0]))
    return out
