"""The ``cogvideox`` backend: CogVideoX T2V / I2V fine-tuning (LoRA or full) through diffusers.

``CogVideoXBackend(settings)`` loads a diffusers pipeline folder (``model_index.json``: CogVideoX-2b/5b
for ``t2v``, CogVideoX-5b-I2V for ``i2v``; local, ``dbfs:/``, ``/Volumes/...`` or ``s3://``, see
``facevid.udfs.models.weights``) onto one device in one dtype, freezes the VAE and the T5 encoder and
makes the transformer the trainable module: peft LoRA adapters (``LoraConfig`` +
``transformer.add_adapter``, as diffusers' recipe) or the whole transformer. ``loss`` is the recipe's
objective (``cogvideox_loss``); ``save`` writes diffusers formats (LoRA: the pipeline class's
``save_lora_weights``, loadable by ``pipe.load_lora_weights``; full: the transformer's
``save_pretrained``); ``CogVideoXBackend.load(settings, weights)`` reads them back for generation.

Shapes are fixed by the settings: ``num_frames`` must be ``4k + 1`` (the VAE compresses time 4x
after the first frame: 49 frames -> 13 latent frames), ``height``/``width`` multiples of 16; a
settings object that breaks this, or a batch of another shape, is a ``ValueError`` before any step.
"""

from __future__ import annotations

import importlib.util
import json
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from facevid.udfs.annotate.vlm import torch_dtype
from facevid.udfs.base import validate
from facevid.udfs.models.runtime import resolve_device, weights_hash
from facevid.udfs.models.torch_compat import import_torchvision
from facevid.udfs.models.weights import missing, resolve_folder
from facevid.udfs.train.backend import MODES, GenerationRequest
from facevid.udfs.train.cogvideox_loss import diffusion_loss, encode_video, image_latents

PARAM = "finetune.model_path"
WHAT = "a diffusers CogVideoX pipeline folder with model_index.json (CogVideoX-2b/5b for t2v, CogVideoX-5b-I2V for i2v)"
SAVED = "a folder written by CogVideoXBackend.save (pytorch_lora_weights.safetensors or transformer/)"
PIPELINES = {"t2v": "CogVideoXPipeline", "i2v": "CogVideoXImageToVideoPipeline"}
LORA_FILE = "pytorch_lora_weights.safetensors"
FACTS_FILE = "cogvideox.json"
TRAINING = ("lora", "full")
SAMPLERS = ("dpm", "ddim")
DTYPES = ("auto", "float32", "bfloat16", "float16")
TEMPORAL, SPATIAL = 4, 16  # CogVideoX VAE time compression; VAE 8x space x patch 2


