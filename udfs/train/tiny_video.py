"""``tiny``: a small text/image-to-video diffusion model that really learns on a CPU in minutes.

The embedded default of the finetune project: no weights to download, trained from scratch on the
lake's gold crops at low resolution (e.g. 8 frames of 32x32), so `make demo` and the tests can show a
falling loss, checkpoints, recovery and generation without a GPU. It is the same kind of model as the
big ones, only small: a pixel-space video denoiser (a factorised space-time U-Net: 1x3x3 spatial and
3x1x1 temporal convolutions, FiLM conditioning on the timestep and the text) trained with
v-prediction on diffusers' ``DDPMScheduler`` (cosine schedule) and sampled with ``DDIMScheduler`` with
classifier-free guidance (the text is dropped for ``cfg_dropout`` of the training samples).

Text: a hashed bag of words (lower-cased word and word-bigram ids -> ``EmbeddingBag``), so no
tokenizer files are needed; the captions of the lake are short template sentences. I2V: the first
frame is given to every frame as 3 extra input channels (as CogVideoX-I2V concatenates the image latent).
Weights are a plain state dict (``model.pt``) plus ``config.json``.
"""

from __future__ import annotations

import json
import math
import re
import zlib
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from facevid.udfs.base import validate
from facevid.udfs.train.backend import MODES, GenerationRequest

WORD = re.compile(r"[a-z0-9']+")


@dataclass(frozen=True)
class TinyConfig:
    """Architecture and diffusion settings (saved as ``config.json`` beside the weights)."""

    mode: str = "t2v"
    channels: int = 32  # width of the first level; the second is twice this
    text_buckets: int = 4096  # hashed word / bigram ids
    text_dim: int = 64
    train_timesteps: int = 1000
    beta_schedule: str = "squaredcos_cap_v2"
    cfg_dropout: float = 0.1  # share of training captions replaced by the empty caption

    def __post_init__(self) -> None:
        validate("finetune.tiny", [
            (self.mode in MODES, f"mode must be one of {MODES}, got {self.mode!r}"),
            (self.channels >= 8 and self.channels % 8 == 0, f"channels must be a multiple of 8, got {self.channels}"),
            (self.text_buckets >= 16, "text_buckets must be >= 16"),
            (0 <= self.cfg_dropout < 1, "cfg_dropout must be in [0, 1)"),
        ])


def text_ids(caption: str, buckets: int) -> list[int]:
    """Hashed ids of the caption's words and word bigrams (0 is reserved for the empty caption)."""
    words = WORD.findall(caption.lower())
    grams = words + [f"{a} {b}" for a, b in zip(words, words[1:], strict=False)]
    return [1 + zlib.crc32(g.encode()) % (buckets - 1) for g in grams] or [0]


class TextEncoder(nn.Module):
    def __init__(self, buckets: int, dim: int) -> None:
        super().__init__()
        self.buckets = buckets
        self.bag = nn.EmbeddingBag(buckets, dim, mode="mean")

    def forward(self, captions: list[str]) -> torch.Tensor:
        ids = [text_ids(c, self.buckets) for c in captions]
        flat = torch.tensor([i for row in ids for i in row], dtype=torch.long, device=self.bag.weight.device)
        offsets = torch.tensor([0, *torch.tensor([len(r) for r in ids]).cumsum(0)[:-1].tolist()],
                               dtype=torch.long, device=flat.device)
        return self.bag(flat, offsets)


def timestep_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    args = t.float()[:, None] * freqs[None]
    return torch.cat([args.sin(), args.cos()], dim=1)


class Block(nn.Module):
    """Residual block: GroupNorm, SiLU, spatial 1x3x3 then temporal 3x1x1 convolution, FiLM from ``cond``."""

    def __init__(self, cin: int, cout: int, cond: int) -> None:
        super().__init__()
        self.norm1 = nn.GroupNorm(8, cin)
        self.spatial = nn.Conv3d(cin, cout, (1, 3, 3), padding=(0, 1, 1))
        self.norm2 = nn.GroupNorm(8, cout)
        self.temporal = nn.Conv3d(cout, cout, (3, 1, 1), padding=(1, 0, 0))
        self.film = nn.Linear(cond, 2 * cout)
        self.skip = nn.Conv3d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        h = self.spatial(F.silu(self.norm1(x)))
        scale, shift = self.film(cond)[:, :, None, None, None].chunk(2, dim=1)
        h = self.norm2(h) * (1 + scale) + shift
        h = self.temporal(F.silu(h))
        return h + self.skip(x)


