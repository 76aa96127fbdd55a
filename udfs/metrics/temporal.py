"""Weight-free video scores, reported beside the learned ones (they need no model file, so the CPU
default always has them):

- ``temporal_flicker``: VBench's temporal-flickering idea, ``1 - mean |frame_t - frame_(t-1)| / 255``
  over consecutive frames (1 = a still picture; lower = more frame-to-frame change);
- ``sharpness``: the mean Laplacian variance of the frames in gray (the quality stage's measure of
  blur), at the evaluation resolution.

Videos: ``(N, T, C, H, W)`` RGB, uint8 or float in [0, 1] (``facevid.udfs.metrics.frames``).
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np


def _uint8(videos: Any) -> np.ndarray:
    import torch

    if isinstance(videos, torch.Tensor):
        videos = videos.detach().cpu()
        videos = videos if videos.dtype == torch.uint8 else (videos.clamp(0, 1) * 255).round().to(torch.uint8)
        videos = videos.numpy()
    arr = np.asarray(videos)
    if arr.ndim != 5 or arr.shape[2] != 3:
        raise ValueError(f"videos must be (N, T, 3, H, W), got shape {arr.shape}")
    return arr if arr.dtype == np.uint8 else (np.clip(arr, 0, 1) * 255).round().astype(np.uint8)


def temporal_flicker(videos: Any) -> np.ndarray:
    """``(N,)``: per video ``1 - mean |f_t - f_(t-1)| / 255`` (1.0 for a one-frame video)."""
    arr = _uint8(videos).astype(np.int16)
    if arr.shape[1] < 2:
        return np.ones(arr.shape[0])
    diff = np.abs(np.diff(arr, axis=1)).mean(axis=(1, 2, 3, 4))
    return 1.0 - diff / 255.0


def sharpness(videos: Any) -> np.ndarray:
    """``(N,)``: per video the mean Laplacian variance of its frames (gray, 0-255)."""
    arr = _uint8(videos)
    out = np.empty(arr.shape[0])
    for i, video in enumerate(arr):
        grays = [cv2.cvtColor(np.ascontiguousarray(f.transpose(1, 2, 0)), cv2.COLOR_RGB2GRAY) for f in video]
        out[i] = float(np.mean([cv2.Laplacian(g, cv2.CV_64F).var() for g in grays]))
    return out
