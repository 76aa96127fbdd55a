"""CLIPScore between a video's prompt and its frames: torchmetrics' ``CLIPScore`` with a CLIP model from
a configured local folder (``resolve_folder(..., marker="config.json")``; never a hub download).

The folder holds a transformers ``CLIPModel`` and ``CLIPProcessor`` (``save_pretrained`` output, e.g. a
copy of openai/clip-vit-large-patch14, the torchmetrics default). transformers 5's
``get_image_features``/``get_text_features`` return a ``BaseModelOutputWithPooling`` whose
``pooler_output`` already holds the *projected* embedding (modeling_clip.py: ``pooler_output =
visual_projection(pooled_output)``); torchmetrics expects that tensor, so ``TensorCLIP`` returns it.

Score of one video: torchmetrics' ``max(100 * mean_frames cos(E_frame, E_prompt), 0)`` over its frames
(every frame, or ``frames_per_video`` uniformly sampled ones), each resized to ``resolution`` first;
the CLIP processor then resizes and crops to the model's input (224 for ViT-L/14). Prompts longer
than the text model's 77 positions are truncated (torchmetrics warns).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

import torch

from facevid.udfs.metrics.frames import as_videos, resize_frames, uniform_frame_indices
from facevid.udfs.models.torch_compat import import_torchvision
from facevid.udfs.models.weights import resolve_folder

_classes: dict[str, type] = {}
_lock = threading.Lock()


def tensor_clip_class() -> type:
    """``CLIPModel`` whose ``get_image_features``/``get_text_features`` return the projected tensor."""
    with _lock:
        if "clip" not in _classes:
            import_torchvision()
            from transformers import CLIPModel

            def _tensor(out: Any) -> torch.Tensor:
                return out if isinstance(out, torch.Tensor) else out.pooler_output

            class TensorCLIP(CLIPModel):
                def get_image_features(self, *args: Any, **kwargs: Any) -> torch.Tensor:
                    return _tensor(super().get_image_features(*args, **kwargs))

                def get_text_features(self, *args: Any, **kwargs: Any) -> torch.Tensor:
                    return _tensor(super().get_text_features(*args, **kwargs))

            _classes["clip"] = TensorCLIP
        return _classes["clip"]


def load_clip(uri: str | None, param: str, device: str = "cpu", cache_dir: str | None = None) -> tuple[Any, Any]:
    """``(model, processor)`` from the CLIP folder ``uri`` (config key ``param``); a folder that is not a
    loadable CLIP model is one ValueError naming ``param``."""
    folder = resolve_folder(uri, param, "a CLIP model folder (CLIPModel + CLIPProcessor, save_pretrained)",
                            marker="config.json", cache_dir=cache_dir)
    import_torchvision()
    from transformers import CLIPProcessor

    try:
        model = tensor_clip_class().from_pretrained(str(folder), local_files_only=True).eval().to(device)
        processor = CLIPProcessor.from_pretrained(str(folder), local_files_only=True)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"{param}: {uri} is not a loadable CLIP model folder: "
                         f"{str(exc).splitlines()[0][:200]}") from exc
    return model, processor


class ClipScorer:
    """CLIPScore of videos against their prompts (module docstring) with torchmetrics' ``CLIPScore``."""

    def __init__(self, model: Any, processor: Any, device: str = "cpu", frames_per_video: int | None = None,
                 resolution: int | None = 512) -> None:
        import_torchvision()
        from torchmetrics.multimodal.clip_score import CLIPScore

        self.metric = CLIPScore(model_name_or_path=lambda: (model, processor)).to(device)
        self.device, self.frames_per_video, self.resolution = device, frames_per_video, resolution

    @classmethod
    def load(cls, uri: str | None, param: str, device: str = "cpu", frames_per_video: int | None = None,
             resolution: int | None = 512, cache_dir: str | None = None) -> ClipScorer:
        """A scorer with the CLIP folder ``uri`` (config key ``param``; see ``load_clip``)."""
        model, processor = load_clip(uri, param, device, cache_dir)
        return cls(model, processor, device, frames_per_video, resolution)

    def score_video(self, video: Any, prompt: str) -> float:
        """CLIPScore of one video ``(T, C, H, W)`` (uint8, or float in [0, 1]) against ``prompt``."""
        frames = as_videos(video[None], "a video (T, C, H, W)")[0]
        if self.frames_per_video is not None:
            frames = frames[uniform_frame_indices(frames.shape[0], self.frames_per_video)]
        frames = resize_frames(frames, self.resolution).to(self.device)
        self.metric.reset()
        with torch.no_grad():
            self.metric.update(list(frames), [prompt] * frames.shape[0])
            return float(self.metric.compute())

    def scores(self, videos: Any, prompts: Sequence[str]) -> list[float]:
        """One score per video of a batch ``(N, T, C, H, W)`` (or a sequence of ``(T, C, H, W)`` videos)."""
        if len(videos) != len(prompts):
            raise ValueError(f"{len(videos)} videos but {len(prompts)} prompts")
        return [self.score_video(v, p) for v, p in zip(videos, prompts, strict=True)]
