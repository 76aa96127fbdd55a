"""Per-clip identity embeddings (dlib ResNet, 128-d) and whole-frame dHashes for near-duplicates.

The embedding of a clip is the MEAN of the dlib descriptors of its main-track face on ``frames``
samples evenly spread over the samples where the faces stage actually detected it (score > 0).
dlib descriptors are compared with plain euclidean distance and are not re-normalised: measured
on the shared clips, clip means of one person lie 0.15 apart, of different people >= 0.37.
``frame_hashes`` are 64-bit dHashes of ``frames`` whole frames evenly spaced over all samples
of the clip (for re-uploaded footage). The clip is decoded once; only the chosen frames are
converted to arrays, and decoding stops after the last of them.
"""

from __future__ import annotations

import math
import time
from collections.abc import Container, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av
import cv2
import numpy as np

from facevid.udfs.base import StageError, cached_model, validate
from facevid.udfs.media.storage import is_s3, to_local
from facevid.udfs.media.video import VideoSpan, to_array

EMBED_COLUMNS: dict[str, str] = {
    "embedding": "array<float>",
    "embed_frames": "int",
    "embed_spread": "double",
    "frame_hashes": "array<bigint>",
    "embed_ms": "double",
}
_EPS = 1e-3  # seconds: sample times are frame timestamps, matched with this tolerance
_HASH_SIDE = 64  # frames for hashing are converted to gray at this longest side, then area-resized
_FLAT = 8  # a thumbnail whose gray levels span less than this has no structure: hash 0 (ignored)


def _bundled(kind: str) -> str | None:
    """Path of a model file bundled in ``face_recognition_models`` (None when not installed)."""
    try:
        import face_recognition_models as frm
    except ImportError:
        return None
    if kind == "descriptor":
        return frm.face_recognition_model_location()
    return frm.pose_predictor_five_point_model_location()


def _is_file(path: str | None) -> bool:
    return bool(path) and not is_s3(str(path)) and Path(to_local(str(path))).is_file()


@dataclass
class EmbedParams:
    """Frames per clip and the dlib model files (None = face_recognition_models' bundled files).

    Both files stay ``None`` when neither a path nor the package is there (a cluster without the
    ``local`` extra): the stage then refuses to run (``missing_weights``), while loading the config
    for other stages still works."""

    frames: int = 5
    model_path: str | None = None  # dlib_face_recognition_resnet_model_v1.dat
    landmarks_path: str | None = None  # shape_predictor_5_face_landmarks.dat
    padding: float = 0.25  # face chip padding (dlib's default)

    def __post_init__(self) -> None:
        self.model_path = self.model_path or _bundled("descriptor")
        self.landmarks_path = self.landmarks_path or _bundled("landmarks")
        validate("embed", [
            (self.frames >= 1, f"frames must be >= 1, got {self.frames}"),
            (0 <= self.padding <= 1, f"padding must be in [0, 1], got {self.padding}"),
            (not is_s3(self.model_path or "") and not is_s3(self.landmarks_path or ""),
             "model_path/landmarks_path must be local files (or dbfs:/, /Volumes/ paths), not s3://"),
            (self.model_path is None or _is_file(self.model_path), f"model_path {self.model_path} does not exist"),
            (self.landmarks_path is None or _is_file(self.landmarks_path),
             f"landmarks_path {self.landmarks_path} does not exist"),
        ])

    def missing_weights(self) -> list[str]:
        """The weight parameters that have no file (neither set nor bundled by the package)."""
        return [name for name in ("model_path", "landmarks_path") if getattr(self, name) is None]


def load_models(params: EmbedParams) -> tuple[Any, Any]:
    """``(shape_predictor, face_recognition_model_v1)``, once per worker thread."""
    import dlib

    key = ("dlib_face", params.landmarks_path, params.model_path)
    return cached_model(key, lambda: (dlib.shape_predictor(to_local(str(params.landmarks_path))),
                                      dlib.face_recognition_model_v1(to_local(str(params.model_path)))))


def spread_indices(n: int, k: int) -> np.ndarray:
    """At most ``k`` distinct indices of ``range(n)``, evenly spread, first and last included."""
    if n <= 0 or k <= 0:
        return np.zeros(0, np.int64)
    return np.unique(np.round(np.linspace(0, n - 1, min(n, k))).astype(np.int64))


def dhash(gray: np.ndarray) -> int:
    """64-bit difference hash of a gray image as a signed int64: 9x8 area thumbnail, bit = pixel
    brighter than its right neighbour (row-major, first bit most significant). Flat images: 0."""
    thumb = cv2.resize(gray, (9, 8), interpolation=cv2.INTER_AREA).astype(np.int16)
    if int(thumb.max()) - int(thumb.min()) < _FLAT:
        return 0
    bits = (thumb[:, :-1] > thumb[:, 1:]).reshape(-1)
    return int(np.packbits(bits).view(">u8")[0].astype(np.int64))


