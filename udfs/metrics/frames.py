"""Videos as the metrics take them, frame sampling and resizing.

Layout (one for every metric): a batch of videos ``(N, T, C, H, W)``, RGB, C = 3 -- the layout of
``VideoBackend.generate`` (``facevid.udfs.train.backend``). Values: ``uint8`` in ``[0, 255]``, or a
floating dtype in ``[0, 1]`` (overshoot up to 0.05 clamped, more is an error; then quantised to uint8
as StyleGAN-V / clean-fid quantise generated images, so real and generated frames take the same
path). A numpy array or a torch tensor.
A collection of videos is such a batch or an iterable of such batches (a generator keeps thousands
of videos out of memory).

Resizing: bicubic with antialiasing (``F.interpolate(..., antialias=True)``, close to PIL's bicubic
that clean-fid recommends), rounded back to uint8: first to the evaluation resolution (512 x 512 in
the DH-FaceVid-1K protocol), then by each extractor to its own input size. Non-square frames are
stretched (gold crops are square).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

LAYOUT = "(N, T, C, H, W) RGB, uint8 in [0, 255] or float in [0, 1]"


def as_videos(videos: Any, what: str = "videos") -> torch.Tensor:
    """``videos`` as a uint8 tensor ``(N, T, 3, H, W)`` (module docstring); ValueError otherwise."""
    x = videos if isinstance(videos, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(videos))
    if x.ndim != 5 or x.shape[2] != 3:
        hint = " (channels last? transpose to (N, T, C, H, W))" if x.ndim == 5 and x.shape[-1] == 3 else ""
        raise ValueError(f"{what} must be {LAYOUT}; got shape {tuple(x.shape)}{hint}")
    if x.dtype == torch.uint8:
        return x
    if not x.is_floating_point():
        raise ValueError(f"{what} must be uint8 or floating point, got {x.dtype}")
    if not torch.isfinite(x).all():
        raise ValueError(f"{what} hold NaN or inf values")
    lo, hi = float(x.min()), float(x.max())
    if lo < -0.05 or hi > 1.05:  # a decoder's or VAE's overshoot is clamped; [-1, 1] or [0, 255] is a bug
        raise ValueError(f"floating {what} must be in [0, 1], got [{lo:.3g}, {hi:.3g}] "
                         "(from [-1, 1]: (x + 1) / 2; from [0, 255]: pass uint8)")
    return (x.clamp(0, 1) * 255).round().to(torch.uint8)


def iter_video_batches(videos: Any, batch_size: int, what: str = "videos") -> Iterator[torch.Tensor]:
    """uint8 batches of at most ``batch_size`` videos from a batch or an iterable of batches."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    sources: Iterable[Any] = [videos] if isinstance(videos, (torch.Tensor, np.ndarray)) else videos
    for batch in sources:
        x = as_videos(batch, what)
        for i in range(0, x.shape[0], batch_size):
            yield x[i:i + batch_size]


def uniform_frame_indices(num_frames: int, k: int) -> list[int]:
    """``k`` frame indices spread uniformly over ``num_frames``: the centres of ``k`` equal segments
    (``floor((2i + 1) T / 2k)``), distinct, in order, never a segment's edge (an I2V video's first
    frame is its conditioning image). ValueError when ``num_frames < k``."""
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if num_frames < k:
        raise ValueError(f"cannot sample {k} distinct frames from a video of {num_frames}")
    return [(2 * i + 1) * num_frames // (2 * k) for i in range(k)]


def resize_frames(frames: torch.Tensor, size: int | None) -> torch.Tensor:
    """uint8 frames ``(M, 3, H, W)`` resized to ``size`` x ``size`` (bicubic, antialiased, rounded);
    unchanged when ``size`` is None or already theirs."""
    if size is None or tuple(frames.shape[-2:]) == (size, size):
        return frames
    x = F.interpolate(frames.float(), size=(size, size), mode="bicubic", antialias=True, align_corners=False)
    return x.round_().clamp_(0, 255).to(torch.uint8)


def resize_videos(videos: torch.Tensor, size: int | None) -> torch.Tensor:
    """uint8 videos ``(N, T, 3, H, W)`` with every frame resized as ``resize_frames``."""
    n, t = videos.shape[:2]
    return resize_frames(videos.flatten(0, 1), size).unflatten(0, (n, t))


def sample_frames(videos: torch.Tensor, k: int, size: int | None) -> torch.Tensor:
    """``k`` uniformly sampled frames of each video, resized: uint8 ``(N * k, 3, size, size)``."""
    idx = uniform_frame_indices(videos.shape[1], k)
    return resize_frames(videos[:, idx].flatten(0, 1), size)


def clip_window(videos: torch.Tensor, num_frames: int, start: int = 0, stride: int = 1) -> torch.Tensor:
    """Frames ``start, start + stride, ...`` (``num_frames`` of them) of each video, ``(N, num_frames,
    ...)``; ValueError when the videos are too short (short videos are not padded)."""
    need = start + (num_frames - 1) * stride + 1
    if videos.shape[1] < need:
        raise ValueError(f"videos have {videos.shape[1]} frames; {num_frames} frames from {start} every "
                         f"{stride} need {need}")
    return videos[:, start:need:stride]
