"""Shot boundary detection (content method) and shot -> clip splitting.

The detector follows PySceneDetect's ContentDetector/AdaptiveDetector: every frame is decoded
at ``analysis_side`` pixels, converted to HSV, and scored by the mean absolute difference to the
previous frame averaged over H, S and V (0-255 scale; hue difference taken on the hue circle).
Frame ``i`` starts a new shot when

* ``score[i] >= threshold`` (a large content change), and
* ``score[i] >= adaptive_ratio * mean(score of the 2 frames either side)`` (a spike, not
  sustained fast motion or camera pans), and
* at least ``min_shot_s`` has passed since the previous cut (or the video start).

Hard cuts only; gradual fades/dissolves are not detected.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from facevid.udfs.base import StageError, validate
from facevid.udfs.face.tracking import window_sums
from facevid.udfs.media.video import iter_frames

CLIP_COLUMNS: dict[str, str] = {
    "start_s": "double",
    "end_s": "double",
    "duration_s": "double",
    "shot_index": "int",
    "piece": "int",
    "n_shots": "int",
}

_WINDOW = 2  # neighbours each side for the adaptive ratio


@dataclass
class SplitParams:
    """Shot detection and clip length parameters (seconds; ``threshold`` on a 0-255 scale)."""

    threshold: float = 30.0
    min_shot_s: float = 0.5
    min_clip_s: float = 2.0
    max_clip_s: float = 15.0
    analysis_side: int = 64
    adaptive_ratio: float = 3.0

    def __post_init__(self) -> None:
        validate("split", [
            (0 < self.threshold <= 255, f"threshold must be in (0, 255], got {self.threshold}"),
            (self.min_shot_s >= 0, f"min_shot_s must be >= 0, got {self.min_shot_s}"),
            (self.min_clip_s >= 0, f"min_clip_s must be >= 0, got {self.min_clip_s}"),
            (self.max_clip_s > 0 and self.max_clip_s >= 2 * self.min_clip_s,
             "max_clip_s must be > 0 and >= 2 * min_clip_s (so long shots split into pieces that are all "
             f">= min_clip_s), got max_clip_s={self.max_clip_s}, min_clip_s={self.min_clip_s}"),
            (self.analysis_side >= 8, f"analysis_side must be >= 8 pixels, got {self.analysis_side}"),
            (self.adaptive_ratio >= 1, f"adaptive_ratio must be >= 1, got {self.adaptive_ratio}"),
        ])


def content_scores(path: str, analysis_side: int = 64) -> tuple[np.ndarray, np.ndarray, float]:
    """``(times, scores, end_s)`` for every frame: HSV mean-abs-difference to the previous frame
    (``scores[0] = 0``); ``end_s`` is the last frame's time plus one frame duration."""
    times: list[float] = []
    scores: list[float] = []
    prev: np.ndarray | None = None
    for t, bgr in iter_frames(path, max_side=analysis_side):
        hsv = cv2.cvtColor(bgr, cv2.COLOR_BGR2HSV)  # OpenCV 8-bit hue is 0..179
        if prev is None:
            score = 0.0
        else:
            diff = cv2.absdiff(hsv, prev)
            hue = np.minimum(diff[..., 0], 180 - diff[..., 0])  # circular hue distance, max 90
            _, sat, val, _ = cv2.mean(diff)
            score = (float(hue.mean()) * 255.0 / 90.0 + sat + val) / 3.0
        times.append(t)
        scores.append(score)
        prev = hsv
    if not times:
        raise StageError("decode", f"no frames decoded from {path}")
    t_arr = np.asarray(times)
    step = float(np.median(np.diff(t_arr))) if len(t_arr) > 1 else 0.04
    return t_arr, np.asarray(scores), float(t_arr[-1] + step)


def find_cuts(times: np.ndarray, scores: np.ndarray, params: SplitParams) -> list[float]:
    """Cut times (start of each new shot) from per-frame content scores (see module docstring)."""
    sums, counts = window_sums(scores, _WINDOW)
    neigh_mean = (sums - scores) / np.maximum(counts - 1, 1.0)  # the frame itself excluded
    candidates = np.flatnonzero(
        (scores >= params.threshold) & (scores >= params.adaptive_ratio * neigh_mean)
    )
    cuts: list[float] = []
    last = float(times[0])
    for i in candidates:
        t = float(times[i])
        if t - last >= params.min_shot_s:
            cuts.append(t)
            last = t
    return cuts


def detect_shots(path: str, params: SplitParams) -> list[tuple[float, float]]:
    """Shots ``[(start_s, end_s), ...]`` covering the whole video, in order."""
    times, scores, end = content_scores(path, params.analysis_side)
    bounds = [float(times[0]), *find_cuts(times, scores, params), end]
    return list(zip(bounds[:-1], bounds[1:], strict=True))


def make_clips(shots: list[tuple[float, float]], params: SplitParams) -> list[dict[str, Any]]:
    """Clip rows from shots: long shots cut into near-equal pieces <= ``max_clip_s``; shots
    shorter than ``min_clip_s`` become rows with an ``error`` (kept, never silently dropped)."""
    rows: list[dict[str, Any]] = []
    for shot_index, (start, end) in enumerate(shots):
        dur = end - start
        n = max(1, math.ceil(dur / params.max_clip_s - 1e-9))
        edges = np.linspace(start, end, n + 1)
        for piece in range(n):
            a, b = float(edges[piece]), float(edges[piece + 1])
            row: dict[str, Any] = {
                "start_s": a,
                "end_s": b,
                "duration_s": b - a,
                "shot_index": shot_index,
                "piece": piece,
                "n_shots": len(shots),
                "error": None,
            }
            if b - a < params.min_clip_s:
                row.update(error=f"min_clip_s: {b - a:.2f}s < {params.min_clip_s}s", error_value=f"{b - a:.2f}",
                           error_threshold=str(params.min_clip_s))
            rows.append(row)
    return rows


def split_row(row: dict[str, Any], params: SplitParams) -> list[dict[str, Any]]:
    """Per-row UDF body: a row with ``uri`` (a local path) -> its clip rows."""
    return make_clips(detect_shots(str(row["uri"]), params), params)