@dataclass
class CogVideoXSettings:
    """What the backend loads and how it trains (``finetune`` parameters of the MLflow project)."""

    model_path: str | None = None  # diffusers pipeline folder: local, dbfs:/, /Volumes/... or s3://
    mode: str = "t2v"  # t2v | i2v
    training: str = "lora"  # lora | full
    lora_rank: int = 128  # the recipe's defaults (--rank 128, --lora_alpha 128)
    lora_alpha: float = 128.0
    lora_targets: tuple[str, ...] = ("to_k", "to_q", "to_v", "to_out.0")
    dtype: str = "auto"  # auto: bfloat16 on CUDA, float32 on the CPU
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    max_text_seq_length: int = 226  # T5 tokens; must equal the transformer's max_text_seq_length
    gradient_checkpointing: bool = True
    num_frames: int = 49  # 4k + 1
    height: int = 480
    width: int = 720
    noised_image_dropout: float = 0.05  # i2v: probability of a zeroed image condition (recipe)
    sampler: str = "dpm"  # generation scheduler: dpm (the recipe's validation) | ddim (the folder's)
    use_dynamic_cfg: bool = False
    vae_tiling: bool = False  # tile VAE encode/decode (less memory, slower)
    cache_dir: str | None = None  # where s3:// folders are downloaded

    def __post_init__(self) -> None:
        self.lora_targets = tuple(self.lora_targets)
        validate("finetune", [
            (self.mode in MODES, f"mode must be one of {MODES}, got {self.mode!r}"),
            (self.training in TRAINING, f"training must be one of {TRAINING}, got {self.training!r}"),
            (self.lora_rank >= 1, f"lora_rank must be >= 1, got {self.lora_rank}"),
            (self.lora_alpha > 0, f"lora_alpha must be > 0, got {self.lora_alpha}"),
            (len(self.lora_targets) > 0, "lora_targets must name at least one module"),
            (self.dtype in DTYPES, f"dtype must be one of {DTYPES}, got {self.dtype!r}"),
            (self.device in ("auto", "cpu") or self.device.startswith("cuda"),
             f"device must be auto, cpu or cuda[:N], got {self.device!r}"),
            (self.max_text_seq_length >= 1, f"max_text_seq_length must be >= 1, got {self.max_text_seq_length}"),
            (self.num_frames >= 1 and (self.num_frames - 1) % TEMPORAL == 0,
             f"num_frames must be 4k+1 (CogVideoX's VAE keeps the first frame and compresses the rest 4x:"
             f" 9, 13, ..., 49), got {self.num_frames}"),
            (self.height > 0 and self.height % SPATIAL == 0, f"height must be a multiple of 16, got {self.height}"),
            (self.width > 0 and self.width % SPATIAL == 0, f"width must be a multiple of 16, got {self.width}"),
            (0.0 <= self.noised_image_dropout < 1.0,
             f"noised_image_dropout must be in [0, 1), got {self.noised_image_dropout}"),
            (self.sampler in SAMPLERS, f"sampler must be one of {SAMPLERS}, got {self.sampler!r}"),
        ])


def _diffusers() -> Any:
    if importlib.util.find_spec("torchvision") is not None:  # the ml extra alone has none: nothing to fix
        import_torchvision()  # before diffusers/peft/transformers (CPU torch next to a CUDA torchvision)
    import diffusers

    return diffusers


def unwrap(module: Any) -> Any:
    """The transformer inside an accelerate/DDP/compile wrapper."""
    from accelerate.utils import extract_model_from_parallel

    return extract_model_from_parallel(module)


def load_pipeline(settings: CogVideoXSettings, device: str, dtype: Any) -> tuple[Any, Path]:
    """The settings' pipeline folder as a diffusers pipeline of the mode's class on ``device``, and
    the local folder it came from."""
    folder = resolve_folder(settings.model_path, PARAM, WHAT, marker="model_index.json", cache_dir=settings.cache_dir)
    expected = PIPELINES[settings.mode]
    try:
        found = json.loads((folder / "model_index.json").read_text()).get("_class_name")
    except (OSError, ValueError) as exc:
        raise ValueError(f"{PARAM}: {folder}/model_index.json is not readable JSON ({exc})") from exc
    if found != expected:
        raise ValueError(f"{PARAM}: {folder} holds a {found}, mode {settings.mode} needs a {expected} ({WHAT})")
    try:
        pipe = getattr(_diffusers(), expected).from_pretrained(str(folder), dtype=dtype)
    except Exception as exc:  # a broken or incomplete folder: one error naming the key
        raise ValueError(f"{PARAM}: {folder} does not load as {expected}: {type(exc).__name__}: {exc}") from exc
    return pipe.to(device), folder