def frames_at(path: str, times: list[float], start_s: float, end_s: float | None,
              boxes: Container[float]) -> Iterator[tuple[float, float, np.ndarray | None, np.ndarray | None]]:
    """One decoding pass over the clip's span (``facevid.udfs.media.video``'s span rule) yielding
    ``(wanted, t, rgb, gray)`` for the first frame ``t`` at/after each of ``times`` (sample
    times). ``rgb`` (upright) is made for the times in ``boxes``, ``gray`` (small, for hashing)
    for the others too. Stops after the last time."""
    todo = sorted(times)
    if not todo:
        return
    with VideoSpan(path, start_s, end_s) as span:
        try:
            for t, frame in span.frames():
                if t < todo[0] - _EPS:
                    continue
                hits = [todo.pop(0)]
                while todo and todo[0] <= t + _EPS:  # several times map to this frame (a gap in the stream)
                    hits.append(todo.pop(0))
                rgb = np.ascontiguousarray(to_array(frame, "rgb24")) if any(h in boxes for h in hits) else None
                gray = to_array(frame, "gray", _HASH_SIDE)
                for h in hits:
                    yield h, t, rgb if h in boxes else None, gray
                if not todo:
                    return
        except av.FFmpegError as exc:
            raise StageError("decode", f"{path}: {exc}") from exc


def _array(values: Any, width: int) -> np.ndarray:
    """A list (or Arrow's array of arrays) of per-sample vectors as ``n x width`` floats (NaN = none)."""
    rows = [np.asarray(v, np.float64).reshape(-1)[:width] if v is not None and len(v) >= width
            else np.full(width, np.nan) for v in (values if values is not None else [])]
    return np.array(rows).reshape(-1, width)


def _seconds(value: Any) -> float | None:
    """A clip bound from a row (pandas gives NaN for null)."""
    return None if value is None or math.isnan(float(value)) else float(value)


def embed_clip(path: str, row: dict[str, Any], params: EmbedParams) -> dict[str, Any]:
    """Mean descriptor of the main-track face and the frame hashes of one clip (``EMBED_COLUMNS``)."""
    import dlib

    times = np.asarray(row.get("track_t") if row.get("track_t") is not None else [], np.float64)
    boxes = _array(row.get("track_boxes"), 4)
    scores = np.asarray(row.get("track_scores") if row.get("track_scores") is not None else [], np.float64)
    if not len(times) or len(boxes) != len(times):
        raise StageError("no_face", "the clip has no main face track")
    seen = np.isfinite(boxes).all(axis=1) & (boxes[:, 2] > 1) & (boxes[:, 3] > 1)
    if len(scores) == len(times) and (seen & (scores > 0)).any():
        seen &= scores > 0  # samples where the detector saw the face, not interpolated ones
    if not seen.any():
        raise StageError("no_face", "the main face track has no box")
    picked = np.flatnonzero(seen)[spread_indices(int(seen.sum()), params.frames)]
    want = {float(times[i]): boxes[i] for i in picked}
    hash_times = [float(times[i]) for i in spread_indices(len(times), params.frames)]
    predictor, model = load_models(params)
    chips, hashes, model_s = [], [], 0.0
    start, end = _seconds(row.get("start_s")), _seconds(row.get("end_s"))
    for t, _, rgb, gray in frames_at(path, sorted(set(want) | set(hash_times)), start or 0.0, end, want):
        if any(abs(t - h) <= _EPS for h in hash_times):
            hashes.append(dhash(gray))
        if rgb is None:
            continue
        x, y, w, h = want[t]
        t0 = time.perf_counter()
        rect = dlib.rectangle(round(x), round(y), round(x + w), round(y + h))
        chips.append(dlib.get_face_chip(rgb, predictor(rgb, rect), size=150, padding=params.padding))
        model_s += time.perf_counter() - t0
    if not chips:
        raise StageError("decode", f"none of the {len(want)} face samples decoded from {path}")
    t0 = time.perf_counter()
    desc = np.array(model.compute_face_descriptor(chips), np.float64).reshape(len(chips), -1)
    model_s += time.perf_counter() - t0
    mean = desc.mean(axis=0)
    return {
        "embedding": mean.astype(np.float32).tolist(),
        "embed_frames": len(chips),
        "embed_spread": float(np.linalg.norm(desc - mean, axis=1).mean()),
        "frame_hashes": hashes,
        "embed_ms": model_s * 1000.0,
    }
