"""The ``vlm`` captioning backend: a transformers image-text-to-text model from a configured folder.

``VlmCaptioner.load(settings)`` reads the folder with ``AutoProcessor`` and
``AutoModelForImageTextToText.from_pretrained`` (local, ``dbfs:/``, ``/Volumes/...`` or an
``s3://`` prefix downloaded once to a local cache keyed by the objects' ETags and sizes; nothing
is ever fetched from a hub). The family comes from ``config.model_type``:

- ``qwen2_5_vl``, ``qwen3_vl``: the frames go in as one video (padded to a multiple of the
  temporal patch by repeating the last frame, as the processor itself would) with
  ``video_metadata`` built from the frame times, so Qwen3-VL's ``<t seconds>`` stamps and
  Qwen2.5-VL's temporal positions follow the real clock; ``do_sample_frames=False`` (the frames
  are already sampled). Pixel budgets are explicit and PER FRAME (``min_pixels``/``max_pixels``;
  Qwen2.5-VL's video processor would otherwise upscale 224 px frames to its 100,352-pixel floor,
  288 tokens a clip; Qwen3-VL's budget counts all frames, so it is multiplied by the frame count).
- ``llava_onevision``: one video (384 px, pooled: fixed tokens per frame; pixel budgets do not
  apply). A batch needs equal frame counts, so items are grouped by frame count and each group is
  one ``generate`` call.
- anything else (e.g. a PLLaVA checkpoint converted to a transformers type): the generic path, the
  frames as images through the processor's own chat template.

``generate`` left-pads every batch (it sets ``tokenizer.padding_side`` and checks the attention
mask afterwards: a processor that pads on the right raises, as right padding silently changes
batched results), decodes only the new tokens and runs under ``torch.inference_mode``. Greedy
decoding when ``temperature == 0``. One captioner per executor process:
``shared_model(model_key(settings), lambda: VlmCaptioner.load(settings))``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import astuple, dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from facevid.udfs.base import validate
from facevid.udfs.models.runtime import resolve_device, weights_hash
from facevid.udfs.models.torch_compat import import_torchvision
from facevid.udfs.models.weights import resolve_folder

FAMILIES = ("qwen2_5_vl", "qwen3_vl", "llava_onevision")
GENERIC = "generic"
DTYPES = ("auto", "bfloat16", "float16", "float32")
ATTENTION = ("sdpa", "eager", "flash_attention_2")
PARAM = "stages.caption.params.model_path"
Item = tuple[Sequence[np.ndarray], str] | tuple[Sequence[np.ndarray], str, Sequence[float]]
AllowedFn = Callable[[int, Any], list[int]]
_CLOCK = 1000.0  # video_metadata fps: frame indices are milliseconds, so timestamps are exact


@dataclass
class VlmSettings:
    """What loads and drives the captioner (``stages.caption.params`` of ``pipeline.yml``)."""

    model_path: str | None = None  # a model folder: local, dbfs:/, /Volumes/..., or an s3:// prefix
    device: str = "auto"  # auto (cuda when visible) | cpu | cuda | cuda:N
    dtype: str = "auto"  # auto: bfloat16 on CUDA, float32 on the CPU
    attn_implementation: str = "sdpa"  # flash_attention_2 needs the flash-attn package and a GPU
    max_new_tokens: int = 256
    temperature: float = 0.0  # 0 = greedy (deterministic)
    frame_side: int = 448  # longest side the frames are sampled at (sample_frames' side)
    min_pixels: int = 56 * 56  # per frame, Qwen families (the processors' own floors upscale small frames)
    max_pixels: int = 448 * 448  # per frame, Qwen families: 448 px = 256 tokens a frame
    frames_as: str = "auto"  # auto (video for the known families, images otherwise) | video | images
    cache_dir: str | None = None  # where s3:// folders are downloaded (default ~/.cache/facevid/models)

    def __post_init__(self) -> None:
        validate("caption", [
            (self.dtype in DTYPES, f"dtype must be one of {DTYPES}, got {self.dtype!r}"),
            (self.attn_implementation in ATTENTION,
             f"attn_implementation must be one of {ATTENTION}, got {self.attn_implementation!r}"),
            (self.device == "auto" or self.device == "cpu" or self.device.startswith("cuda"),
             f"device must be auto, cpu or cuda[:N], got {self.device!r}"),
            (self.max_new_tokens >= 1, f"max_new_tokens must be >= 1, got {self.max_new_tokens}"),
            (self.temperature >= 0, f"temperature must be >= 0, got {self.temperature}"),
            (self.frame_side >= 28, f"frame_side must be >= 28, got {self.frame_side}"),
            (0 < self.min_pixels <= self.max_pixels,
             f"min_pixels/max_pixels must satisfy 0 < min <= max, got {self.min_pixels}/{self.max_pixels}"),
            (self.frames_as in ("auto", "video", "images"),
             f"frames_as must be auto, video or images, got {self.frames_as!r}"),
        ])


def model_key(settings: VlmSettings) -> tuple:
    """The ``shared_model`` key: one captioner per process per settings (a captioner keeps its
    settings: two stages asking for other token or pixel budgets get their own)."""
    return ("caption.vlm", *astuple(settings))


WHAT = "a transformers model folder with config.json, weights, tokenizer and processor files"


def resolve_model_path(uri: str | None, cache_dir: str | None = None) -> Path:
    """A local model folder for ``uri`` (``facevid.udfs.models.weights``: local, dbfs:/, /Volumes or
    an s3:// prefix cached by its listing). Raises ``FileNotFoundError`` naming
    ``stages.caption.params.model_path`` when it is unset, missing or has no config.json."""
    return resolve_folder(uri, PARAM, WHAT, marker="config.json", cache_dir=cache_dir)


def transformers_version() -> str:
    import transformers

    return transformers.__version__


def torch_dtype(name: str, device: str) -> Any:
    import torch

    if name == "auto":
        return torch.bfloat16 if device.startswith("cuda") else torch.float32
    return getattr(torch, name)


def _metadata(times: Sequence[float]) -> dict[str, Any]:
    """``video_metadata`` for frames shown at ``times`` (s): millisecond frame indices on a 1 kHz
    clock (Qwen3-VL's timestamps are then the real times) and a frame total that makes the
    sampled rate the mean rate of the frames shown (Qwen2.5-VL's temporal positions)."""
    n = len(times)
    gap = (times[-1] - times[0]) / (n - 1) if n > 1 and times[-1] > times[0] else 1.0
    return {"fps": _CLOCK, "frames_indices": [round(t * _CLOCK) for t in times],
            "total_num_frames": max(n, round(n * gap * _CLOCK)), "duration": n * gap}


def _pad_frames(frames: list[np.ndarray], times: list[float], multiple: int) -> tuple[list, list]:
    extra = -len(frames) % multiple
    return frames + [frames[-1]] * extra, times + [times[-1]] * extra


class VlmCaptioner:
    """A loaded model + processor; ``generate`` captions a batch of clips (thread-safe: serialised)."""

    def __init__(self, model: Any, processor: Any, settings: VlmSettings, family: str, device: str,
                 folder: Path) -> None:
        self.model, self.processor, self.settings = model, processor, settings
        self.family, self.device, self.folder = family, device, folder
        self.model_type: str = model.config.model_type
        self.frames_as = settings.frames_as if settings.frames_as != "auto" else (
            "images" if family == GENERIC else "video")
        self._lock = threading.Lock()
        self._hash: str | None = None

    @classmethod
    def load(cls, settings: VlmSettings) -> VlmCaptioner:
        """Load the model folder (see the module docstring) in eval mode on the settings' device."""
        folder = resolve_model_path(settings.model_path, settings.cache_dir)
        import_torchvision()  # the processors' video transforms import it; CPU torch needs the shim
        from transformers import AutoConfig, AutoModelForImageTextToText, AutoProcessor

        try:
            config = AutoConfig.from_pretrained(folder, local_files_only=True)
        except ValueError as exc:
            raise ValueError(f"{PARAM}: {folder}/config.json is not a model transformers "
                             f"{transformers_version()} knows: {str(exc).splitlines()[0]}") from exc
        family = config.model_type if config.model_type in FAMILIES else GENERIC
        device = resolve_device(settings.device, "stages.caption.params.device")
        try:
            model = AutoModelForImageTextToText.from_pretrained(
                folder, dtype=torch_dtype(settings.dtype, device), attn_implementation=settings.attn_implementation,
                local_files_only=True)
        except ImportError as exc:
            raise ValueError(f"stages.caption.params.attn_implementation={settings.attn_implementation} cannot "
                             f"be used here: {exc}") from exc
        except ValueError as exc:
            if "Unrecognized configuration class" not in str(exc):
                raise
            raise ValueError(f"{PARAM}: model type {config.model_type!r} is not an image-text-to-text model "
                             f"(convert the checkpoint to a transformers image-text-to-text type)") from exc
        model.to(device).eval()
        processor = AutoProcessor.from_pretrained(folder, local_files_only=True)
        tokenizer = processor.tokenizer
        tokenizer.padding_side = "left"
        if tokenizer.padding_side != "left":
            raise ValueError(f"{PARAM}: the tokenizer of {folder} refuses left padding")
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token
        if not getattr(processor, "chat_template", None):
            raise ValueError(f"{PARAM}: the processor of {folder} has no chat template")
        return cls(model, processor, settings, family, device, folder)

    @property
    def name(self) -> str:
        """The model's name: the configured folder's last part and its model type."""
        base = str(self.settings.model_path).rstrip("/").rsplit("/", 1)[-1]
        return f"{base} ({self.model_type})"

    @property
    def weights_hash(self) -> str:
        """Short content hash of the model folder (computed once, on first use)."""
        if self._hash is None:
            self._hash = weights_hash(str(self.folder)) or ""
        return self._hash

    def _messages(self, frames: list[np.ndarray], prompt: str) -> list[dict[str, Any]]:
        if self.frames_as == "video":
            visual = [{"type": "video", "video": np.stack(frames)}]
        else:
            visual = [{"type": "image", "image": f} for f in frames]
        return [{"role": "user", "content": [*visual, {"type": "text", "text": prompt}]}]

    def _kwargs(self, frames: list[list[np.ndarray]], times: list[list[float]]) -> dict[str, Any]:
        """The processor kwargs: left padding and, per family, pixel budgets and frame metadata."""
        s, kwargs = self.settings, {"padding": True, "padding_side": "left"}
        if self.family in ("qwen2_5_vl", "qwen3_vl"):
            per_frame = {"shortest_edge": s.min_pixels, "longest_edge": s.max_pixels}
            kwargs["images_kwargs"] = {"size": per_frame}
            if self.frames_as == "video":
                n = len(frames[0])  # Qwen3-VL budgets the whole video; one batch, one frame count
                size = per_frame if self.family == "qwen2_5_vl" else {k: v * n for k, v in per_frame.items()}
                kwargs["videos_kwargs"] = {"size": size, "do_sample_frames": False, "cap_pixels_per_frame": False,
                                           "video_metadata": [_metadata(t) for t in times]}
        return kwargs

    def prepare(self, items: Sequence[Item]) -> Any:
        """The model inputs of one batch (the processor's ``BatchFeature``), left-padded and checked.
        All items must have the same frame count where the family needs it (``generate`` groups)."""
        frames, times, prompts = [], [], []
        temporal = getattr(getattr(self.processor, "video_processor", None), "temporal_patch_size", 1) or 1
        for item in items:
            clip = [np.ascontiguousarray(f, dtype=np.uint8) for f in item[0]]
            if not clip:
                raise ValueError("an item without frames")
            h, w = clip[0].shape[:2]  # a stream that changes size mid-clip: one video needs one size
            clip = [f if f.shape[:2] == (h, w) else cv2.resize(f, (w, h), interpolation=cv2.INTER_AREA) for f in clip]
            stamps = [float(t) for t in item[2]] if len(item) > 2 else [float(i) for i in range(len(clip))]
            if self.frames_as == "video" and self.family in ("qwen2_5_vl", "qwen3_vl"):
                clip, stamps = _pad_frames(clip, stamps, temporal)
            frames.append(clip)
            times.append(stamps)
            prompts.append(item[1])
        self.processor.tokenizer.padding_side = "left"
        inputs = self.processor.apply_chat_template(
            [self._messages(f, p) for f, p in zip(frames, prompts, strict=True)], add_generation_prompt=True,
            tokenize=True, return_dict=True, return_tensors="pt", processor_kwargs=self._kwargs(frames, times))
        mask = inputs["attention_mask"]
        if bool((mask[:, 1:] < mask[:, :-1]).any()):
            raise RuntimeError(f"the processor of {self.folder} padded on the right; batched generate needs "
                               f"left padding")
        return inputs

    def _forced(self, text: str, prompt_len: int) -> AllowedFn:
        """Generation constrained to ``text`` then EOS in every row (left padding: every row's answer
        starts at ``prompt_len``)."""
        tokenizer = self.processor.tokenizer
        answer = tokenizer.encode(text, add_special_tokens=False) + [tokenizer.eos_token_id]

        def allowed(batch_id: int, input_ids: Any) -> list[int]:
            return [answer[min(len(input_ids) - prompt_len, len(answer) - 1)]]

        return allowed

    def _generate_batch(self, items: Sequence[Item], allowed: AllowedFn | None, extra: dict[str, Any],
                        forced_answer: str | None = None) -> list[str]:
        import torch

        inputs = self.prepare(items).to(self.device)
        if forced_answer is not None:
            allowed = self._forced(forced_answer, inputs["input_ids"].shape[1])
        inputs.update({k: v.to(self.model.dtype) for k, v in inputs.items() if k.startswith("pixel_values")})
        s, tokenizer = self.settings, self.processor.tokenizer
        sampling = ({"do_sample": True, "temperature": s.temperature} if s.temperature > 0 else
                    {"do_sample": False, "temperature": None, "top_p": None, "top_k": None})
        kwargs = {"max_new_tokens": s.max_new_tokens, "pad_token_id": tokenizer.pad_token_id,
                  "prefix_allowed_tokens_fn": allowed, **sampling, **extra}
        with torch.inference_mode():
            out = self.model.generate(**inputs, **kwargs)
        new = out[:, inputs["input_ids"].shape[1]:]
        return [t.strip() for t in tokenizer.batch_decode(new, skip_special_tokens=True)]

    def generate(self, items: Sequence[Item], prefix_allowed_tokens_fn: AllowedFn | None = None,
                 forced_answer: str | None = None, **generate_kwargs: Any) -> list[str]:
        """One answer per item, in order. An item is ``(frames, prompt)`` or ``(frames, prompt,
        times)``: HxWx3 uint8 RGB frames of one clip (one size), the prompt text, and the frames'
        times in seconds (default 0, 1, 2, ...; they set the video clock of the Qwen families).
        ``prefix_allowed_tokens_fn`` (tests force canned answers) and ``generate_kwargs`` (the bench
        fixes the answer length with ``min_new_tokens``) are passed to the model's ``generate``;
        ``forced_answer`` constrains every row to that text (the stage's wiring tests and dry runs:
        the real processor, chat template and ``generate``, a known answer)."""
        if not items:
            return []
        groups: dict[int, list[int]] = {}
        for i, item in enumerate(items):  # LLaVA-OneVision batches one frame count at a time
            key = len(item[0]) if self.family == "llava_onevision" and self.frames_as == "video" else 0
            groups.setdefault(key, []).append(i)
        answers: list[str] = [""] * len(items)
        with self._lock:
            for rows in groups.values():
                texts = self._generate_batch([items[i] for i in rows], prefix_allowed_tokens_fn, generate_kwargs,
                                             forced_answer)
                for i, text in zip(rows, texts, strict=True):
                    answers[i] = text
        return answers
