"""Greedy IoU tracking of face boxes over sampled frames, main-track choice and box smoothing.

Boxes are ``[x, y, w, h]``. Each sample's detections are matched to live tracks by IoU with
each track's *predicted* box (last box moved by its last per-sample velocity), best pairs first;
a pair needs IoU >= ``iou_threshold``. A track stays live while it has missed at most
``max_gap`` consecutive samples; unmatched detections start new tracks.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from facevid.udfs.models.detectors import Detections


@dataclass
class Track:
    """One face over time: sample indices and the matched detections (landmarks NaN if absent)."""

    idx: list[int] = field(default_factory=list)
    boxes: list[np.ndarray] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)
    landmarks: list[np.ndarray] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.idx)

    def add(self, k: int, box: np.ndarray, score: float, lms: np.ndarray | None) -> None:
        self.idx.append(k)
        self.boxes.append(np.asarray(box, np.float64))
        self.scores.append(float(score))
        self.landmarks.append(np.full(10, np.nan) if lms is None else np.asarray(lms, np.float64))

    def predict(self, k: int) -> np.ndarray:
        """Box expected at sample ``k`` under constant velocity (last box if seen once)."""
        if len(self.idx) < 2:
            return self.boxes[-1]
        velocity = (self.boxes[-1] - self.boxes[-2]) / (self.idx[-1] - self.idx[-2])
        return self.boxes[-1] + velocity * (k - self.idx[-1])

    def mean_area(self) -> float:
        b = np.asarray(self.boxes)
        return float(np.mean(b[:, 2] * b[:, 3])) if len(b) else 0.0


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise IoU of ``[x, y, w, h]`` boxes: ``len(a) x len(b)``."""
    a = np.asarray(a, np.float64).reshape(-1, 4)[:, None, :]
    b = np.asarray(b, np.float64).reshape(-1, 4)[None, :, :]
    iw = np.clip(np.minimum(a[..., 0] + a[..., 2], b[..., 0] + b[..., 2]) - np.maximum(a[..., 0], b[..., 0]), 0, None)
    ih = np.clip(np.minimum(a[..., 1] + a[..., 3], b[..., 1] + b[..., 3]) - np.maximum(a[..., 1], b[..., 1]), 0, None)
    inter = iw * ih
    union = a[..., 2] * a[..., 3] + b[..., 2] * b[..., 3] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def expand_boxes(boxes: np.ndarray, factor: float) -> np.ndarray:
    """``[x, y, w, h]`` boxes scaled by ``factor`` about their centres."""
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    if factor == 1.0:
        return boxes
    wh = boxes[:, 2:] * factor
    return np.concatenate([boxes[:, :2] + (boxes[:, 2:] - wh) / 2, wh], axis=1)


def track_faces(
    samples: Sequence[Detections], iou_threshold: float = 0.3, max_gap: int = 2, expand: float = 2.0,
) -> list[Track]:
    """Tracks over per-sample detections ``(boxes, scores, landmarks|None)``, in creation order.

    The association score is the IoU of boxes scaled by ``expand`` about their centres (scale
    invariant for still faces, tolerant of motion between sparse samples), taking the better of
    the track's last and predicted box.
    """
    tracks: list[Track] = []
    for k, (boxes, scores, lms) in enumerate(samples):
        boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
        live = [t for t in tracks if k - t.idx[-1] - 1 <= max_gap]
        taken_t: set[int] = set()
        taken_d: set[int] = set()
        if live and len(boxes):
            dets = expand_boxes(boxes, expand)
            iou = np.maximum(
                iou_matrix(expand_boxes(np.array([t.boxes[-1] for t in live]), expand), dets),
                iou_matrix(expand_boxes(np.array([t.predict(k) for t in live]), expand), dets),
            )
            for flat in np.argsort(-iou, axis=None, kind="stable"):
                ti, di = divmod(int(flat), len(boxes))
                if iou[ti, di] < iou_threshold:
                    break
                if ti in taken_t or di in taken_d:
                    continue
                live[ti].add(k, boxes[di], scores[di], None if lms is None else lms[di])
                taken_t.add(ti)
                taken_d.add(di)
        for di in range(len(boxes)):
            if di not in taken_d:
                track = Track()
                track.add(k, boxes[di], scores[di], None if lms is None else lms[di])
                tracks.append(track)
    return tracks


def main_track(tracks: Sequence[Track]) -> Track | None:
    """The track with most detections (ties: larger mean box area); None without tracks."""
    return max(tracks, key=lambda t: (len(t), t.mean_area()), default=None)


def window_sums(values: np.ndarray, half: int) -> tuple[np.ndarray, np.ndarray]:
    """Sums over the centered window ``[i - half, i + half]`` (clipped to the array) along
    axis 0, and the number of elements in each window."""
    values = np.asarray(values, np.float64)
    n = len(values)
    csum = np.concatenate([np.zeros((1, *values.shape[1:])), np.cumsum(values, axis=0)])
    i = np.arange(n)
    lo, hi = np.maximum(i - half, 0), np.minimum(i + half + 1, n)
    return csum[hi] - csum[lo], (hi - lo).astype(np.float64)


def moving_average(values: np.ndarray, window: int) -> np.ndarray:
    """Centered moving average of ``window`` (odd) samples along axis 0; shrinks at the ends."""
    values = np.asarray(values, np.float64)
    sums, counts = window_sums(values, max(window, 1) // 2)
    return sums / counts.reshape(-1, *([1] * (values.ndim - 1)))


def smooth_track(track: Track, n_samples: int, window: int = 5) -> np.ndarray:
    """``n_samples x 4`` boxes: linear interpolation over missed samples (edge boxes held
    before the first / after the last detection), then a centered moving average."""
    idx = np.asarray(track.idx, np.float64)
    boxes = np.asarray(track.boxes, np.float64)
    grid = np.arange(n_samples, dtype=np.float64)
    filled = np.stack([np.interp(grid, idx, boxes[:, j]) for j in range(4)], axis=1)
    return moving_average(filled, window)
