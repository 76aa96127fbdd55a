"""The contract between the training loop and a video generation model ("backend").

A training **batch** is a dict (``facevid.udfs.train.reader`` builds it; ``collate`` stacks samples):

- ``video``: float tensor ``(B, T, C, H, W)`` in ``[-1, 1]`` (RGB), T frames at the declared stride
- ``first_frame``: float tensor ``(B, C, H, W)`` in ``[-1, 1]``: the clip's first sampled frame (I2V)
- ``caption``: list of B strings
- ``clip_id``: list of B strings; ``index``: long tensor ``(B,)``, the samples' positions in the order

A backend owns its frozen parts (text encoder, VAE, scheduler) and exposes ONE trainable
``torch.nn.Module`` (the denoiser, with LoRA adapters injected when it trains LoRA). The loop may wrap
that module (accelerate's ``prepare``: DDP, mixed precision) and passes the wrapped module back to
``loss``. Checkpoints hold ``trainable_state`` (LoRA weights only when training LoRA); ``save`` writes
the final weights in the backend's own format, which ``load`` of the same backend reads for
generation (``evaluate`` and the registered model).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

MODES = ("t2v", "i2v")


@dataclass(frozen=True)
class GenerationRequest:
    """What to generate: one video per prompt (T2V) or per prompt + first frame (I2V)."""

    prompts: list[str]
    first_frames: Any | None = None  # float tensor (B, C, H, W) in [-1, 1] for i2v, else None
    num_frames: int = 9
    height: int = 64
    width: int = 64
    steps: int = 20
    guidance_scale: float = 6.0
    seed: int = 0


@runtime_checkable
class VideoBackend(Protocol):
    """A trainable text/image-to-video model (see the module docstring)."""

    name: str  # e.g. "tiny" or "cogvideox"
    mode: str  # "t2v" | "i2v"

    def trainable_module(self) -> Any:
        """The one ``torch.nn.Module`` whose parameters train (requires_grad set accordingly)."""

    def trainable_parameters(self, module: Any) -> list[Any]:
        """Parameters to optimise (LoRA: only the adapters) of ``module`` (possibly wrapped)."""

    def loss(self, module: Any, batch: dict[str, Any], generator: Any | None = None) -> Any:
        """The scalar training loss of ``batch`` through ``module`` (the maintained recipe of the
        model: noise, timesteps and target drawn from ``generator`` when given)."""

    def trainable_state(self, module: Any) -> dict[str, Any]:
        """The tensors a checkpoint keeps (CPU copies)."""

    def load_trainable_state(self, module: Any, state: dict[str, Any]) -> None:
        """Put a checkpoint's tensors back into ``module``."""

    def save(self, module: Any, folder: Path) -> dict[str, Any]:
        """Write the final weights into ``folder``; returns facts to log (format, files, sizes)."""

    def generate(self, request: GenerationRequest) -> Any:
        """Videos as a float tensor ``(B, T, C, H, W)`` in ``[0, 1]``."""

    def describe(self) -> dict[str, Any]:
        """Parameters worth logging (architecture, sizes, weights hash)."""
