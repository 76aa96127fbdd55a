"""Image-quality scores of generated videos with configured ONNX scorers (the quality stage's convention).

Any ONNX model image -> number, as ``facevid.udfs.models.scorers`` runs them: RGB resized to the model's
fixed input size (else ``size``), ``(x / 255 - mean) / std``, NCHW float32, one batch when the batch
axis is dynamic; a frame's score is the mean of its row of the first output. The usual models:
``aesthetic`` (e.g. a LAION aesthetic head), ``iqa`` ("imaging quality", e.g. MUSIQ/CLIP-IQA) and
``fiqa`` (face image quality, e.g. DSL-FIQA). In evaluation every model sees the whole frame: a
generated video is already a face crop. A video's score is the mean over ``frames_per_video``
uniformly sampled frames, each resized to ``resolution`` first (the protocol's 512 x 512).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np

from facevid.udfs.metrics.frames import iter_video_batches, sample_frames
from facevid.udfs.models.scorers import input_size, onnx_session, run_scorer, scorer_input
from facevid.udfs.models.weights import resolve_file

QUALITY_SCORES = ("aesthetic", "iqa", "fiqa")
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def load_scorer(uri: str | None, param: str, threads: int = 1, cache_dir: str | None = None) -> Any:
    """An ONNX Runtime session for the scorer ``uri`` (config key ``param``); a file that is not an
    ONNX model, or one without a 4-D image input, is one ValueError naming ``param``."""
    path = resolve_file(uri, param, "an ONNX image -> score model", cache_dir=cache_dir)
    try:
        session = onnx_session(str(path), threads)
    except Exception as exc:  # onnxruntime raises its own Fail/InvalidProtobuf types
        raise ValueError(f"{param}: {uri} is not a loadable ONNX model: {str(exc).splitlines()[0][:200]}") from exc
    shape = session.get_inputs()[0].shape
    if len(shape) != 4 or (isinstance(shape[1], int) and shape[1] != 3):
        raise ValueError(f"{param}: {uri} takes input shape {shape}, not an image batch (N, 3, H, W)")
    return session


class ImageQualityScorer:
    """Scores videos with each configured model (``models``: ``{name: (uri, param)}``)."""

    def __init__(self, models: Mapping[str, tuple[str | None, str]], size: int = 224, mean: Any = IMAGENET_MEAN,
                 std: Any = IMAGENET_STD, frames_per_video: int = 4, resolution: int | None = 512,
                 threads: int = 1, cache_dir: str | None = None) -> None:
        self.sessions = {name: load_scorer(uri, param, threads, cache_dir) for name, (uri, param) in models.items()}
        self.size, self.mean, self.std = size, mean, std
        self.frames_per_video, self.resolution = frames_per_video, resolution

    def _frame_scores(self, frames: np.ndarray) -> Iterator[tuple[str, np.ndarray]]:
        for name, session in self.sessions.items():
            size = input_size(session, self.size)
            inputs = [scorer_input(f, size, self.mean, self.std, bgr=False) for f in frames]
            yield name, run_scorer(session, inputs)

    def score_videos(self, videos: Any, batch_size: int = 16) -> dict[str, np.ndarray]:
        """``{name: (N,) float64}``: each video's mean score over its sampled frames. ``videos``: a batch
        ``(N, T, C, H, W)`` or an iterable of batches (``facevid.udfs.metrics.frames``)."""
        out: dict[str, list[np.ndarray]] = {name: [] for name in self.sessions}
        k = self.frames_per_video
        for batch in iter_video_batches(videos, batch_size):
            frames = sample_frames(batch, k, self.resolution).permute(0, 2, 3, 1).contiguous().numpy()  # RGB HWC
            for name, scores in self._frame_scores(frames):
                out[name].append(scores.reshape(-1, k).mean(axis=1))
        return {name: np.concatenate(v) if v else np.zeros(0) for name, v in out.items()}
