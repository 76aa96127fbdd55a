"""Pluggable learned quality scores: any ONNX model that maps an image to a number.

``aesthetic`` and ``iqa`` (e.g. a LAION aesthetic head, MUSIQ/CLIP-IQA) see the whole frame; ``fiqa``
(face image quality, e.g. DSL-FIQA) and ``age`` see the main-track face box. Each is enabled by its
``<name>_path`` param of the quality stage: a local ``.onnx`` file (``*_path`` params in
pipeline.yml are relative to the config file). Input: RGB, resized to the model's fixed input size
(else ``scorer_size``), ``(x / 255 - scorer_mean) / scorer_std``, NCHW float32, the sampled frames
as one batch when the batch axis is dynamic. The score is the mean of the model's first output
over the frames. A score without a model is null and the process logs that once. The model I/O
helpers (``input_size``, ``scorer_input``, ``run_scorer``) also serve the evaluation scorers
(``facevid.udfs.metrics.image_quality``).
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from facevid.udfs.base import cached_model

SCORES = ("aesthetic", "iqa", "fiqa", "age")
ON_FACE = frozenset({"fiqa", "age"})
log = logging.getLogger("facevid.quality")
_warned: set[tuple[str, ...]] = set()
_warn_lock = threading.Lock()


def model_paths(params: Any) -> dict[str, str]:
    """The configured score models, ``{score: path}``."""
    return {n: p for n in SCORES if (p := getattr(params, f"{n}_path", None))}


def path_checks(params: Any) -> list[tuple[bool, str]]:
    """``facevid.udfs.base.validate`` checks: every configured model is an existing file."""
    return [(Path(p).is_file(), f"{n}_path {p} does not exist (a local .onnx file)")
            for n, p in model_paths(params).items()]


def warn_disabled(params: Any) -> None:
    """Log once per process (per set of disabled scores) which learned scores are null and why."""
    off = tuple(n for n in SCORES if n not in model_paths(params))
    with _warn_lock:
        if not off or off in _warned:
            return
        _warned.add(off)
    log.warning("quality: learned scores %s are disabled (null columns); to enable them set %s in "
                "stages.quality.params of pipeline.yml to ONNX models (image -> score)",
                ", ".join(off), ", ".join(f"{n}_path" for n in off))


def onnx_session(path: str, threads: int = 1) -> Any:
    """A CPU ONNX Runtime session, single-threaded by default (one per worker thread; the engine runs
    several)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.log_severity_level = 3
    return ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])


def _fixed(dim: Any) -> int | None:
    return dim if isinstance(dim, int) and dim > 0 else None


def input_size(session: Any, default: int) -> tuple[int, int]:
    """``(width, height)`` a scorer takes: its fixed NCHW input size, else ``default`` for a free axis."""
    shape = session.get_inputs()[0].shape
    h = _fixed(shape[2]) if len(shape) == 4 else None
    w = _fixed(shape[3]) if len(shape) == 4 else None
    return w or default, h or default


def scorer_input(img: np.ndarray, size: tuple[int, int], mean: Any, std: Any, bgr: bool = True) -> np.ndarray:
    """One image (HWC uint8, BGR unless ``bgr`` is False) as a scorer input: resized to ``size``
    (w, h; INTER_AREA), RGB, ``(x / 255 - mean) / std``, CHW float32."""
    small = cv2.resize(img, size, interpolation=cv2.INTER_AREA)
    rgb = cv2.cvtColor(small, cv2.COLOR_BGR2RGB) if bgr else small
    x = (rgb.astype(np.float32) / 255.0 - np.float32(mean)) / np.float32(std)
    return x.transpose(2, 0, 1)


def run_scorer(session: Any, inputs: list[np.ndarray], max_batch: int | None = None) -> np.ndarray:
    """Per-image scores (float64, one per input: the mean of its row of the model's first output).
    One batch when the batch axis is dynamic (chunks of ``max_batch``), else one image per call."""
    inp = session.get_inputs()[0]
    step = 1 if _fixed(inp.shape[0]) else (max_batch or max(len(inputs), 1))
    out = [np.asarray(session.run(None, {inp.name: np.stack(inputs[i:i + step])})[0], np.float64)
           for i in range(0, len(inputs), step)]
    return np.concatenate([o.reshape(o.shape[0], -1).mean(axis=1) for o in out]) if out else np.zeros(0)


class LearnedScores:
    """Collects the model inputs of a clip's scored frames, then runs each model once."""

    def __init__(self, params: Any) -> None:
        self.params = params
        self.paths = model_paths(params)
        self.inputs: dict[str, list[np.ndarray]] = {n: [] for n in self.paths}

    def __bool__(self) -> bool:
        return bool(self.paths)

    def _model(self, name: str) -> Any:
        path = self.paths[name]
        return cached_model(("onnx", path), lambda: onnx_session(path))

    def add(self, frame: np.ndarray, box: tuple[int, int, int, int] | None, missing_only: bool = False) -> None:
        """Prepare one frame (BGR) for every model (or those without a frame yet); face models need
        the face ``box`` (x0, y0, x1, y1) in the frame's pixels."""
        p = self.params
        for name in self.paths:
            if missing_only and self.inputs[name]:
                continue
            img = frame
            if name in ON_FACE:
                if box is None:
                    continue
                img = frame[box[1]:box[3], box[0]:box[2]]
            size = input_size(self._model(name), p.scorer_size)
            self.inputs[name].append(scorer_input(img, size, p.scorer_mean, p.scorer_std))

    def pending(self) -> bool:
        """True while no frame has been prepared for some model."""
        return any(not v for v in self.inputs.values())

    def scores(self) -> dict[str, float | None]:
        """``{score: mean model output or None}`` for every score (disabled ones are None)."""
        out: dict[str, float | None] = {n: None for n in SCORES}
        for name, xs in self.inputs.items():
            if not xs:
                continue
            out[name] = float(np.mean(run_scorer(self._model(name), xs)))
        return out