class TinyVideoDenoiser(nn.Module):
    """Predicts v for a noisy clip ``(B, C, T, H, W)`` given timesteps and text (and the first frame)."""

    def __init__(self, config: TinyConfig) -> None:
        super().__init__()
        self.config = config
        c, cond = config.channels, 4 * config.channels
        self.text = TextEncoder(config.text_buckets, config.text_dim)
        self.cond = nn.Sequential(nn.Linear(c + config.text_dim, cond), nn.SiLU(), nn.Linear(cond, cond))
        cin = 3 + (3 if config.mode == "i2v" else 0)
        self.inp = nn.Conv3d(cin, c, (1, 3, 3), padding=(0, 1, 1))
        self.down1, self.down2 = Block(c, c, cond), Block(2 * c, 2 * c, cond)
        self.pool = nn.Conv3d(c, 2 * c, (1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1))
        self.mid = Block(2 * c, 2 * c, cond)
        self.up2 = Block(4 * c, 2 * c, cond)
        self.unpool = nn.Conv3d(2 * c, c, (1, 3, 3), padding=(0, 1, 1))
        self.up1 = Block(2 * c, c, cond)
        self.out = nn.Sequential(nn.GroupNorm(8, c), nn.SiLU(), nn.Conv3d(c, 3, (1, 3, 3), padding=(0, 1, 1)))
        nn.init.zeros_(self.out[-1].weight)
        nn.init.zeros_(self.out[-1].bias)

    def forward(self, x: torch.Tensor, t: torch.Tensor, captions: list[str],
                first: torch.Tensor | None = None) -> torch.Tensor:
        """``x``: (B, 3, T, H, W); ``first``: (B, 3, H, W) for i2v; H and W even."""
        cond = self.cond(torch.cat([timestep_embedding(t, self.config.channels), self.text(captions)], dim=1))
        if self.config.mode == "i2v":
            if first is None:
                raise ValueError("an i2v model needs the first frame")
            x = torch.cat([x, first[:, :, None].expand(-1, -1, x.shape[2], -1, -1)], dim=1)
        h1 = self.down1(self.inp(x), cond)
        h2 = self.down2(self.pool(h1), cond)
        h = self.up2(torch.cat([self.mid(h2, cond), h2], dim=1), cond)
        h = self.unpool(F.interpolate(h, size=h1.shape[2:], mode="nearest"))
        return self.out(self.up1(torch.cat([h, h1], dim=1), cond))


def _schedulers(config: TinyConfig) -> tuple[Any, Any]:
    from facevid.udfs.models.torch_compat import import_torchvision

    import_torchvision()  # diffusers imports torchvision when it is installed
    from diffusers import DDIMScheduler, DDPMScheduler

    kw = {"num_train_timesteps": config.train_timesteps, "beta_schedule": config.beta_schedule,
          "prediction_type": "v_prediction", "clip_sample": False}
    return DDPMScheduler(**kw), DDIMScheduler(**kw, timestep_spacing="trailing", set_alpha_to_one=True)


