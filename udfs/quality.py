"""Per-clip quality scores (score, then decide: nothing here filters).

One decode pass over ``[start_s, end_s)`` at ``sample_fps``; per sample: sharpness (Laplacian
variance of the face region resized to 128 px and of the frame at 512 px), exposure (mean luma,
clipped fractions), black borders, DIS optical-flow motion between consecutive samples, head pose
from the main track's 5 landmarks; OCR on ``ocr_frames`` seeded-random samples; optional learned
scores (``udfs.scorers``). Face boxes/landmarks come from ``silver.faces`` (original pixels).
"""

from __future__ import annotations

import math
import time
import zlib
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from udfs.base import StageError, cached_model, validate
from udfs.ocr import count_text
from udfs.scorers import SCORES, score_image, scorer_paths
from udfs.video import fit_max_side, iter_frames

QUALITY_COLUMNS: dict[str, str] = {
    "n_samples": "int",
    "sharpness_face": "double",  # Laplacian variance, face box resized to 128x128 gray (median)
    "sharpness_frame": "double",  # Laplacian variance, frame at 512 px longest side (median)
    "brightness_mean": "double",  # mean luma 0-255 (median over samples)
    "dark_frac": "double",  # share of pixels with luma <= 16
    "bright_frac": "double",  # share of pixels with luma >= 239
    "face_brightness": "double",
    "border_px": "int",  # thickest black border, original pixels
    "border_top": "int", "border_bottom": "int", "border_left": "int", "border_right": "int",
    "ocr_chars": "int",  # most characters recognised in one OCR frame
    "ocr_text": "string",
    "motion_mean": "double",  # mean optical-flow magnitude, px/s at 256 px longest side
    "motion_global": "double",  # median flow magnitude (camera motion / shake), px/s at 256 px
    "motion_face": "double",  # mean flow magnitude inside the face box, px/s at 256 px
    "static_frac": "double",  # share of sample pairs with motion_mean < static_px_s
    "yaw_deg": "double", "pitch_deg": "double", "roll_deg": "double",  # median |angle|
    "yaw_max_deg": "double",
    "frontal_frac": "double",  # share of samples with |yaw| <= frontal_yaw_deg and |pitch| <= frontal_pitch_deg
    "face_px": "double", "face_area_frac": "double",  # from silver.faces
    **{name: "double" for name in SCORES},  # learned scores: null unless their model path is set
    "quality_ms": "double",
}
_FACE_SIDE, _FRAME_SIDE, _FLOW_SIDE = 128, 512, 256
_BLACK, _FLAT = 20.0, 6.0  # border rows/cols: mean luma <= _BLACK in every sample and std <= _FLAT


@dataclass
class QualityParams:
    """Sampling, OCR and pose parameters; ``*_path`` enable the learned scores (ONNX)."""

    sample_fps: float = 2.0
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

    def __post_init__(self) -> None:
        validate("quality", [
            (self.sample_fps > 0, f"sample_fps must be > 0, got {self.sample_fps}"),
            (self.ocr_frames >= 0, f"ocr_frames must be >= 0, got {self.ocr_frames}"),
            (self.ocr_max_side >= 64, f"ocr_max_side must be >= 64, got {self.ocr_max_side}"),
            (0 <= self.ocr_min_score <= 1, f"ocr_min_score must be in [0, 1], got {self.ocr_min_score}"),
            (self.static_px_s >= 0, f"static_px_s must be >= 0, got {self.static_px_s}"),
            (0 < self.frontal_yaw_deg <= 90 and 0 < self.frontal_pitch_deg <= 90, "frontal_*_deg must be in (0, 90]"),
            (self.scorer_size >= 16 and self.scorer_frames >= 1, "scorer_size must be >= 16 and scorer_frames >= 1"),
            *[(ok, msg) for ok, msg in scorer_paths(self).values()],
        ])


def _dis() -> Any:
    """DIS optical flow (fast preset): recovers large displacements between samples that
    Farneback underestimates by half, at a tenth of its cost."""
    return cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_FAST)


