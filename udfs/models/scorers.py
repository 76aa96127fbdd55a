"""Pluggable learned quality scores: any ONNX model that maps an image to a number.

``aesthetic`` and ``iqa`` (e.g. a LAION aesthetic head, MUSIQ/CLIP-IQA) see the whole frame; ``fiqa``
(face image quality, e.g. DSL-FIQA) and ``age`` see the main-track face box. Each is enabled by its
``<name>_path`` param of the quality stage: a local ``.onnx`` file (``*_path`` params in
pipeline.yml are relative to the config file). Input: RGB, resized to the model's fixed input size
(else ``scorer_size``), ``(x / 255 - scorer_mean) / scorer_std``, NCHW float32, the sampled frames
as one batch when the batch axis is dynamic. The score is the mean of the model's first output
over the frames. A score without a model is null and the process logs that once.
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


def onnx_session(path: str) -> Any:
    """A single-threaded CPU ONNX Runtime session (one per worker thread; the engine runs several)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1  # one per worker thread; the engine runs several
    opts.log_severity_level = 3
    return ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])


def _fixed(dim: Any) -> int | None:
    return dim if isinstance(dim, int) and dim > 0 else None


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
            shape = self._model(name).get_inputs()[0].shape
            h = _fixed(shape[2]) if len(shape) == 4 else None
            w = _fixed(shape[3]) if len(shape) == 4 else None
            rgb = cv2.cvtColor(cv2.resize(img, (w or p.scorer_size, h or p.scorer_size),
                                          interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2RGB)
            x = (rgb.astype(np.float32) / 255.0 - np.float32(p.scorer_mean)) / np.float32(p.scorer_std)
            self.inputs[name].append(x.transpose(2, 0, 1))

    def pending(self) -> bool:
        """True while no frame has been prepared for some model."""
        return any(not v for v in self.inputs.values())

    def scores(self) -> dict[str, float | None]:
        """``{score: mean model output or None}`` for every score (disabled ones are None)."""
        out: dict[str, float | None] = {n: None for n in SCORES}
        for name, xs in self.inputs.items():
            if not xs:
                continue
            sess = self._model(name)
            inp = sess.get_inputs()[0]
            batches = [np.stack(xs)] if not _fixed(inp.shape[0]) else [x[None] for x in xs]
            values = [np.asarray(sess.run(None, {inp.name: b})[0], np.float64) for b in batches]
            out[name] = float(np.mean(np.concatenate([v.ravel() for v in values])))
        return out
