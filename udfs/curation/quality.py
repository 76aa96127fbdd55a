"""Per-clip quality scores (score, then decide: nothing here filters).

One decode pass over ``[start_s, end_s)``: frames at ``motion_fps`` for optical flow between
consecutive frames (0.1 s apart by default: DIS recovers displacements up to ~20 px at 256 px,
so pans up to ~200 px/s read true; samples 0.5 s apart read a fast pan as slow), of which those
at ``sample_fps`` (the faces stage's sample times) are the samples for sharpness, exposure, black
borders and head pose; OCR on ``ocr_frames`` seeded-random samples, learned scores on
``scorer_frames`` evenly spread samples. Face boxes and landmarks come from ``silver.faces``
(source pixels). Measures: ``facevid.udfs.curation.quality_measures``, pose: ``facevid.udfs.curation.quality_pose``, OCR:
``facevid.udfs.models.ocr``, learned scores: ``facevid.udfs.models.scorers``.
"""

from __future__ import annotations

import math
import time
import zlib
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

from facevid.udfs.base import StageError, cached_model, validate
from facevid.udfs.curation import quality_measures as qm
from facevid.udfs.curation.quality_pose import head_pose, pose_summary
from facevid.udfs.media.video import fit_max_side, iter_frames
from facevid.udfs.models.ocr import count_text
from facevid.udfs.models.scorers import SCORES, LearnedScores, path_checks, warn_disabled

QUALITY_COLUMNS: dict[str, str] = {
    "n_samples": "int",  # frames analysed at sample_fps
    "sharpness_face": "double",  # Laplacian variance of the gray face box scaled to face_side px (median)
    "sharpness_frame": "double",  # Laplacian variance of the gray frame at 512 px longest side (median)
    "brightness_mean": "double",  # mean luma 0-255 (median over samples)
    "dark_frac": "double",  # share of pixels with luma <= 16 (median)
    "bright_frac": "double",  # share of pixels with luma >= 239 (median)
    "face_brightness": "double",  # mean luma in the face box (median)
    "border_px": "int",  # thickest black border of the four, source pixels
    "border_top": "int", "border_bottom": "int", "border_left": "int", "border_right": "int",
    "ocr_chars": "int",  # most non-space characters recognised in one OCR frame
    "ocr_text": "string",  # that frame's text (<= 200 characters)
    "motion_mean": "double",  # mean optical-flow magnitude, px/s at 256 px longest side (mean over pairs)
    "motion_global": "double",  # camera motion: median magnitude outside the face, px/s at 256 px
    "motion_face": "double",  # mean magnitude inside the face box, px/s at 256 px
    "static_frac": "double",  # share of frame pairs with motion_mean < static_px_s
    "yaw_deg": "double", "pitch_deg": "double", "roll_deg": "double",  # median |angle| over samples
    "yaw_max_deg": "double",  # largest |yaw|
    "frontal_frac": "double",  # share of posed samples with |yaw| <= frontal_yaw_deg, |pitch| <= frontal_pitch_deg
    "face_px": "double", "face_area_frac": "double",  # copied from silver.faces
    **{name: "double" for name in SCORES},  # learned scores: null unless their ONNX model is set
    "quality_ms": "double",
}
DECODE_SIDE = 1920  # larger sources are decoded downscaled to this longest side (borders stay in source px)
_EPS = 1e-6


@dataclass
class QualityParams:
    """Sampling, OCR, motion and pose parameters; ``<score>_path`` enable the learned scores."""

    sample_fps: float = 2.0
    motion_fps: float = 10.0
    face_side: int = 128
    ocr: bool = True
    ocr_frames: int = 5
    ocr_max_side: int = 640
    ocr_min_score: float = 0.5
    seed: int = 7
    static_px_s: float = 0.5
    frontal_yaw_deg: float = 30.0
    frontal_pitch_deg: float = 25.0
    aesthetic_path: str | None = None
    iqa_path: str | None = None
    fiqa_path: str | None = None
    age_path: str | None = None
    scorer_size: int = 224
    scorer_frames: int = 3
    scorer_mean: list[float] = field(default_factory=lambda: [0.485, 0.456, 0.406])
    scorer_std: list[float] = field(default_factory=lambda: [0.229, 0.224, 0.225])

    def __post_init__(self) -> None:
        validate("quality", [
            (self.sample_fps > 0, f"sample_fps must be > 0, got {self.sample_fps}"),
            (self.motion_fps > 0, f"motion_fps must be > 0, got {self.motion_fps}"),
            (16 <= self.face_side <= 1024, f"face_side must be in [16, 1024], got {self.face_side}"),
            (isinstance(self.ocr, bool), f"ocr must be true or false, got {self.ocr!r}"),
            (self.ocr_frames >= 0, f"ocr_frames must be >= 0, got {self.ocr_frames}"),
            (self.ocr_max_side >= 64, f"ocr_max_side must be >= 64, got {self.ocr_max_side}"),
            (0 <= self.ocr_min_score <= 1, f"ocr_min_score must be in [0, 1], got {self.ocr_min_score}"),
            (self.static_px_s >= 0, f"static_px_s must be >= 0, got {self.static_px_s}"),
            (0 < self.frontal_yaw_deg <= 90, f"frontal_yaw_deg must be in (0, 90], got {self.frontal_yaw_deg}"),
            (0 < self.frontal_pitch_deg <= 90, f"frontal_pitch_deg must be in (0, 90], got {self.frontal_pitch_deg}"),
            (self.scorer_size >= 16, f"scorer_size must be >= 16, got {self.scorer_size}"),
            (self.scorer_frames >= 1, f"scorer_frames must be >= 1, got {self.scorer_frames}"),
            (len(self.scorer_mean) == 3 and len(self.scorer_std) == 3 and min(self.scorer_std) > 0,
             f"scorer_mean and scorer_std must be 3 numbers (RGB), std > 0; got {self.scorer_mean}, {self.scorer_std}"),
            *path_checks(self),
        ])