def head_pose(lms: np.ndarray) -> tuple[float, float, float]:
    """(yaw, pitch, roll) in degrees from 5 points (eyes, nose, mouth corners; image left first).

    Geometric: roll is the eye line's angle; in the roll-corrected frame the nose tip's offset from
    the eye midpoint, over half the eye distance, is ~tan(yaw) (nose depth ~ half eye distance), and
    its height between the eye and mouth lines, against 0.55 when frontal, gives pitch (+ = down).
    Positive yaw = nose towards the image's right."""
    p = np.asarray(lms, np.float64).reshape(5, 2)
    le, re, nose, ml, mr = p
    roll = math.degrees(math.atan2(re[1] - le[1], re[0] - le[0]))
    c, s = math.cos(-math.radians(roll)), math.sin(-math.radians(roll))
    mid = (le + re) / 2
    q = (p - mid) @ np.array([[c, s], [-s, c]])
    half_eye = max(abs(q[1, 0] - q[0, 0]) / 2, 1e-6)
    yaw = math.degrees(math.atan((q[2, 0]) / half_eye / 1.1))
    mouth_y = (q[3, 1] + q[4, 1]) / 2
    ratio = q[2, 1] / mouth_y if mouth_y > 1e-6 else 0.55
    pitch = math.degrees(math.atan((ratio - 0.55) / 0.55))
    return yaw, pitch, roll


def _track_index(times: np.ndarray, t: float, tol: float) -> int | None:
    if times.size == 0:
        return None
    k = int(np.argmin(np.abs(times - t)))
    return k if abs(times[k] - t) <= tol else None


def _box(boxes: list, k: int | None) -> np.ndarray | None:
    if k is None or k >= len(boxes) or boxes[k] is None or len(boxes[k]) != 4:
        return None
    b = np.asarray(boxes[k], np.float64)
    return b if np.isfinite(b).all() and b[2] > 1 and b[3] > 1 else None


def _clip(b: np.ndarray, scale: float, shape: tuple[int, ...]) -> tuple[int, int, int, int] | None:
    x0, y0 = max(0, int(b[0] * scale)), max(0, int(b[1] * scale))
    x1, y1 = min(shape[1], int((b[0] + b[2]) * scale)), min(shape[0], int((b[1] + b[3]) * scale))
    return (x0, y0, x1, y1) if x1 - x0 >= 4 and y1 - y0 >= 4 else None


def _border(row_max: np.ndarray, row_std: np.ndarray) -> tuple[int, int]:
    black = (row_max <= _BLACK) & (row_std <= _FLAT)
    n = len(black)
    lead = int(np.argmin(black)) if not black.all() else n
    trail = int(np.argmin(black[::-1])) if not black.all() else n
    return lead, trail


def _median(values: list[float]) -> float | None:
    return float(np.median(values)) if values else None


def _ocr_picks(row: dict[str, Any], n_expected: int, params: QualityParams) -> set[int]:
    rng = np.random.default_rng(params.seed + zlib.crc32(str(row.get("clip_id", "")).encode()))
    k = min(params.ocr_frames, n_expected) if params.ocr else 0
    return set(rng.choice(n_expected, size=k, replace=False).tolist()) if k else set()


