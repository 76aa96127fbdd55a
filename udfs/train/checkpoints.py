"""Checkpoints of a training run: what a resume needs, in one folder per step.

A checkpoint folder ``step-0000150/`` holds ``trainable.pt`` (the backend's trainable tensors: LoRA
weights only for a LoRA run), ``optimizer.pt``, ``rng.pt`` (the noise generator's state) and
``state.json`` (step, samples consumed, learning rate, recoveries, recent losses). A checkpoint is only
written after healthy steps (the loop rolls back instead of saving across an anomaly), so the newest
one is the last stable one. Folders are written under a temporary name and renamed into place, so a
process killed mid-write never leaves a half checkpoint that looks complete.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

STATE = "state.json"
FILES = ("trainable.pt", "optimizer.pt", "rng.pt", STATE)


@dataclass
class LoopState:
    """Where a run stands (saved in ``state.json``)."""

    step: int = 0
    samples_seen: int = 0  # samples this rank consumed: the reader resumes from here
    lr: float = 1e-3  # the base learning rate now (recoveries reduce it)
    recoveries: int = 0
    losses: list[float] = field(default_factory=list)  # the recent healthy losses (spike rule window)
    first_losses: list[float] = field(default_factory=list)  # the run's first 20 healthy losses (did it learn?)

    @classmethod
    def from_json(cls, text: str) -> LoopState:
        return cls(**json.loads(text))


def step_name(step: int) -> str:
    return f"step-{step:07d}"


def write_checkpoint(root: Path, backend: Any, module: Any, optimizer: Any, generator: torch.Generator,
                     state: LoopState) -> Path:
    """Write ``root/step-N/`` atomically; returns its path."""
    final = root / step_name(state.step)
    tmp = root / f".{step_name(state.step)}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    torch.save(backend.trainable_state(module), tmp / "trainable.pt")
    torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
    torch.save(generator.get_state(), tmp / "rng.pt")
    (tmp / STATE).write_text(json.dumps(asdict(state)))
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    return final


def read_checkpoint(folder: Path, backend: Any, module: Any, optimizer: Any,
                    generator: torch.Generator) -> LoopState:
    """Load a checkpoint folder into the module, optimizer and generator; returns its state."""
    missing = [f for f in FILES if not (folder / f).is_file()]
    if missing:
        raise FileNotFoundError(f"checkpoint {folder} is incomplete: {', '.join(missing)} missing")
    backend.load_trainable_state(module, torch.load(folder / "trainable.pt", map_location="cpu", weights_only=True))
    optimizer.load_state_dict(torch.load(folder / "optimizer.pt", map_location="cpu", weights_only=True))
    generator.set_state(torch.load(folder / "rng.pt", weights_only=True))
    return LoopState.from_json((folder / STATE).read_text())


def local_checkpoints(root: Path) -> list[Path]:
    """Complete checkpoint folders under ``root``, oldest first."""
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if p.is_dir() and p.name.startswith("step-") and (p / STATE).is_file())


def prune(root: Path, keep: int) -> None:
    """Delete all but the newest ``keep`` local checkpoints (the artifact store keeps every one)."""
    for old in local_checkpoints(root)[:-keep] if keep > 0 else []:
        shutil.rmtree(old, ignore_errors=True)