def _dis() -> Any:
    """DIS optical flow, fast preset (1 ms a 256 px pair; Farneback: 5 ms and fails beyond ~12 px)."""
    return cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_FAST)


def _seq(row: dict[str, Any], key: str) -> list:
    value = row.get(key)
    return [] if value is None else list(value)


class _Track:
    """The main face track of a ``silver.faces`` row: box and landmarks nearest to a time."""

    def __init__(self, row: dict[str, Any], step: float) -> None:
        self.t = np.asarray(_seq(row, "track_t"), np.float64)
        self.boxes, self.landmarks = _seq(row, "track_boxes"), _seq(row, "track_landmarks")
        gaps = np.diff(self.t)
        self.tol = max(step, float(np.median(gaps)) if gaps.size else 0.0) * 0.5 + _EPS

    def _index(self, t: float) -> int | None:
        if self.t.size == 0:
            return None
        k = int(np.argmin(np.abs(self.t - t)))
        return k if abs(self.t[k] - t) <= self.tol else None

    def box(self, t: float) -> np.ndarray | None:
        k = self._index(t)
        b = None if k is None or k >= len(self.boxes) else self.boxes[k]
        if b is None or len(b) != 4:
            return None
        b = np.asarray(b, np.float64)
        return b if np.isfinite(b).all() and b[2] > 1 and b[3] > 1 else None

    def points(self, t: float) -> np.ndarray | None:
        k = self._index(t)
        p = None if k is None or k >= len(self.landmarks) else self.landmarks[k]
        return None if p is None or len(p) != 10 else np.asarray(p, np.float64)


def _median(values: list[float]) -> float | None:
    return float(np.median(values)) if values else None


def _mean(values: list[float]) -> float | None:
    return float(np.mean(values)) if values else None


class _ClipStats:
    """Accumulates the per-sample and per-pair measures of one clip."""

    def __init__(self, params: QualityParams, focal: float) -> None:
        self.p, self.focal = params, focal
        self.v: dict[str, list[float]] = defaultdict(list)
        self.poses: list[tuple[float, float, float]] = []
        self.rows_black: np.ndarray | None = None
        self.cols_black: np.ndarray | None = None
        self.n, self.ocr_runs, self.ocr_chars, self.ocr_text = 0, 0, 0, ""

    def sample(self, gray_full: np.ndarray, face: qm.Roi | None, points: np.ndarray | None) -> None:
        self.n += 1
        rows, cols = qm.black_lines(gray_full)
        self.rows_black = rows if self.rows_black is None or self.rows_black.shape != rows.shape else self.rows_black & rows
        self.cols_black = cols if self.cols_black is None or self.cols_black.shape != cols.shape else self.cols_black & cols
        gray, _ = fit_max_side(gray_full, qm.FRAME_SIDE)
        mean, dark, bright = qm.exposure(gray)
        for key, value in (("brightness", mean), ("dark", dark), ("bright", bright),
                           ("sharp_frame", qm.laplacian_var(gray))):
            self.v[key].append(value)
        if face is not None:
            crop = gray_full[face[1]:face[3], face[0]:face[2]]
            self.v["sharp_face"].append(qm.face_sharpness(crop, self.p.face_side))
            self.v["face_luma"].append(float(crop.mean()))
        pose = head_pose(points, self.focal) if points is not None else None
        if pose is not None:
            self.poses.append(pose)

    def pair(self, prev: np.ndarray, cur: np.ndarray, dt: float, box: np.ndarray | None, scale: float) -> None:
        mean, camera, face = qm.flow_stats(cached_model(("dis-flow",), _dis), prev, cur, dt, box, scale)
        self.v["motion"].append(mean)
        self.v["camera"].append(camera)
        if face is not None:
            self.v["motion_face"].append(face)

    def ocr(self, frame: np.ndarray) -> None:
        self.ocr_runs += 1
        chars, text = count_text(frame, self.p.ocr_min_score, self.p.ocr_max_side)
        if chars > self.ocr_chars:
            self.ocr_chars, self.ocr_text = chars, text

    def columns(self, to_source: float) -> dict[str, Any]:
        v, p = self.v, self.p
        assert self.rows_black is not None and self.cols_black is not None
        (top, bottom), (left, right) = qm.edge_runs(self.rows_black), qm.edge_runs(self.cols_black)
        borders = {f"border_{k}": int(round(n * to_source))
                   for k, n in (("top", top), ("bottom", bottom), ("left", left), ("right", right))}
        return {
            "n_samples": self.n, "sharpness_face": _median(v["sharp_face"]),
            "sharpness_frame": _median(v["sharp_frame"]), "brightness_mean": _median(v["brightness"]),
            "dark_frac": _median(v["dark"]), "bright_frac": _median(v["bright"]),
            "face_brightness": _median(v["face_luma"]), "border_px": max(borders.values()), **borders,
            "ocr_chars": self.ocr_chars if p.ocr else None,
            "ocr_text": (self.ocr_text[:200] or None) if p.ocr else None,
            "motion_mean": _mean(v["motion"]), "motion_global": _mean(v["camera"]),
            "motion_face": _mean(v["motion_face"]),
            "static_frac": _mean([float(m < p.static_px_s) for m in v["motion"]]),
            **pose_summary(self.poses, p.frontal_yaw_deg, p.frontal_pitch_deg),
        }


