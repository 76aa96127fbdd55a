"""The run log: what every stage run reports and records in ``meta.runs`` (lineage)."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Any

import pandas as pd

from facevid.jobs.config import StageSpec
from facevid.jobs.lineage import stage_fingerprint

RUN_COLUMNS = ("run_id string, stage string, stage_version int, stage_fp string, output string, "
               "output_version long, input string, input_version long, inputs string, pending long, "
               "rows long, errors long, chunks int, commits int, pruned long, started_at timestamp, "
               "seconds double, engine string, status string, driver_peak_mb double")


@dataclass
class StageReport:
    stage: str
    pending: int
    rows: int  # output rows after the run
    errors: int
    chunks: int
    seconds: float
    output_version: int | None
    commits: int = 0
    pruned: int = 0


def stage_fp(spec: StageSpec) -> str:
    return stage_fingerprint(spec.op, spec.version, spec.params)


def ddl(types: dict[str, str]) -> str:
    return ", ".join(f"`{name}` {typ}" for name, typ in types.items())


def input_versions(ctx: Any, spec: StageSpec) -> dict[str, int | None]:
    """The Delta version of every input table as the stage starts (lineage), and of the tables its
    params name as ``side_inputs`` (read when they exist, e.g. gold's ``review.verdicts``)."""
    return {t: ctx.lake.version(t) for t in (*spec.inputs, *getattr(spec.params, "side_inputs", ()))}


def driver_peak_mb() -> float:
    """Peak resident memory of this (driver) process so far, in MiB: ``VmHWM`` on Linux (reset by
    exec, unlike ``ru_maxrss``, which a child started from a large process inherits as a floor)."""
    import resource
    import sys
    from pathlib import Path

    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1 << 20) if sys.platform == "darwin" else peak / 1024


def log_run(ctx: Any, spec: StageSpec, r: StageReport, versions: dict[str, int | None], started: float,
             status: str = "ok") -> None:
    ctx.lake.create("meta.runs", RUN_COLUMNS)
    ctx.lake.add_columns("meta.runs", RUN_COLUMNS)
    row = pd.DataFrame([{
        "run_id": ctx.run_id or uuid.uuid4().hex[:12], "stage": spec.name, "stage_version": spec.version,
        "stage_fp": stage_fp(spec), "output": spec.output, "output_version": r.output_version, "input": spec.input,
        "input_version": versions.get(spec.input) if spec.input else None, "inputs": json.dumps(versions),
        "pending": r.pending, "rows": r.rows, "errors": r.errors, "chunks": r.chunks, "commits": r.commits,
        "pruned": r.pruned, "started_at": pd.Timestamp(started, unit="s", tz="UTC"), "seconds": r.seconds,
        "engine": ctx.engine.kind, "status": status, "driver_peak_mb": driver_peak_mb(),
    }])
    ctx.lake.append("meta.runs", ctx.spark.createDataFrame(row, RUN_COLUMNS))
