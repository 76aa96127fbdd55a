"""dlib 68-point landmarks on a clip's main face track, at a declared rate.

The box of a frame is the ``silver.faces`` main track (``track_t``, smoothed ``[x, y, w, h]``
``track_boxes`` in upright source pixels) linearly interpolated at the frame's time, made square
about its centre (dlib's predictor was trained on square detector boxes; the mtcnn boxes are
taller than wide). Frames are fitted at full resolution on their luma plane (``Fitter``: measured
faster than a downscaled gray conversion); points are in SOURCE pixels.

Points follow the iBUG 300-W 68-point layout (jaw 0-16, brows 17-26, nose 27-35, eyes 36-47,
mouth 48-67). "Left"/"right" in this package mean as seen in the IMAGE (like
``facevid.udfs.curation.quality_pose``): the image-left eye is points 36-41.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from facevid.udfs.base import StageError, cached_model
from facevid.udfs.media.storage import is_s3, to_local
from facevid.udfs.media.video import to_array, upright

FACE_SIZE = 224  # side of the RGB face crops given to backends that need faces (SyncNet)


def bundled_predictor() -> str | None:
    """The 68-point predictor file of the ``face_recognition_models`` package (None when absent)."""
    try:
        import face_recognition_models as frm
    except ImportError:
        return None
    return frm.pose_predictor_model_location()


def predictor_file(path: str | None) -> str | None:
    """A local file for a configured predictor path (local, ``dbfs:/``, ``/Volumes/``), or the
    bundled one; None when neither exists. ``s3://`` is refused (dlib reads local files only)."""
    if path is None:
        return bundled_predictor()
    if is_s3(path):
        raise ValueError(f"av.landmarks_path {path}: dlib reads local files (or dbfs:/, /Volumes/), not s3://")
    local = to_local(str(path))
    return local if Path(local).is_file() else None


def load_predictor(path: str) -> Any:
    """The dlib shape predictor, once per worker thread (dlib objects are not thread-safe)."""
    import dlib

    return cached_model(("dlib_68", path), lambda: dlib.shape_predictor(path))


def _column(row: dict[str, Any], key: str) -> list:
    value = row.get(key)
    return [] if value is None else list(value)


class FaceTrack:
    """The main track of a ``silver.faces`` row: its box interpolated at any time, and whether
    the detector saw the face near that time (``track_scores`` > 0 at the nearest sample)."""

    def __init__(self, row: dict[str, Any]) -> None:
        t = np.asarray(_column(row, "track_t"), np.float64)
        raw = _column(row, "track_boxes")
        boxes = np.array([np.asarray(b, np.float64)[:4] if b is not None and len(b) >= 4 else np.full(4, np.nan)
                          for b in raw]).reshape(-1, 4)
        if not len(t) or len(boxes) != len(t):
            raise StageError("no_face", "the clip has no main face track")
        ok = np.isfinite(boxes).all(axis=1) & (boxes[:, 2] > 1) & (boxes[:, 3] > 1)
        if not ok.any():
            raise StageError("no_face", "the main face track has no box")
        scores = np.asarray(_column(row, "track_scores"), np.float64)
        seen = scores > 0 if len(scores) == len(t) else np.ones(len(t), bool)
        self.t, self.boxes, self.seen = t[ok], boxes[ok], seen[ok]
        self.side = float(np.median(np.sqrt(self.boxes[:, 2] * self.boxes[:, 3])))

    def box(self, t: float) -> np.ndarray:
        """``[x, y, w, h]`` at time ``t`` (edge boxes held outside the track's span)."""
        return np.array([np.interp(t, self.t, self.boxes[:, j]) for j in range(4)])

    def seen_at(self, t: float) -> bool:
        return bool(self.seen[int(np.argmin(np.abs(self.t - t)))])


def square(box: np.ndarray, scale: float = 1.0) -> tuple[float, float, float]:
    """``(cx, cy, side)`` of the square with the box's centre and ``scale`` x its larger side."""
    x, y, w, h = box
    return x + w / 2, y + h / 2, max(w, h) * scale


def face_crop(rgb: np.ndarray, box: np.ndarray, scale: float, side: int = FACE_SIZE) -> np.ndarray:
    """A ``side`` x ``side`` RGB crop of the square ``scale`` x the box about its centre (the mouth
    falls in the lower half), padded with black where it leaves the frame."""
    cx, cy, s = square(box, scale)
    k = side / max(s, 1.0)
    m = np.array([[k, 0.0, side / 2 - k * cx], [0.0, k, side / 2 - k * cy]])
    return cv2.warpAffine(rgb, m, (side, side), flags=cv2.INTER_AREA if k < 1 else cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_CONSTANT)


_LUMA_FORMATS = {"yuv420p", "yuvj420p", "yuv422p", "yuvj422p", "yuv444p", "yuvj444p", "nv12", "gray"}


def luma(frame: Any) -> np.ndarray:
    """The upright 8-bit luma plane of a YUV frame as a gray image, without a conversion (the
    predictor does not care about limited-range levels); other formats go through libswscale."""
    if frame.format.name not in _LUMA_FORMATS:
        return to_array(frame, "gray")
    plane = frame.planes[0]
    y = np.frombuffer(plane, np.uint8).reshape(frame.height, plane.line_size)[:, :frame.width]
    return np.ascontiguousarray(upright(y, frame.rotation))


@dataclass
class Fitter:
    """Fits the 68 points on decoded frames at full resolution, on the luma plane: the
    predictor's cost does not depend on the face size (1.0 ms at 512 px, 0.9 ms at a third of
    it) while a scaled gray conversion cost 1.2-1.7 ms a frame more than reading the plane."""

    predictor: Any
    track: FaceTrack
    crop_scale: float | None = None  # set: also an RGB face crop per frame (backends with needs_faces)

    def __post_init__(self) -> None:
        # crops: RGB converted so that the crop square is about twice FACE_SIZE, then warped
        self.crop_k = min(1.0, 2 * FACE_SIZE / max((self.crop_scale or 1.0) * self.track.side, 1.0))
        self.width = 0.0

    def fit(self, frame: Any, t: float) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """``(points (68, 2) in source pixels, box, crop or None)`` for an ``av.VideoFrame``."""
        import dlib

        gray = luma(frame)
        self.width = float(gray.shape[1])  # upright source width (the pose camera's focal length)
        box = self.track.box(t)
        cx, cy, s = square(box)
        rect = dlib.rectangle(math.floor(cx - s / 2), math.floor(cy - s / 2), math.ceil(cx + s / 2),
                              math.ceil(cy + s / 2))
        shape = self.predictor(gray, rect)
        pts = np.array([(p.x, p.y) for p in shape.parts()], np.float64)
        crop = None
        if self.crop_scale is not None:
            side = max(frame.width, frame.height)
            rgb = to_array(frame, "rgb24", max(16, round(side * self.crop_k)) if self.crop_k < 1 else None)
            k = max(rgb.shape) / side
            crop = face_crop(rgb, box * k, self.crop_scale)
        return pts, box, crop