def score_clip(path: str, row: dict[str, Any], params: QualityParams) -> dict[str, Any]:
    """Quality columns (``QUALITY_COLUMNS``) of one clip row (``start_s``, ``end_s``, face track)."""
    t_start = time.perf_counter()
    start = float(row.get("start_s") or 0.0)
    end = row.get("end_s")
    end = None if end is None or (isinstance(end, float) and math.isnan(end)) else float(end)
    step = 1.0 / params.sample_fps
    times = np.asarray(row.get("track_t") if row.get("track_t") is not None else [], np.float64)
    boxes = list(row.get("track_boxes") if row.get("track_boxes") is not None else [])
    lms_all = list(row.get("track_landmarks") if row.get("track_landmarks") is not None else [])
    n_expected = max(1, int(((end if end is not None else start + 15.0) - start) * params.sample_fps) + 1)
    picks = _ocr_picks(row, n_expected, params)
    acc: dict[str, list[float]] = {k: [] for k in ("sf", "sfr", "br", "dk", "bt", "fb", "mm", "mg", "mf", "yaw",
                                                    "pitch", "roll")}
    rows_max = cols_max = rows_std = cols_std = None
    ocr_best, ocr_text, prev, prev_t, n, shape = 0, "", None, 0.0, 0, (0, 0)
    learned: dict[str, list[float]] = {name: [] for name in SCORES}
    for i, (t, frame) in enumerate(iter_frames(path, start, end, every_s=step)):
        n += 1
        shape = frame.shape[:2]
        small, scale = fit_max_side(frame, _FRAME_SIDE)
        gray = cv2.cvtColor(small, cv2.COLOR_BGR2GRAY)
        acc["sfr"].append(float(cv2.Laplacian(gray, cv2.CV_64F).var()))
        acc["br"].append(float(gray.mean()))
        acc["dk"].append(float((gray <= 16).mean()))
        acc["bt"].append(float((gray >= 239).mean()))
        rm, rs, cm, cs = gray.mean(1), gray.std(1), gray.mean(0), gray.std(0)
        rows_max = rm if rows_max is None else np.maximum(rows_max, rm)
        rows_std = rs if rows_std is None else np.maximum(rows_std, rs)
        cols_max = cm if cols_max is None else np.maximum(cols_max, cm)
        cols_std = cs if cols_std is None else np.maximum(cols_std, cs)
        k = _track_index(times, t, step)
        box = _box(boxes, k)
        face_roi = _clip(box, scale, gray.shape) if box is not None else None
        if face_roi is not None:
            x0, y0, x1, y1 = face_roi
            face = cv2.resize(gray[y0:y1, x0:x1], (_FACE_SIDE, _FACE_SIDE), interpolation=cv2.INTER_AREA)
            acc["sf"].append(float(cv2.Laplacian(face, cv2.CV_64F).var()))
            acc["fb"].append(float(face.mean()))
        if k is not None and k < len(lms_all) and lms_all[k] is not None and len(lms_all[k]) == 10:
            for name, v in zip(("yaw", "pitch", "roll"), head_pose(np.asarray(lms_all[k])), strict=True):
                acc[name].append(v)
        flow_img, fscale = fit_max_side(gray, _FLOW_SIDE)
        if prev is not None and prev.shape == flow_img.shape and t > prev_t:
            flow = cached_model(("dis-flow",), _dis).calc(prev, flow_img, None)
            mag = np.linalg.norm(flow, axis=2) / (t - prev_t)
            acc["mm"].append(float(mag.mean()))
            acc["mg"].append(float(np.median(mag)))
            froi = _clip(box, scale * fscale, flow_img.shape) if box is not None else None
            if froi is not None:
                acc["mf"].append(float(mag[froi[1]:froi[3], froi[0]:froi[2]].mean()))
        prev, prev_t = flow_img, t
        if i in picks:
            chars, text = count_text(frame, params.ocr_min_score, params.ocr_max_side)
            if chars > ocr_best:
                ocr_best, ocr_text = chars, text
        if len(learned[SCORES[0]]) < params.scorer_frames:
            for name, value in score_image(params, frame, box).items():
                learned[name].append(value)
    if n == 0:
        raise StageError("decode", f"no frames in [{start}, {end}) of {path}")
    top, bottom = _border(rows_max, rows_std)
    left, right = _border(cols_max, cols_std)
    inv = 1.0 / (min(1.0, _FRAME_SIDE / max(shape)) if max(shape) else 1.0)
    borders = {k: int(round(v * inv)) for k, v in
               (("border_top", top), ("border_bottom", bottom), ("border_left", left), ("border_right", right))}
    poses = [(y, p) for y, p in zip(acc["yaw"], acc["pitch"], strict=True)]
    return {
        "n_samples": n, "sharpness_face": _median(acc["sf"]), "sharpness_frame": _median(acc["sfr"]),
        "brightness_mean": _median(acc["br"]), "dark_frac": _median(acc["dk"]), "bright_frac": _median(acc["bt"]),
        "face_brightness": _median(acc["fb"]), **borders, "border_px": max(borders.values()),
        "ocr_chars": ocr_best if params.ocr else None, "ocr_text": (ocr_text[:200] or None) if params.ocr else None,
        "motion_mean": _median(acc["mm"]), "motion_global": _median(acc["mg"]), "motion_face": _median(acc["mf"]),
        "static_frac": float(np.mean([m < params.static_px_s for m in acc["mm"]])) if acc["mm"] else None,
        "yaw_deg": _median([abs(v) for v in acc["yaw"]]), "pitch_deg": _median([abs(v) for v in acc["pitch"]]),
        "roll_deg": _median([abs(v) for v in acc["roll"]]),
        "yaw_max_deg": max((abs(v) for v in acc["yaw"]), default=None),
        "frontal_frac": float(np.mean([abs(y) <= params.frontal_yaw_deg and abs(p) <= params.frontal_pitch_deg
                                       for y, p in poses])) if poses else None,
        "face_px": row.get("face_px"), "face_area_frac": row.get("face_area_frac"),
        **{name: (float(np.mean(v)) if v else None) for name, v in learned.items()},
        "quality_ms": (time.perf_counter() - t_start) * 1000.0,
    }
