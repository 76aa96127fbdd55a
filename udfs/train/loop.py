"""The training loop: accelerate, frequent checkpoints, and the paper's recovery recipe.

DH-FaceVid-1K's EasyAnimate runs crashed on large data until the learning rate was cut (down to 2e-6)
and checkpoints were saved often so that a crash could revert to the last stable one. Here that is a
declared rule, run by the loop:

- **Anomaly**: a loss that is not finite, a gradient norm that is not finite, or a loss spike: a loss
  above ``spike_factor`` x the median of the last ``spike_window`` healthy losses (judged once the
  window holds ``spike_warmup`` losses). The step is not applied.
- **Recovery**: the model, optimizer, noise generator and data position go back to the newest
  checkpoint (the last stable one: checkpoints are written only after healthy steps), the base
  learning rate is multiplied by ``lr_decay`` (never below ``min_lr``), and training goes on. After
  ``max_recoveries`` recoveries the run stops with ``TrainingDiverged``.
- **Crash**: a process that dies (killed, OOM, segfault) is restarted by the supervisor of the
  finetune project with ``resume`` = the newest checkpoint and ``resume_reason``: the same
  recovery (rollback + learning-rate cut) happens at start-up.

Every recovery is reported through ``hooks.event`` (MLflow tags in the finetune project) and the
learning rate is logged with the loss, so a run's history shows each rollback. ``faults`` inject
anomalies for tests and drills: ``nan@80`` (the loss at step 80 becomes NaN), ``spike@120`` (x1000),
``kill@150`` (SIGKILL to this process), each firing once per run (``hooks.fired``/``mark_fired``
persist that across processes).
"""

from __future__ import annotations

import math
import os
import signal
import statistics
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch

from facevid.udfs.base import validate
from facevid.udfs.train.checkpoints import (
    LoopState,
    local_checkpoints,
    prune,
    read_checkpoint,
    write_checkpoint,
)

FAULTS = ("nan", "spike", "kill")
MIXED = ("no", "bf16", "fp16")


class TrainingDiverged(RuntimeError):
    """More anomalies than ``max_recoveries``: the run stops (its checkpoints stay)."""


@dataclass(frozen=True)
class TrainSettings:
    """The loop's knobs (the finetune project's parameters of the same names)."""

    steps: int = 300
    batch_size: int = 4
    lr: float = 1e-3
    weight_decay: float = 0.0
    warmup_steps: int = 0
    grad_clip: float = 1.0
    grad_accum: int = 1
    mixed_precision: str = "no"
    checkpoint_every: int = 50
    keep_local: int = 2  # local checkpoint copies (the artifact store keeps every one)
    log_every: int = 10
    seed: int = 0
    spike_factor: float = 10.0
    spike_window: int = 50
    spike_warmup: int = 20
    lr_decay: float = 0.5
    min_lr: float = 2e-6
    max_recoveries: int = 5
    faults: str = ""  # e.g. "nan@80,kill@150" (tests and drills)

    def __post_init__(self) -> None:
        validate("finetune", [
            (self.steps >= 1, f"steps must be >= 1, got {self.steps}"),
            (self.batch_size >= 1, f"batch_size must be >= 1, got {self.batch_size}"),
            (self.lr > 0 and self.min_lr > 0, "lr and min_lr must be > 0"),
            (self.checkpoint_every >= 1, "checkpoint_every must be >= 1"),
            (self.grad_accum >= 1, "grad_accum must be >= 1"),
            (self.mixed_precision in MIXED, f"mixed_precision must be one of {MIXED}"),
            (0 < self.lr_decay < 1, f"lr_decay must be in (0, 1), got {self.lr_decay}"),
            (self.spike_factor > 1, "spike_factor must be > 1"),
            (self.spike_window >= self.spike_warmup >= 1, "need spike_window >= spike_warmup >= 1"),
            (self.max_recoveries >= 0, "max_recoveries must be >= 0"),
        ])
        parse_faults(self.faults)


