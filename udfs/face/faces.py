"""Per-clip face statistics: sampled-frame detection, IoU tracking and the smoothed main track.

Frames are sampled at ``sample_fps`` over ``[start_s, end_s)``, downscaled to ``max_side`` for
the detector, and every box/landmark is mapped back to ORIGINAL (upright) pixel coordinates.
A clip without faces is a valid row (``faces_max`` 0, ``n_tracks`` 0, face sizes null).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from facevid.udfs.base import StageError, validate
from facevid.udfs.face.tracking import main_track, smooth_track, track_faces
from facevid.udfs.media.video import fit_max_side, iter_frames
from facevid.udfs.models.detectors import DETECTORS, Detections, get_detector

FACES_COLUMNS: dict[str, str] = {
    "detector": "string",
    "n_samples": "int",
    "frame_width": "int",
    "frame_height": "int",
    "faces_mean": "double",
    "faces_max": "int",
    "faces_min": "int",
    "face_frac": "double",
    "multi_face_frac": "double",
    "n_tracks": "int",
    "main_track_frac": "double",
    "face_px": "double",
    "face_px_min": "double",
    "face_area_frac": "double",
    "track_t": "array<double>",
    "track_boxes": "array<array<float>>",
    "track_scores": "array<float>",
    "track_landmarks": "array<array<float>>",
    "detect_ms": "double",
}


@dataclass
class FacesParams:
    """Sampling, detector and tracking parameters of the faces stage."""

    sample_fps: float = 2.0
    detector: str = "mtcnn"
    model_path: str | None = None
    min_score: float = 0.9
    max_side: int = 640
    iou_threshold: float = 0.3
    max_gap: int = 2
    min_track_frac: float = 0.3
    smooth_window: int = 5
    iou_expand: float = 2.0
    device: str = "cpu"

    def __post_init__(self) -> None:
        checks = [
            (self.sample_fps > 0, f"sample_fps must be > 0, got {self.sample_fps}"),
            (self.detector in DETECTORS, f"detector must be one of {DETECTORS}, got {self.detector!r}"),
            (self.detector != "yunet" or bool(self.model_path), "model_path is required for detector yunet"),
            (not self.model_path or "://" in self.model_path or Path(self.model_path).is_file(),
             f"model_path {self.model_path} does not exist"),
            (0 <= self.min_score <= 1, f"min_score must be in [0, 1], got {self.min_score}"),
            (self.max_side >= 32, f"max_side must be >= 32 pixels, got {self.max_side}"),
            (0 < self.iou_threshold <= 1, f"iou_threshold must be in (0, 1], got {self.iou_threshold}"),
            (self.iou_expand >= 1, f"iou_expand must be >= 1, got {self.iou_expand}"),
            (self.max_gap >= 0, f"max_gap must be >= 0, got {self.max_gap}"),
            (0 <= self.min_track_frac <= 1, f"min_track_frac must be in [0, 1], got {self.min_track_frac}"),
            (
                self.smooth_window >= 1 and self.smooth_window % 2 == 1,
                f"smooth_window must be an odd number >= 1, got {self.smooth_window}",
            ),
        ]
        validate("faces", checks)


def _sample(path: str, start_s: float, end_s: float | None, params: FacesParams) -> dict[str, Any]:
    """Decode + detect every sample; detections are returned in original pixels."""
    detector = get_detector(params.detector, params.model_path, params.min_score, params.device)
    times: list[float] = []
    dets: list[Detections] = []
    size = (0, 0)
    detect_s = 0.0
    for t, frame in iter_frames(path, start_s, end_s, every_s=1.0 / params.sample_fps):
        size = (frame.shape[1], frame.shape[0])
        small, scale = fit_max_side(frame, params.max_side)
        t0 = time.perf_counter()
        boxes, scores, lms = detector.detect(small)
        detect_s += time.perf_counter() - t0
        times.append(t)
        dets.append((boxes / scale, scores, None if lms is None else lms / scale))
    if not times:
        raise StageError("decode", f"no frames in [{start_s}, {end_s}) of {path}")
    return {"times": times, "dets": dets, "size": size, "detect_ms": detect_s * 1000.0}


def detect_clip(path: str, start_s: float, end_s: float | None, params: FacesParams) -> dict[str, Any]:
    """Face statistics and the smoothed main track of one clip (keys: ``FACES_COLUMNS``)."""
    s = _sample(path, start_s, end_s, params)
    n = len(s["times"])
    width, height = s["size"]
    counts = np.array([len(d[1]) for d in s["dets"]])
    tracks = track_faces(s["dets"], params.iou_threshold, params.max_gap, params.iou_expand)
    main = main_track(tracks)
    row: dict[str, Any] = {
        "detector": params.detector,
        "n_samples": n,
        "frame_width": width,
        "frame_height": height,
        "faces_mean": float(counts.mean()),
        "faces_max": int(counts.max()),
        "faces_min": int(counts.min()),
        "face_frac": float(np.mean(counts >= 1)),
        "multi_face_frac": float(np.mean(counts >= 2)),
        "n_tracks": sum(len(t) >= params.min_track_frac * n for t in tracks),
        "main_track_frac": 0.0,
        "face_px": None,
        "face_px_min": None,
        "face_area_frac": None,
        "track_t": [float(t) for t in s["times"]],
        "track_boxes": [],
        "track_scores": [],
        "track_landmarks": [],
        "detect_ms": s["detect_ms"],
    }
    if main is None:
        return row
    raw = np.asarray(main.boxes)
    side = np.minimum(raw[:, 2], raw[:, 3])
    scores = np.zeros(n)
    scores[main.idx] = main.scores
    landmarks: list[list[float]] = [[] for _ in range(n)]
    for k, lms in zip(main.idx, main.landmarks, strict=True):
        if not np.isnan(lms).any():
            landmarks[k] = lms.tolist()
    row.update(
        main_track_frac=len(main) / n,
        face_px=float(np.median(side)),
        face_px_min=float(side.min()),
        face_area_frac=float(np.median(raw[:, 2] * raw[:, 3]) / (width * height)),
        track_boxes=smooth_track(main, n, params.smooth_window).tolist(),
        track_scores=scores.tolist(),
        track_landmarks=landmarks,
    )
    return row


def faces_row(row: dict[str, Any], params: FacesParams) -> dict[str, Any]:
    """Per-row UDF body: a clip row with ``uri``, ``start_s``, ``end_s`` -> face statistics."""
    start, end = row.get("start_s"), row.get("end_s")
    start = 0.0 if start is None or math.isnan(start) else float(start)
    end = None if end is None or math.isnan(end) else float(end)  # pandas gives NaN for null
    return detect_clip(str(row["uri"]), start, end, params)
