"""FID and FVD of generated videos against real ones, the DH-FaceVid-1K way.

- FID: ``frames_per_video`` (4) uniformly sampled frames of every video (``uniform_frame_indices``),
  resized to ``resolution`` (512), through an image extractor (the TF FID Inception in production);
  the Frechet distance of the real and generated frame features.
- FVD: one clip of ``num_frames`` (16) frames per video, from frame ``start`` every ``stride`` frames
  (StyleGAN-V takes one clip of consecutive frames per video and drops short videos: here a short
  video is a ValueError), resized to ``resolution``, through a video extractor (I3D).

Videos: ``facevid.udfs.metrics.frames`` (``(N, T, C, H, W)`` RGB, uint8 or float in [0, 1]; a batch or
an iterable of batches). Features stream into ``FeatureAccumulator`` batch by batch; the real side
may be given as precomputed ``GaussianStats`` (e.g. ``GaussianStats.load`` of a cached file).
"""

from __future__ import annotations

from typing import Any

from facevid.udfs.metrics.extractors import FeatureExtractor
from facevid.udfs.metrics.frames import clip_window, iter_video_batches, resize_videos, sample_frames
from facevid.udfs.metrics.frechet import FeatureAccumulator, GaussianStats, frechet_distance


def _need(extractor: FeatureExtractor, kind: str, metric: str) -> None:
    if extractor.kind != kind:
        raise ValueError(f"{metric} needs an {kind} feature extractor, got a {extractor.kind} one ({extractor.fmt})")


def image_stats(videos: Any, extractor: FeatureExtractor, frames_per_video: int = 4, resolution: int | None = 512,
                batch_size: int = 16) -> FeatureAccumulator:
    """Streaming statistics of the image features of ``frames_per_video`` uniformly sampled frames of
    each video (``batch_size`` videos per extractor call)."""
    _need(extractor, "image", "FID")
    acc = FeatureAccumulator()
    for batch in iter_video_batches(videos, batch_size):
        acc.update(extractor(sample_frames(batch, frames_per_video, resolution)))
    return acc


def video_stats(videos: Any, extractor: FeatureExtractor, num_frames: int = 16, start: int = 0, stride: int = 1,
                resolution: int | None = 512, batch_size: int = 8) -> FeatureAccumulator:
    """Streaming statistics of the video features of one ``num_frames`` clip per video."""
    _need(extractor, "video", "FVD")
    acc = FeatureAccumulator()
    for batch in iter_video_batches(videos, batch_size):
        acc.update(extractor(resize_videos(clip_window(batch, num_frames, start, stride), resolution)))
    return acc


def _stats(side: Any, compute: Any) -> GaussianStats:
    return side if isinstance(side, GaussianStats) else compute(side).stats()


def fid(real: Any, generated: Any, extractor: FeatureExtractor, frames_per_video: int = 4,
        resolution: int | None = 512, batch_size: int = 16) -> float:
    """FID between the sampled frames of ``real`` (videos or ``GaussianStats``) and ``generated`` videos."""
    def compute(videos: Any) -> FeatureAccumulator:
        return image_stats(videos, extractor, frames_per_video, resolution, batch_size)

    return frechet_distance(_stats(real, compute), _stats(generated, compute))


def fvd(real: Any, generated: Any, extractor: FeatureExtractor, num_frames: int = 16, start: int = 0,
        stride: int = 1, resolution: int | None = 512, batch_size: int = 8) -> float:
    """FVD between one ``num_frames`` clip of each ``real`` video (or ``GaussianStats``) and of each
    ``generated`` video."""
    def compute(videos: Any) -> FeatureAccumulator:
        return video_stats(videos, extractor, num_frames, start, stride, resolution, batch_size)

    return frechet_distance(_stats(real, compute), _stats(generated, compute))