def expected_samples(start: float, end: float, fps: float) -> int:
    """Samples that ``iter_frames`` keeps in ``[start, end)`` at ``fps`` when a frame is there."""
    return max(1, math.ceil((end - start) * fps - _EPS))


def ocr_picks(clip_id: str, n: int, k: int, seed: int) -> set[int]:
    """``k`` of the ``n`` sample indices, random but fixed per clip (``seed`` + crc32 of the id)."""
    rng = np.random.default_rng(seed + zlib.crc32(clip_id.encode()))
    return set(rng.choice(n, size=min(k, n), replace=False).tolist()) if k > 0 else set()


def _number(value: Any) -> float | None:
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else float(value)


def score_clip(path: str, row: dict[str, Any], params: QualityParams) -> dict[str, Any]:
    """Quality columns (``QUALITY_COLUMNS``) of one clip: a ``silver.faces`` row with the clip's
    ``start_s``/``end_s`` (and ``frame_width``/``frame_height`` or ``width``/``height``)."""
    t0 = time.perf_counter()
    warn_disabled(params)
    start = _number(row.get("start_s")) or 0.0
    end = _number(row.get("end_s"))
    known_end = end if end is not None else start + (_number(row.get("duration_s")) or 15.0)
    width = _number(row.get("frame_width")) or _number(row.get("width"))
    height = _number(row.get("frame_height")) or _number(row.get("height"))
    step = 1.0 / params.sample_fps
    n_expected = expected_samples(start, known_end, params.sample_fps)
    ocr_at = ocr_picks(str(row.get("clip_id", "")), n_expected, params.ocr_frames if params.ocr else 0, params.seed)
    learned = LearnedScores(params)
    score_at = set(np.linspace(0, n_expected - 1, min(params.scorer_frames, n_expected)).round().astype(int).tolist())
    track = _Track(row, step)
    stats = _ClipStats(params, focal=width or 0.0)
    cap = DECODE_SIDE if width and height and max(width, height) > DECODE_SIDE else None
    scale, prev, prev_t, next_t, k, last = 1.0, None, 0.0, start, -1, None
    every = 1.0 / max(params.motion_fps, params.sample_fps)
    for t, frame in iter_frames(path, start, end, every_s=every, max_side=cap):
        scale = frame.shape[1] / width if width else 1.0
        box = track.box(t)
        gray = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
        small, fscale = fit_max_side(gray, qm.FLOW_SIDE)
        if prev is not None and prev.shape == small.shape and t > prev_t:
            stats.pair(prev, small, t - prev_t, box, scale * fscale)
        prev, prev_t = small, t
        if t < next_t - _EPS:
            continue  # a motion-only frame
        next_t = start + (math.floor((t - start) / step + _EPS) + 1) * step
        k += 1
        face = qm.box_roi(box, scale, frame.shape)
        stats.sample(gray, face, track.points(t))
        if k in ocr_at:
            stats.ocr(frame)
        if learned and k in score_at:
            learned.add(frame, face)
        last = (frame, face)
    if last is None:
        raise StageError("decode", f"no frames in [{start}, {end}) of {path}")
    if ocr_at and not stats.ocr_runs:  # fewer frames than the clip's length promised
        stats.ocr(last[0])
    if learned and learned.pending():
        learned.add(*last, missing_only=True)
    return {
        **stats.columns(1.0 / scale), "face_px": _number(row.get("face_px")),
        "face_area_frac": _number(row.get("face_area_frac")), **learned.scores(),
        "quality_ms": (time.perf_counter() - t0) * 1000.0,
    }