def parse_faults(text: str) -> dict[int, str]:
    """``"nan@80,kill@150"`` -> ``{80: "nan@80", 150: "kill@150"}`` (ValueError naming a bad item)."""
    out: dict[int, str] = {}
    for item in filter(None, (s.strip() for s in (text or "").split(","))):
        kind, _, at = item.partition("@")
        if kind not in FAULTS or not at.isdigit() or int(at) < 1:
            raise ValueError(f"finetune.faults: {item!r} is not <{'|'.join(FAULTS)}>@<step >= 1>")
        out[int(at)] = item
    return out


class Hooks(Protocol):
    """Where the loop reports (the finetune project: MLflow)."""

    def metrics(self, values: dict[str, float], step: int) -> None: ...
    def checkpoint(self, folder: Path, state: LoopState) -> None: ...
    def event(self, name: str, detail: dict[str, Any]) -> None: ...
    def fired(self) -> set[str]: ...
    def mark_fired(self, fault: str) -> None: ...


@dataclass
class TrainResult:
    state: LoopState
    module: Any
    first_losses: list[float]
    last_losses: list[float]
    seconds: float


class _Quiet:
    """The hooks of a rank other than the main one: reads pass through, nothing is reported twice."""

    def __init__(self, hooks: Hooks) -> None:
        self._hooks = hooks

    def fired(self) -> set[str]:
        return self._hooks.fired()

    def metrics(self, values: dict[str, float], step: int) -> None: ...
    def checkpoint(self, folder: Path, state: LoopState) -> None: ...
    def event(self, name: str, detail: dict[str, Any]) -> None: ...
    def mark_fired(self, fault: str) -> None: ...


Batches = Callable[[int], Iterator[dict[str, Any]]]  # samples already consumed -> batches from there


