"""Model runtime for batch stages: one model per executor process, on the device the stage may use.

``shared_model(key, factory)`` builds a model once per process and hands the same object to every
task thread (keyed by e.g. ``(op, weights path, weights hash, device)``); batch ops serialise
their calls with the returned lock when a model is not thread-safe. ``pick_device`` turns the
stage's declared GPU share into a device: CUDA when the share is > 0 and a CUDA device is
visible, else the CPU. (Row ops keep ``facevid.udfs.base.cached_model``: one model per worker
thread, for OpenCV nets that are not thread-safe; a batch op's model is shared by the process.)
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

_models: dict[tuple, tuple[Any, threading.Lock]] = {}
_building: dict[tuple, threading.Lock] = {}
_lock = threading.Lock()


def shared_model(key: tuple, factory: Callable[[], Any]) -> tuple[Any, threading.Lock]:
    """``(model, lock)`` for ``key``, created by ``factory`` on first use in this process. Task
    threads asking for the same key at once wait for the one build (a per-key lock: loading can
    take seconds, and two loads at once would waste memory and interleave RNG state)."""
    with _lock:
        entry = _models.get(key)
        if entry is not None:
            return entry
        building = _building.setdefault(key, threading.Lock())
    with building:
        with _lock:
            entry = _models.get(key)
        if entry is None:
            entry = (factory(), threading.Lock())
            with _lock:
                _models[key] = entry
        return entry


def loaded_models() -> list[tuple]:
    """Keys of the models this process holds (tests and the bench inspect it)."""
    with _lock:
        return list(_models)


def cuda_available() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


def pick_device(gpu_share: float, requested: str = "auto") -> str:
    """``cuda`` when the stage declares a GPU share (or asks for cuda) and one is visible, else ``cpu``."""
    if requested == "cpu":
        return "cpu"
    if (requested == "cuda" or gpu_share > 0) and cuda_available():
        return "cuda"
    if requested == "cuda":
        raise RuntimeError("device cuda was requested but no CUDA device is visible")
    return "cpu"


def resolve_device(requested: str, param: str = "device") -> str:
    """A declared device for torch: ``auto`` -> ``cuda`` when visible, else ``cpu``; ``cpu``, ``cuda`` or
    ``cuda:N`` as asked. A CUDA device without a visible GPU is a ValueError naming ``param``."""
    if requested == "auto":
        return "cuda" if cuda_available() else "cpu"
    if requested != "cpu" and not requested.startswith("cuda"):
        raise ValueError(f"{param} must be auto, cpu, cuda or cuda:N, got {requested!r}")
    if requested.startswith("cuda") and not cuda_available():
        raise ValueError(f"{param} is {requested} but no CUDA device is visible")
    return requested


def weights_hash(path: str | None, chunk: int = 1 << 20) -> str | None:
    """Short SHA-256 of a weights file (or of a folder's files: their paths under it and contents;
    hidden files and folders such as a hub download's ``.cache/`` are left out, they change with
    every copy), recorded with what the model produced."""
    if not path:
        return None
    p = Path(path)
    files = sorted(f for f in p.rglob("*") if f.is_file() and not any(
        part.startswith(".") for part in f.relative_to(p).parts)) if p.is_dir() else [p]
    digest = hashlib.sha256()
    for f in files:
        digest.update((f.relative_to(p).as_posix() if p.is_dir() else f.name).encode())
        with open(f, "rb") as fh:
            while block := fh.read(chunk):
                digest.update(block)
    return digest.hexdigest()[:16]
