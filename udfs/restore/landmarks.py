"""dlib 68-point landmarks on every frame of a face crop: where each frame's face is aligned from.

The box comes from the clip's main face track (``silver.faces``: ``track_t`` seconds on the
clip's clock, ``track_boxes`` in upright SOURCE pixels) mapped into crop pixels: the crop square
``(crop_x, crop_y, crop_side)`` scaled to ``crop_size``; crop frame times start at ``t_first`` on
the same clock (``silver.crops``). The predictor (``facevid.udfs.av.landmarks``) is fitted on each
crop frame's luma inside that box.

A frame is *usable* when the detector saw the face near its time (``track_scores``), the box's
centre lies inside the crop, the box is at least ``min_face_px`` crop pixels, and the fitted eye
centres are at least a fifth of the box apart (a fit that collapsed is not aligned). Unusable
frames are passed through unrestored and counted. The five alignment points are averaged over
``smooth`` consecutive usable frames (a centred window) so that per-frame landmark jitter does not
make the aligned face shake.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from facevid.udfs.av.landmarks import FaceTrack, Fitter, load_predictor, predictor_file
from facevid.udfs.base import StageError
from facevid.udfs.media.storage import local_path
from facevid.udfs.media.video import VideoSpan
from facevid.udfs.restore.align import five_points

MIN_EYE_SPAN = 0.2  # eye-centre distance / box side below this: a collapsed fit


@dataclass
class CropFaces:
    """Landmarks of every frame of one crop, in presentation order."""

    points: list[np.ndarray | None]  # (68, 2) crop pixels; None = unusable frame
    boxes: list[np.ndarray | None]  # [x, y, w, h] crop pixels of the track box (None = unusable)
    times: list[float]  # seconds from the crop's first frame
    width: int
    height: int

    @property
    def n(self) -> int:
        return len(self.times)

    @property
    def usable(self) -> list[int]:
        return [i for i, p in enumerate(self.points) if p is not None]

    def aligned_points(self, smooth: int) -> list[np.ndarray | None]:
        """Five alignment points per frame, averaged over a centred window of ``smooth``
        consecutive usable frames (a run of usable frames is never averaged across a gap)."""
        raw = [five_points(p) if p is not None else None for p in self.points]
        half = max(0, int(smooth) // 2)
        out: list[np.ndarray | None] = []
        for i, pts in enumerate(raw):
            if pts is None or half == 0:
                out.append(pts)
                continue
            lo, hi = i, i
            while lo > i - half and lo > 0 and raw[lo - 1] is not None:
                lo -= 1
            while hi < i + half and hi + 1 < len(raw) and raw[hi + 1] is not None:
                hi += 1
            k = min(i - lo, hi - i)  # symmetric window: no lag at the ends of a run
            out.append(np.mean([raw[j] for j in range(i - k, i + k + 1)], axis=0))
        return out


def crop_track(row: dict[str, Any]) -> FaceTrack:
    """The main face track of a crops+faces row in crop pixels and crop seconds."""
    side, size = float(row["crop_side"]), float(row["crop_size"])
    k, x0, y0, t0 = size / side, float(row["crop_x"]), float(row["crop_y"]), float(row["t_first"])
    boxes = []
    for b in row.get("track_boxes") if row.get("track_boxes") is not None else []:
        if b is None or len(b) < 4:
            boxes.append(None)
            continue
        x, y, w, h = (float(v) for v in list(b)[:4])
        boxes.append([(x - x0) * k, (y - y0) * k, w * k, h * k])
    times = [float(t) - t0 for t in (row.get("track_t") if row.get("track_t") is not None else [])]
    return FaceTrack({"track_t": times, "track_boxes": boxes, "track_scores": row.get("track_scores")})


def usable_fit(points: np.ndarray, box: np.ndarray, width: int, height: int, min_face_px: float) -> bool:
    """The box is large enough and centred in the frame, and the fit did not collapse."""
    x, y, w, h = box
    cx, cy, side = x + w / 2, y + h / 2, max(w, h)
    if side < min_face_px or not (0 <= cx < width and 0 <= cy < height):
        return False
    five = five_points(points)
    return bool(np.isfinite(five).all() and math.dist(five[0], five[1]) >= MIN_EYE_SPAN * side)


def fit_crop(crop_uri: str, row: dict[str, Any], min_face_px: float, landmarks_path: str | None) -> CropFaces:
    """Landmarks of every frame of the crop file ``crop_uri`` (see the module docstring)."""
    predictor_path = predictor_file(landmarks_path)
    if predictor_path is None:
        raise StageError("missing", "no 68-point landmark model (landmarks_path, or face-recognition-models)")
    track = crop_track(row)
    fitter = Fitter(load_predictor(predictor_path), track)
    points: list[np.ndarray | None] = []
    boxes: list[np.ndarray | None] = []
    times: list[float] = []
    width = height = 0
    with local_path(crop_uri) as path, VideoSpan(path) as span:
        for t, frame in span.frames():
            width, height = frame.width, frame.height
            times.append(t)
            if not track.seen_at(t):
                points.append(None)
                boxes.append(None)
                continue
            pts, box, _ = fitter.fit(frame, t)
            ok = usable_fit(pts, box, width, height, min_face_px)
            points.append(pts if ok else None)
            boxes.append(box if ok else None)
    if not times:
        raise StageError("decode", f"no frames in {crop_uri}")
    return CropFaces(points, boxes, times, width, height)