class TinyBackend:
    """The ``tiny`` VideoBackend (``facevid.udfs.train.backend``): one module, trained in full."""

    name = "tiny"

    def __init__(self, config: TinyConfig, device: str = "cpu", seed: int = 0) -> None:
        self.config, self.mode, self.device = config, config.mode, torch.device(device)
        torch.manual_seed(seed)
        self.model = TinyVideoDenoiser(config).to(self.device)
        self.train_scheduler, self.sample_scheduler = _schedulers(config)
        alphas = self.train_scheduler.alphas_cumprod
        self._alphas = alphas.to(self.device)

    @classmethod
    def load(cls, folder: str | Path, device: str = "cpu") -> TinyBackend:
        """A backend from a folder ``save`` wrote (``config.json`` + ``model.pt``)."""
        folder = Path(folder)
        if not (folder / "config.json").is_file() or not (folder / "model.pt").is_file():
            raise FileNotFoundError(f"{folder} holds no tiny model (config.json and model.pt)")
        backend = cls(TinyConfig(**json.loads((folder / "config.json").read_text())), device)
        backend.model.load_state_dict(torch.load(folder / "model.pt", map_location=backend.device, weights_only=True))
        return backend

    def trainable_module(self) -> nn.Module:
        return self.model

    def trainable_parameters(self, module: nn.Module) -> list[nn.Parameter]:
        return [p for p in module.parameters() if p.requires_grad]

    def loss(self, module: nn.Module, batch: dict[str, Any], generator: torch.Generator | None = None) -> torch.Tensor:
        """v-prediction MSE at uniformly drawn timesteps (captions dropped for classifier-free guidance)."""
        x0 = batch["video"].to(self.device).permute(0, 2, 1, 3, 4)  # (B, C, T, H, W)
        b = x0.shape[0]
        gen = generator
        noise = torch.randn(x0.shape, generator=gen, device="cpu").to(self.device)
        t = torch.randint(0, self.config.train_timesteps, (b,), generator=gen, device="cpu").to(self.device)
        drop = torch.rand(b, generator=gen, device="cpu") < self.config.cfg_dropout
        captions = ["" if d else c for c, d in zip(batch["caption"], drop.tolist(), strict=True)]
        noisy = self.train_scheduler.add_noise(x0, noise, t)
        target = self.train_scheduler.get_velocity(x0, noise, t)
        first = batch["first_frame"].to(self.device) if self.mode == "i2v" else None
        pred = module(noisy, t, captions, first)
        return F.mse_loss(pred.float(), target.float())

    def trainable_state(self, module: nn.Module) -> dict[str, Any]:
        return {k: v.detach().cpu().clone() for k, v in _unwrap(module).state_dict().items()}

    def load_trainable_state(self, module: nn.Module, state: dict[str, Any]) -> None:
        _unwrap(module).load_state_dict(state)

    def save(self, module: nn.Module, folder: Path) -> dict[str, Any]:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "config.json").write_text(json.dumps(asdict(self.config), indent=1))
        torch.save(self.trainable_state(module), folder / "model.pt")
        return {"format": "tiny", "files": ["config.json", "model.pt"],
                "bytes": (folder / "model.pt").stat().st_size}

    @torch.no_grad()
    def generate(self, request: GenerationRequest) -> torch.Tensor:
        """DDIM sampling with classifier-free guidance; returns (B, T, C, H, W) in [0, 1]."""
        self.model.eval()
        b = len(request.prompts)
        gen = torch.Generator().manual_seed(request.seed)
        x = torch.randn((b, 3, request.num_frames, request.height, request.width), generator=gen).to(self.device)
        first = None
        if self.mode == "i2v":
            if request.first_frames is None:
                raise ValueError("i2v generation needs first_frames")
            first = F.interpolate(request.first_frames.float().to(self.device), size=(request.height, request.width),
                                  mode="bilinear", align_corners=False)
        sched = self.sample_scheduler
        sched.set_timesteps(request.steps)
        guided = request.guidance_scale != 1.0
        for t in sched.timesteps:
            ts = torch.full((b,), int(t), device=self.device)
            v = self.model(x, ts, list(request.prompts), first)
            if guided:
                v_empty = self.model(x, ts, [""] * b, first)
                v = v_empty + request.guidance_scale * (v - v_empty)
            x = sched.step(v, t, x).prev_sample
        self.model.train()
        return ((x.clamp(-1, 1) + 1) / 2).permute(0, 2, 1, 3, 4).cpu()

    def describe(self) -> dict[str, Any]:
        params = sum(p.numel() for p in self.model.parameters())
        return {"backend": self.name, "mode": self.mode, "parameters": params, **asdict(self.config)}


def _unwrap(module: nn.Module) -> nn.Module:
    """The model inside a DDP/accelerate wrapper (accelerate's own unwrapping, as the cogvideox backend)."""
    from accelerate.utils import extract_model_from_parallel

    return extract_model_from_parallel(module)