class Trainer:
    """One training process (see the module docstring). ``batches(offset)`` yields batch dicts
    starting after ``offset`` samples of this rank's order, endlessly (epochs follow each other)."""

    def __init__(self, backend: Any, batches: Batches, settings: TrainSettings, hooks: Hooks, workdir: Path,
                 cpu: bool = True) -> None:
        from accelerate import Accelerator
        from accelerate.utils import DistributedDataParallelKwargs

        self.backend, self.batches, self.s = backend, batches, settings
        self.ckpt_root = workdir / "checkpoints"
        ddp = DistributedDataParallelKwargs(find_unused_parameters=True)  # as diffusers' recipes (frozen branches)
        self.acc = Accelerator(cpu=cpu, mixed_precision=settings.mixed_precision,
                               gradient_accumulation_steps=settings.grad_accum, kwargs_handlers=[ddp])
        self.hooks = hooks if self.acc.is_main_process else _Quiet(hooks)
        module = backend.trainable_module()
        self.optimizer = torch.optim.AdamW(backend.trainable_parameters(module), lr=settings.lr,
                                           weight_decay=settings.weight_decay)
        self.module, self.optimizer = self.acc.prepare(module, self.optimizer)
        self.generator = torch.Generator().manual_seed(settings.seed + self.acc.process_index)
        self.faults = parse_faults(settings.faults)
        self.fired = set(hooks.fired())
        self.state = LoopState(lr=settings.lr)

    # -- checkpoints ---------------------------------------------------------------------------
    def _save(self) -> None:
        if self.acc.is_main_process:
            folder = write_checkpoint(self.ckpt_root, self.backend, self.module, self.optimizer, self.generator,
                                      self.state)
            self.hooks.checkpoint(folder, self.state)
            prune(self.ckpt_root, self.s.keep_local)
        self.acc.wait_for_everyone()

    def _rollback(self, reason: str, at_step: int, folder: Path | None = None) -> None:
        """Back to the newest checkpoint with a reduced learning rate (or stop: TrainingDiverged)."""
        folder = folder or local_checkpoints(self.ckpt_root)[-1]
        lr_before = self.state.lr
        recoveries = self.state.recoveries + 1
        self.state = read_checkpoint(folder, self.backend, self.module, self.optimizer, self.generator)
        self.state.recoveries = recoveries
        self.state.lr = max(self.s.min_lr, lr_before * self.s.lr_decay)
        detail = {"reason": reason, "at_step": at_step, "to_step": self.state.step, "lr_before": lr_before,
                  "lr_after": self.state.lr, "recovery": recoveries}
        self.hooks.event("recovery", detail)
        self.hooks.metrics({"recoveries": float(recoveries), "lr": self.state.lr}, self.state.step)
        if recoveries > self.s.max_recoveries:
            raise TrainingDiverged(f"{reason} at step {at_step}: {recoveries} recoveries, more than "
                                   f"max_recoveries {self.s.max_recoveries}")

    def resume(self, folder: Path, reason: str) -> None:
        """Start from ``folder`` after a crash: the same rollback as an in-process anomaly."""
        self.ckpt_root.mkdir(parents=True, exist_ok=True)
        local = self.ckpt_root / folder.name
        if folder.resolve() != local.resolve():
            import shutil

            shutil.copytree(folder, local, dirs_exist_ok=True)
        self.state = LoopState.from_json((local / "state.json").read_text())
        self._rollback(reason, self.state.step, local)

    # -- the loop --------------------------------------------------------------------------------
    def _lr_at(self, step: int) -> float:
        warm = min(1.0, (step + 1) / self.s.warmup_steps) if self.s.warmup_steps else 1.0
        return self.state.lr * warm

    def _anomaly(self, loss: float) -> str | None:
        if not math.isfinite(loss):
            return "nan_loss"
        window = self.state.losses[-self.s.spike_window:]
        if len(window) >= self.s.spike_warmup and loss > self.s.spike_factor * statistics.median(window):
            return "loss_spike"
        return None

    def _inject(self, step: int, loss: torch.Tensor) -> torch.Tensor:
        fault = self.faults.get(step)
        if fault is None or fault in self.fired:
            return loss
        self.fired.add(fault)
        self.hooks.mark_fired(fault)
        kind = fault.partition("@")[0]
        if kind == "kill":
            os.kill(os.getpid(), signal.SIGKILL)
        return loss * float("nan") if kind == "nan" else loss * 1000.0

    def _agree(self, flag: bool) -> bool:
        """Every rank takes the same decision (any rank's anomaly rolls all back)."""
        if self.acc.num_processes == 1:
            return flag
        return bool(self.acc.reduce(torch.tensor([float(flag)], device=self.acc.device), "max").item())

    def run(self) -> TrainResult:
        t0 = time.monotonic()
        if not local_checkpoints(self.ckpt_root):
            self._save()  # step 0: a rollback target before the first scheduled checkpoint
        recent: list[float] = []
        stream = self.batches(self.state.samples_seen)
        while self.state.step < self.s.steps:
            step = self.state.step + 1
            for group in self.optimizer.param_groups:
                group["lr"] = self._lr_at(self.state.step)
            batch = next(stream)
            with self.acc.accumulate(self.module):
                loss = self._inject(step, self.backend.loss(self.module, batch, self.generator))
                value = float(loss.detach())
                reason = self._anomaly(value)
                if not self._agree(reason is not None):
                    self.acc.backward(loss)
                    norm = self.acc.clip_grad_norm_(self.module.parameters(), self.s.grad_clip) \
                        if self.s.grad_clip and self.acc.sync_gradients else None
                    reason = "nan_grad" if norm is not None and not math.isfinite(float(norm)) else None
                    if not self._agree(reason is not None):
                        self.optimizer.step()
                self.optimizer.zero_grad(set_to_none=True)
            if reason is not None:
                self._rollback(reason, step)
                stream = self.batches(self.state.samples_seen)
                continue
            self.state.step = step
            index = batch.get("index")  # the reader's positions: exact even when a clip was skipped
            self.state.samples_seen = int(index.max()) + 1 if index is not None else \
                self.state.samples_seen + len(batch["caption"])
            self.state.losses = (self.state.losses + [value])[-self.s.spike_window:]
            recent.append(value)
            if len(self.state.first_losses) < 20:
                self.state.first_losses.append(value)
            if step % self.s.log_every == 0 or step == self.s.steps:
                self.hooks.metrics({"loss": statistics.fmean(recent), "lr": self._lr_at(step - 1)}, step)
                recent = []
            if step % self.s.checkpoint_every == 0 or step == self.s.steps:
                self._save()
        return TrainResult(self.state, self.module, self.state.first_losses, self.state.losses[-20:],
                           time.monotonic() - t0)
