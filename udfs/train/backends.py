"""Backends by name: build one to train, or load a trained one to generate.

A trained model is a folder: the backend's own files (``save``) plus ``backend.json`` naming the
backend and the settings it was built with, so ``load_trained(folder)`` needs nothing else (the
evaluate project and the registered MLflow model use it).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from facevid.udfs.train.tiny_video import TinyBackend, TinyConfig

BACKENDS = ("tiny", "cogvideox")
META = "backend.json"


def build_backend(name: str, settings: dict[str, Any], device: str, seed: int) -> Any:
    """A backend ready to train. ``settings``: the project's parameters (mode, channels, model_path,
    training, lora_rank, lora_alpha, frames, size, ...); each backend takes what it knows."""
    if name == "tiny":
        return TinyBackend(TinyConfig(mode=settings["mode"], channels=int(settings.get("channels", 32))),
                           device=device, seed=seed)
    if name == "cogvideox":
        from facevid.udfs.train.cogvideox import CogVideoXBackend

        return CogVideoXBackend(cogvideox_settings(settings, device))
    raise ValueError(f"finetune.backend must be one of {BACKENDS}, got {name!r}")


def cogvideox_settings(params: dict[str, Any], device: str) -> Any:
    """The project's parameters as ``CogVideoXSettings`` (square frames of ``size``)."""
    from facevid.udfs.train.cogvideox import CogVideoXSettings

    return CogVideoXSettings(model_path=params.get("model_path") or None, mode=params["mode"],
                             training=params.get("training", "lora"), lora_rank=int(params.get("lora_rank", 64)),
                             lora_alpha=float(params.get("lora_alpha", 64.0)), device=device,
                             num_frames=int(params["frames"]), height=int(params["size"]), width=int(params["size"]))


def save_trained(backend: Any, module: Any, folder: Path, settings: dict[str, Any]) -> dict[str, Any]:
    """``backend.save`` plus ``backend.json``; returns what ``save`` reported."""
    facts = backend.save(module, folder)
    (folder / META).write_text(json.dumps({"backend": backend.name, "mode": backend.mode, "settings": settings,
                                           "facts": facts}, indent=1, default=str))
    return facts


def load_trained(folder: str | Path, device: str = "cpu") -> Any:
    """A backend for generation from a folder ``save_trained`` wrote."""
    folder = Path(folder)
    if not (folder / META).is_file():
        raise FileNotFoundError(f"{folder} is not a trained model folder (no {META})")
    meta = json.loads((folder / META).read_text())
    if meta["backend"] == "tiny":
        return TinyBackend.load(folder, device)
    if meta["backend"] == "cogvideox":
        from facevid.udfs.train.cogvideox import CogVideoXBackend

        return CogVideoXBackend.load(cogvideox_settings(meta["settings"], device), folder, param="evaluate.model_uri")
    raise ValueError(f"{folder}/{META}: unknown backend {meta['backend']!r}")