class CogVideoXBackend:
    """A ``VideoBackend`` over a CogVideoX pipeline (see the module docstring). ``pipe``: an already
    built pipeline (benchmarks); otherwise ``settings.model_path`` is loaded. ``train=False`` freezes
    everything (generation only, see ``load``)."""

    name = "cogvideox"

    def __init__(self, settings: CogVideoXSettings, pipe: Any | None = None, train: bool = True) -> None:
        diffusers = _diffusers()
        self.settings, self.mode = settings, settings.mode
        self.device = resolve_device(settings.device, "finetune.device")
        self.dtype = torch_dtype(settings.dtype, self.device)
        if pipe is None:
            pipe, self.folder = load_pipeline(settings, self.device, self.dtype)
        else:
            pipe, self.folder = pipe.to(self.device, self.dtype), None
        self.pipe = pipe
        self.pipe.set_progress_bar_config(disable=True)
        self._check_shapes()
        config = self.pipe.scheduler.config
        self.noise_scheduler = diffusers.CogVideoXDPMScheduler.from_config(config)  # the recipe's (L1069)
        sampler = diffusers.CogVideoXDPMScheduler if settings.sampler == "dpm" else diffusers.CogVideoXDDIMScheduler
        self.pipe.scheduler = sampler.from_config(config)
        self.pipe.vae.enable_slicing()  # one video at a time through the VAE, as the recipe encodes
        if settings.vae_tiling:
            self.pipe.vae.enable_tiling()
        for part in (self.pipe.vae, self.pipe.text_encoder, self.pipe.transformer):
            if part is not None:
                part.requires_grad_(False)
        if train:
            self._prepare_training()

    @property
    def transformer(self) -> Any:
        return self.pipe.transformer

    def _check_shapes(self) -> None:
        s, cfg, pipe = self.settings, self.transformer.config, self.pipe
        latent_frames = (s.num_frames - 1) // pipe.vae_scale_factor_temporal + 1
        validate("finetune", [
            ((s.num_frames - 1) % pipe.vae_scale_factor_temporal == 0,
             f"num_frames {s.num_frames} is not {pipe.vae_scale_factor_temporal}k+1 for this VAE"),
            (cfg.patch_size_t is None or latent_frames % cfg.patch_size_t == 0,
             f"num_frames {s.num_frames} gives {latent_frames} latent frames, not a multiple of the transformer's"
             f" patch_size_t {cfg.patch_size_t}"),
            (s.max_text_seq_length == cfg.max_text_seq_length,
             f"max_text_seq_length {s.max_text_seq_length} differs from the transformer's {cfg.max_text_seq_length}"),
            ((cfg.in_channels == 2 * cfg.out_channels) == (s.mode == "i2v"),
             f"mode {s.mode} does not match the transformer (in_channels {cfg.in_channels},"
             f" out_channels {cfg.out_channels})"),
            (not cfg.use_learned_positional_embeddings
             or (s.height, s.width) == (cfg.sample_height * pipe.vae_scale_factor_spatial,
                                        cfg.sample_width * pipe.vae_scale_factor_spatial),
             f"height x width {s.height}x{s.width} must be the transformer's sample size"
             f" {cfg.sample_height * pipe.vae_scale_factor_spatial}x{cfg.sample_width * pipe.vae_scale_factor_spatial}"
             " (it has learned positional embeddings)"),
        ])

    def _prepare_training(self) -> None:
        import torch

        s, transformer = self.settings, self.transformer
        if s.gradient_checkpointing:
            transformer.enable_gradient_checkpointing()
        if s.training == "full":
            transformer.requires_grad_(True)
        else:
            from peft import LoraConfig

            transformer.add_adapter(LoraConfig(r=s.lora_rank, lora_alpha=s.lora_alpha, init_lora_weights=True,
                                               target_modules=list(s.lora_targets)))
            if self.dtype == torch.float16:  # the recipe upcasts LoRA params under fp16 only
                from diffusers.training_utils import cast_training_params

                cast_training_params([transformer], dtype=torch.float32)
        transformer.train()

    # --- the VideoBackend contract ---------------------------------------------------------------

    def trainable_module(self) -> Any:
        return self.transformer

    def trainable_parameters(self, module: Any) -> list[Any]:
        return [p for p in module.parameters() if p.requires_grad]

    def encode_prompts(self, captions: list[str]) -> Any:
        """T5 embeddings ``(B, max_text_seq_length, d_model)`` of ``captions`` (frozen, no grad)."""
        import torch

        with torch.no_grad():
            return self.pipe.encode_prompt(list(captions), do_classifier_free_guidance=False,
                                           max_sequence_length=self.settings.max_text_seq_length,
                                           device=self.device, dtype=self.dtype)[0]

    def _check_batch(self, video: Any) -> None:
        s = self.settings
        expected = (s.num_frames, 3, s.height, s.width)
        if video.ndim != 5 or tuple(video.shape[1:]) != expected:
            raise ValueError(f"cogvideox: batch video must be (B, {', '.join(map(str, expected))}) "
                             f"(finetune.num_frames/height/width), got {tuple(video.shape)}")

    def loss(self, module: Any, batch: dict[str, Any], generator: Any | None = None) -> Any:
        """The recipe's loss (``cogvideox_loss``). ``batch['prompt_embeds']`` ``(B, L, D)``, when
        present, replaces the T5 encoding of ``batch['caption']`` (precomputed embeddings)."""
        self._check_batch(batch["video"])
        video = batch["video"].to(self.device, self.dtype)
        latents = encode_video(self.pipe.vae, video, generator)
        embeds = batch.get("prompt_embeds")
        embeds = self.encode_prompts(batch["caption"]) if embeds is None else embeds.to(self.device, self.dtype)
        condition = None
        if self.mode == "i2v":
            first = batch.get("first_frame")
            first = video[:, 0] if first is None else first.to(self.device, self.dtype)
            condition = image_latents(self.pipe.vae, first, latents.shape[1], self.settings.noised_image_dropout,
                                      generator)
        return diffusion_loss(module, self.pipe, self.noise_scheduler, latents, embeds, self.settings.height,
                              self.settings.width, condition, generator)

    def trainable_state(self, module: Any) -> dict[str, Any]:
        model = unwrap(module)
        if self.settings.training == "lora":
            from peft.utils import get_peft_model_state_dict

            state = get_peft_model_state_dict(model)
        else:
            state = model.state_dict()
        return {k: v.detach().to("cpu", copy=True) for k, v in state.items()}

    def load_trainable_state(self, module: Any, state: dict[str, Any]) -> None:
        model = unwrap(module)
        if self.settings.training == "full":
            model.load_state_dict(state, strict=True)
            return
        from peft.utils import get_peft_model_state_dict, set_peft_model_state_dict

        expected = set(get_peft_model_state_dict(model))
        if set(state) != expected:
            raise ValueError(f"cogvideox: checkpoint LoRA keys differ from the model's: "
                             f"{sorted(set(state) ^ expected)[:5]} (lora_rank/lora_targets changed?)")
        set_peft_model_state_dict(model, state, adapter_name="default")

    def save(self, module: Any, folder: Path) -> dict[str, Any]:
        """LoRA: ``pytorch_lora_weights.safetensors`` (diffusers format, with the adapter's rank and
        alpha as metadata); full: ``transformer/`` (``save_pretrained``). Plus ``cogvideox.json``."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        model = unwrap(module)
        if self.settings.training == "lora":
            from peft.utils import get_peft_model_state_dict

            getattr(_diffusers(), PIPELINES[self.mode]).save_lora_weights(
                folder, transformer_lora_layers=get_peft_model_state_dict(model),
                transformer_lora_adapter_metadata=model.peft_config["default"].to_dict())
            fmt = "diffusers-lora"
        else:
            model.save_pretrained(folder / "transformer")
            fmt = "diffusers-transformer"
        facts = {"format": fmt, "mode": self.mode, "training": self.settings.training,
                 "base_model": self.settings.model_path}
        (folder / FACTS_FILE).write_text(json.dumps(facts, indent=2))
        files = sorted(p for p in folder.rglob("*") if p.is_file())
        return {**facts, "files": [p.relative_to(folder).as_posix() for p in files],
                "bytes": sum(p.stat().st_size for p in files)}

    @classmethod
    def load(cls, settings: CogVideoXSettings, weights: str | Path | None = None,
             param: str = "evaluate.weights") -> CogVideoXBackend:
        """A generation-only backend: the base pipeline of ``settings`` with the result of ``save``
        in ``weights`` applied (None: the base model). Without ``settings.model_path`` the base model
        recorded in the folder's ``cogvideox.json`` is loaded. ``param`` names the key in errors."""
        if weights is None:
            return cls(settings, train=False)
        folder = resolve_folder(str(weights), param, SAVED, cache_dir=settings.cache_dir)
        facts = json.loads((folder / FACTS_FILE).read_text()) if (folder / FACTS_FILE).is_file() else {}
        if facts.get("mode", settings.mode) != settings.mode:
            raise ValueError(f"{param}: {weights} was trained for mode {facts['mode']}, not {settings.mode}")
        if settings.model_path is None:
            settings = replace(settings, model_path=facts.get("base_model"))
        backend = cls(settings, train=False)
        if (folder / LORA_FILE).is_file():
            backend.pipe.load_lora_weights(str(folder))
        elif (folder / "transformer" / "config.json").is_file():
            transformer = _diffusers().CogVideoXTransformer3DModel.from_pretrained(
                str(folder / "transformer"), dtype=backend.dtype)
            backend.pipe.transformer = transformer.to(backend.device).requires_grad_(False)
        else:
            raise missing(param, f"{weights} holds neither {LORA_FILE} nor transformer/config.json", SAVED)
        backend.transformer.eval()
        return backend

    def generate(self, request: GenerationRequest) -> Any:
        """``(B, T, C, H, W)`` float in ``[0, 1]`` on the CPU, from a seeded CPU generator."""
        import torch

        if (request.num_frames - 1) % self.pipe.vae_scale_factor_temporal:
            raise ValueError(f"cogvideox: num_frames must be 4k+1, got {request.num_frames}")
        kwargs: dict[str, Any] = dict(
            prompt=list(request.prompts), num_frames=request.num_frames, height=request.height,
            width=request.width, num_inference_steps=request.steps, guidance_scale=request.guidance_scale,
            use_dynamic_cfg=self.settings.use_dynamic_cfg, generator=torch.Generator().manual_seed(request.seed),
            output_type="pt", max_sequence_length=self.settings.max_text_seq_length)
        if self.mode == "i2v":
            if request.first_frames is None or len(request.first_frames) != len(request.prompts):
                raise ValueError("cogvideox: i2v generation needs one first frame per prompt")
            kwargs["image"] = ((torch.as_tensor(request.first_frames).float() + 1) / 2).clamp(0, 1)
        was_training = self.transformer.training
        self.transformer.eval()
        try:
            frames = self.pipe(**kwargs).frames
        finally:
            self.transformer.train(was_training)
        return frames.float().cpu().clamp(0, 1)

    def describe(self) -> dict[str, Any]:
        """Settings, sizes and the transformer folder's weights hash (only the transformer is
        hashed: it is what distinguishes checkpoints; hashing T5 would read ~9 GB)."""
        s, cfg, transformer = self.settings, self.transformer.config, self.transformer
        folder = self.folder / "transformer" if self.folder is not None else None
        latent_frames = (s.num_frames - 1) // self.pipe.vae_scale_factor_temporal + 1
        scale = self.pipe.vae_scale_factor_spatial
        return {
            **{k: v for k, v in asdict(s).items() if k != "cache_dir"},
            "backend": self.name, "pipeline": type(self.pipe).__name__, "device": self.device,
            "dtype": str(self.dtype).removeprefix("torch."), "lora_targets": list(s.lora_targets),
            "layers": cfg.num_layers, "heads": cfg.num_attention_heads, "head_dim": cfg.attention_head_dim,
            "rotary": bool(cfg.use_rotary_positional_embeddings),
            "latent_shape": [latent_frames, cfg.out_channels, s.height // scale, s.width // scale],
            "transformer_params": sum(p.numel() for p in transformer.parameters()),
            "trainable_params": sum(p.numel() for p in transformer.parameters() if p.requires_grad),
            "weights_hash": weights_hash(str(folder)) if folder is not None and folder.is_dir() else None,
        }
