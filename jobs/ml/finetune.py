"""``mlflow_projects/finetune``: fine-tune a video generation model on a gold split at a pinned version.

Two processes. The **supervisor** (this module's ``main``) resolves the table version (``latest`` is
resolved here and recorded, never re-read later), logs the parameters and the lineage (an
``mlflow.data`` Delta input + tags), then runs the **worker** (``--worker``: the training loop,
``facevid.udfs.train.loop``) as a child process, through ``accelerate launch`` when
``num_processes > 1``. A worker that dies (killed, OOM, a segfault) is restarted up to
``max_restarts`` times from the newest checkpoint with the learning rate cut (tag
``facevid.crash.N``; the loop's ``facevid.recovery.N`` tag records the rollback). When the worker is
done, the supervisor logs the trained folder as an MLflow pyfunc model and registers it. A run whose
supervisor died too (a lost node) is continued by a new run with ``resume_from=<its run id>``: it
starts from that run's newest checkpoint, with the same learning-rate cut (tag ``facevid.resumed_from``).

Exit status: 0 trained; 2 bad parameters or data; 3 training diverged (more anomalies than
``max_recoveries``); 4 the worker kept crashing (more than ``max_restarts``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from facevid.jobs.ml.data import TableRef, resolve_table, stream_factory, table_uri
from facevid.jobs.ml.params import FINETUNE, add_arguments
from facevid.jobs.ml.tracking import (
    TAG,
    MlflowHooks,
    log_lineage,
    log_params_once,
    log_selection,
    newest_checkpoint,
    setup_tracking,
)

DONE = "done.json"
WORKER_ARGS = ("run_id", "resume_reason", "pinned_version")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m facevid.jobs.ml.finetune", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(p, FINETUNE)
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    for name in WORKER_ARGS:
        p.add_argument(f"--{name.replace('_', '-')}", dest=name, default=None, help=argparse.SUPPRESS)
    return p


def settings_of(args: argparse.Namespace) -> dict[str, Any]:
    """The declared parameters (no worker plumbing)."""
    return {p.name: getattr(args, p.name) for p in FINETUNE}


def train_settings(args: argparse.Namespace) -> Any:
    from facevid.udfs.train.loop import TrainSettings

    keys = ("steps", "batch_size", "lr", "weight_decay", "warmup_steps", "grad_clip", "mixed_precision",
            "checkpoint_every", "log_every", "seed", "spike_factor", "spike_window", "lr_decay", "min_lr",
            "max_recoveries", "faults")
    return TrainSettings(**{k: getattr(args, k) for k in keys},
                         spike_warmup=min(20, args.spike_window))


# -- the worker: one training process --------------------------------------------------------------
def worker(args: argparse.Namespace) -> int:
    import mlflow
    from accelerate import PartialState

    from facevid.udfs.models.runtime import resolve_device
    from facevid.udfs.train.backends import build_backend, save_trained
    from facevid.udfs.train.loop import Trainer, TrainingDiverged

    try:  # bad parameters or data end the run (exit 2): restarting would not help
        device = resolve_device(args.device, "finetune.device")
        if device == "cuda" and "LOCAL_RANK" in os.environ:  # accelerate launch: one GPU per process
            device = f"cuda:{os.environ['LOCAL_RANK']}"
        settings = train_settings(args)
        ref = TableRef(args.table, table_uri(args.lake, args.table, args.table_uri), int(args.pinned_version))
        backend = build_backend(args.backend, settings_of(args), device, args.seed)
        workdir = Path(args.workdir)
        client = mlflow.MlflowClient()
        ranks = PartialState(cpu=device == "cpu")  # this process's rank and the world (accelerate launch)
        batches = stream_factory(args, ref, ranks.process_index, ranks.num_processes)
        trainer = Trainer(backend, batches, settings, MlflowHooks(client, args.run_id), workdir, cpu=device == "cpu")
        if trainer.acc.device.type != device.partition(":")[0]:  # the model and accelerate on one device
            raise ValueError(f"device {device} but accelerate runs on {trainer.acc.device}")
    except (ValueError, FileNotFoundError) as exc:
        print(f"finetune: error: {exc}", file=sys.stderr, flush=True)
        return 2
    if args.resume_reason:  # this run's newest checkpoint, else (a first start) the one of resume_from's run
        folder = newest_checkpoint(client, args.run_id, workdir)
        if folder is None and args.resume_from:
            folder = newest_checkpoint(client, args.resume_from, workdir)
            if folder is None:
                print(f"finetune: error: run {args.resume_from} has no checkpoint to resume from", file=sys.stderr)
                return 2
        if folder is not None:
            trainer.resume(folder, args.resume_reason)
    try:
        result = trainer.run()
    except TrainingDiverged as exc:
        print(f"finetune: diverged: {exc}", file=sys.stderr, flush=True)
        return 3
    if trainer.acc.is_main_process:
        facts = save_trained(backend, result.module, workdir / "final", settings_of(args))
        summary = {"step": result.state.step, "recoveries": result.state.recoveries, "lr": result.state.lr,
                   "samples_seen": result.state.samples_seen, "seconds": result.seconds, "facts": facts,
                   "loss_first": sum(result.first_losses) / max(1, len(result.first_losses)),
                   "loss_last": sum(result.last_losses) / max(1, len(result.last_losses))}
        (workdir / DONE).write_text(json.dumps(summary, default=str))
    return 0


def worker_command(args: argparse.Namespace, run_id: str, workdir: Path, version: int, reason: str | None
                   ) -> list[str]:
    values = {**settings_of(args), "run_id": run_id, "workdir": str(workdir), "pinned_version": str(version)}
    if reason:
        values["resume_reason"] = reason
    flat = [x for k, v in values.items() for x in (f"--{k.replace('_', '-')}", str(v))]
    launch = [sys.executable, "-m", "facevid.jobs.ml.finetune"]
    if args.num_processes > 1:
        launch = [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", str(args.num_processes),
                  *(["--cpu"] if args.device == "cpu" else []), "-m", "facevid.jobs.ml.finetune"]
    return [*launch, "--worker", *flat]


# -- the supervisor ------------------------------------------------------------------------------------
def supervise(args: argparse.Namespace, run_id: str, workdir: Path, version: int) -> tuple[int, dict[str, Any]]:
    """Run workers until one finishes; returns (exit status, the finished worker's summary)."""
    import mlflow

    reason = f"resumed from run {args.resume_from}" if args.resume_from else None
    restarts = 0
    if args.resume_from:
        mlflow.set_tag(f"{TAG}.resumed_from", args.resume_from)
    while True:
        rc = subprocess.call(worker_command(args, run_id, workdir, version, reason), env=os.environ.copy())
        if (workdir / DONE).is_file():
            return 0, json.loads((workdir / DONE).read_text())
        if rc in (2, 3):
            return rc, {}
        restarts += 1
        reason = f"crash (exit {rc})"
        mlflow.set_tag(f"{TAG}.crash.{restarts}", json.dumps({"exit": rc, "restart": restarts}))
        if restarts > args.max_restarts:
            print(f"finetune: the training process crashed {restarts} times (last exit {rc}); max_restarts is "
                  f"{args.max_restarts}", file=sys.stderr)
            return 4, {}


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.worker:
        return worker(args)
    import mlflow

    from facevid.jobs.ml.registry import register

    try:
        ref, rows, selection = resolve_table(args)
    except (ValueError, FileNotFoundError) as exc:
        print(f"finetune: error: {exc}", file=sys.stderr)
        return 2
    setup_tracking(args.lake, args.files or None)
    with mlflow.start_run() as run:
        run_id = run.info.run_id
        log_params_once(settings_of(args))
        mlflow.set_tags({f"{TAG}.project": "finetune", f"{TAG}.backend": args.backend, f"{TAG}.mode": args.mode})
        log_lineage(ref.table, ref.uri, ref.version, None if args.split == "all" else args.split,
                    rows[["clip_id", "caption"]], context="training")
        log_selection(selection)
        workdir = Path(args.workdir or Path(tempfile.gettempdir()) / "facevid-train" / run_id)
        workdir.mkdir(parents=True, exist_ok=True)
        rc, summary = supervise(args, run_id, workdir, ref.version)
        mlflow.set_tag(f"{TAG}.status", {0: "trained", 2: "bad_input", 3: "diverged", 4: "crashed"}[rc])
        if rc:
            return rc
        mlflow.log_metrics({"loss_first20": summary["loss_first"], "loss_last20": summary["loss_last"],
                            "final_lr": summary["lr"], "recoveries": summary["recoveries"],
                            "train_seconds": summary["seconds"]})
        model = register(workdir / "final", args.register_as, args.size, args.frames)
        mlflow.set_tags({f"{TAG}.model_uri": model["model_uri"],
                         f"{TAG}.registered_version": str(model["registered_version"] or "")})
        print(json.dumps({"run_id": run_id, **summary, **model}, default=str), flush=True)
    if not args.workdir:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
