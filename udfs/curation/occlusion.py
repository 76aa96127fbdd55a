"""A per-clip occlusion signal from the face track, for the review queue (occluded clips first).

A hand, a microphone or hair over the face shows in the main face track of ``silver.faces`` (the
detector's samples, 2 per second) in three ways, and in the dense landmarks of ``silver.av``:

- **detector misses and score dips**: a sample where the track continues but the detector did not
  see the face (score 0), or scored it ``score_dip`` below the clip's median score (MTCNN gives
  clean faces 0.99+; a covered mouth or eye pulls it down);
- **face area drops**: the (smoothed) box area under ``(1 - area_drop)`` x the clip's median area
  (part of the face hidden shrinks the box; a real move away changes it slowly and stays in);
- **landmark instability**: the 5 detector landmarks further than ``landmark_jump`` x the box side
  (RMS, after the best similarity fit) from the clip's median layout, and the av stage's ``occlusion_frac`` (share of 25 fps frames whose 68-point fit jumps
  non-rigidly, ``stages.av.params.jump``).

``occlusion`` is the larger of the share of track samples with any of the first three cues and the
av share; ``occluded`` says whether it reaches ``level``. Each cue's share is kept too, so a
reviewer (and the README's SQL) can see why a clip was flagged.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from facevid.udfs.av.face_signals import procrustes_residual
from facevid.udfs.base import validate

OCCLUSION_COLUMNS: dict[str, str] = {
    "occlusion": "double",            # max(sample share with a cue, av occlusion_frac), 0..1
    "occlusion_missed_frac": "double",  # samples where the detector missed or dipped
    "occlusion_area_frac": "double",    # samples whose face box shrank
    "occlusion_landmark_frac": "double",  # samples whose 5-point layout jumped
    "occluded": "boolean",
}


@dataclass(frozen=True)
class OcclusionParams:
    """Thresholds of the occlusion cues. Measured on the shared videos' clips: MTCNN scores of clean
    faces dip at most 0.035 under their clip's median; the landmark residual of clean frontal clips
    stays under 0.037 x the box side (a side view reaches 0.066); clean gold clips score <= 0.03 in all,
    a mouth and nose covered for 2.5 s of a 6 s clip 0.18 (tests/test_review_tasks.py)."""

    score_dip: float = 0.05
    area_drop: float = 0.25
    landmark_jump: float = 0.05
    level: float = 0.1

    def __post_init__(self) -> None:
        validate("review.occlusion", [
            (0 < self.score_dip < 1, f"score_dip must be in (0, 1), got {self.score_dip}"),
            (0 < self.area_drop < 1, f"area_drop must be in (0, 1), got {self.area_drop}"),
            (self.landmark_jump > 0, f"landmark_jump must be > 0, got {self.landmark_jump}"),
            (0 < self.level <= 1, f"level must be in (0, 1], got {self.level}"),
        ])


def _array(values: Any, width: int) -> np.ndarray:
    """Rows of ``values`` with ``width`` numbers as floats; other rows (missed samples) are NaN."""
    rows = [] if values is None else list(values)
    out = np.full((len(rows), width), np.nan)
    for i, v in enumerate(rows):
        if v is not None and len(v) >= width:
            out[i] = np.asarray(v, np.float64).reshape(-1)[:width]
    return out


def occlusion_signal(track_scores: Any, track_boxes: Any, track_landmarks: Any, av_occlusion_frac: float | None,
                     params: OcclusionParams) -> dict[str, Any]:
    """``OCCLUSION_COLUMNS`` of one clip from its main track (``silver.faces``) and the av share
    (None when the av stage has no row). A clip without a track has every value null."""
    scores = np.asarray([] if track_scores is None else list(track_scores), np.float64)
    boxes = _array(track_boxes, 4)
    av = None if av_occlusion_frac is None or not np.isfinite(av_occlusion_frac) else float(av_occlusion_frac)
    if not len(scores) or not len(boxes):
        return {k: None for k in OCCLUSION_COLUMNS} | ({"occlusion": av, "occluded": av >= params.level}
                                                       if av is not None else {})
    seen = scores > 0
    median_score = float(np.median(scores[seen])) if seen.any() else 0.0
    missed = ~seen | (scores < median_score - params.score_dip)
    area = boxes[:, 2] * boxes[:, 3]
    valid = np.isfinite(area) & (area > 0)
    small = np.zeros(len(area), bool)
    if valid.any():
        small[valid] = area[valid] < (1 - params.area_drop) * float(np.median(area[valid]))
    jumped = _landmark_jumps(track_landmarks, boxes, params.landmark_jump)
    n = min(len(scores), len(boxes), len(jumped)) if len(jumped) else min(len(scores), len(boxes))
    jumped = jumped[:n] if len(jumped) else np.zeros(n, bool)
    any_cue = missed[:n] | small[:n] | jumped
    share = float(any_cue.mean()) if n else 0.0
    occlusion = max(share, av) if av is not None else share
    return {
        "occlusion": occlusion,
        "occlusion_missed_frac": float(missed[:n].mean()) if n else None,
        "occlusion_area_frac": float(small[:n].mean()) if n else None,
        "occlusion_landmark_frac": float(jumped.mean()) if n else None,
        "occluded": bool(occlusion >= params.level),
    }


def _landmark_jumps(track_landmarks: Any, boxes: np.ndarray, jump: float) -> np.ndarray:
    """Per sample: whether its 5 landmarks differ from the clip's median layout by more than
    ``jump`` x the box side after the best similarity fit (a non-rigid change: a moved head fits,
    a hidden mouth corner or eye does not); False where a sample has no landmarks."""
    pts = _array(track_landmarks, 10)
    n = min(len(pts), len(boxes))
    out = np.zeros(n, bool)
    pts = pts[:n].reshape(n, 5, 2)
    ok = np.isfinite(pts).all(axis=(1, 2)) & np.isfinite(boxes[:n]).all(axis=1)
    if ok.sum() < 3:
        return out
    median = np.median(pts[ok], axis=0)
    side = np.maximum(boxes[:n, 2], boxes[:n, 3])
    for k in np.flatnonzero(ok):
        out[k] = procrustes_residual(median, pts[k]) > jump * max(float(side[k]), 1e-6)
    return out
