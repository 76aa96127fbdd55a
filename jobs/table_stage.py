"""Whole-table stages: rebuilt from their inputs, gated, committed in one overwrite when changed."""

from __future__ import annotations

import time
from typing import Any

import pandas as pd

from facevid.jobs.adapter import conform
from facevid.jobs.config import StageSpec
from facevid.jobs.lineage import BOOKKEEPING, content_columns, frame_fingerprints
from facevid.jobs.runlog import StageReport, ddl, input_versions, log_run, stage_fp
from facevid.jobs.stages.base import GateError, TableOp


def run_table_stage(ctx: Any, spec: StageSpec, op: TableOp, log: Any = print) -> StageReport:
    """Rebuild a whole-table stage; commit (overwrite) only when the gate passes and the rows changed.
    Its rejections (``op.rejections``) are written first: a run that dies between the two commits
    rebuilds both next time."""
    started, t0 = time.time(), time.perf_counter()
    versions = input_versions(ctx, spec)
    previous = ctx.current(spec.output).toPandas() if ctx.lake.exists(spec.output) else None  # bounded: the table stage's own scalar output
    table = op.build(ctx, spec, previous)
    if "error" not in table.columns:
        table["error"] = None
    types = {**op.columns, "error": "string"}
    table = conform(table[list(types)].sort_values(op.key, ignore_index=True), types)
    table["fingerprint"] = frame_fingerprints(table, content_columns(op.key, types))
    table["stage_fp"], table["stage_version"] = stage_fp(spec), spec.version
    try:
        op.check(ctx, spec, table)
    except GateError:
        report = StageReport(spec.name, len(table), len(table), 0, 0, time.perf_counter() - t0,
                             ctx.lake.version(spec.output))
        log_run(ctx, spec, report, versions, started, status="gate_failed")
        raise
    all_types = {**types, **BOOKKEEPING}
    commits = op.record(ctx, spec, table)
    commits += _write_rejections(ctx, spec, op, table)
    unchanged = previous is not None and _same_rows(previous, table, ["fingerprint", "stage_fp"], op.key)
    if not unchanged:
        for col, _typ in all_types.items():
            if col not in table:
                table[col] = None
        table["processed_at"] = pd.Timestamp.now(tz="UTC")
        table = conform(table[list(all_types)], all_types)
        ctx.lake.create(spec.output, ddl(all_types))
        ctx.lake.overwrite(spec.output, ctx.spark.createDataFrame(table, ddl(all_types)))
        commits += 1
        log(f"  {spec.name}: {len(table)} rows committed")
    else:
        log(f"  {spec.name}: {len(table)} rows, unchanged (no commit)")
    errors = int(table["error"].notna().sum())
    report = StageReport(spec.name, len(table), len(table), errors, 0 if unchanged else 1,
                         time.perf_counter() - t0, ctx.lake.version(spec.output), commits)
    log_run(ctx, spec, report, versions, started)
    return report


def _same_rows(previous: pd.DataFrame, table: pd.DataFrame, names: list[str], key: str) -> bool:
    """Whether a rebuilt table equals the committed one, by row fingerprints."""
    if len(previous) != len(table) or set(names) - set(previous.columns):
        return False
    left = previous[[key, *names]].sort_values(key, ignore_index=True).astype(str)
    return bool(left.equals(table[[key, *names]].sort_values(key, ignore_index=True).astype(str)))


def _write_rejections(ctx: Any, spec: StageSpec, op: TableOp, table: pd.DataFrame) -> int:
    """Replace a table stage's rejection rows (one overwrite commit, only when they changed)."""
    from facevid.jobs.quarantine import REJECTION_TYPES

    if op.rejections is None:
        return 0
    rows = op.quarantine_rows(spec, table)
    frame = pd.DataFrame(rows if rows is not None else [], columns=list(REJECTION_TYPES))
    frame = frame.assign(stage=spec.name, stage_version=spec.version, at=pd.Timestamp.now(tz="UTC"))
    frame = conform(frame[list(REJECTION_TYPES)].sort_values(["key", "rule"], ignore_index=True), REJECTION_TYPES)
    if ctx.lake.exists(op.rejections):
        old = ctx.lake.read(op.rejections).toPandas()  # bounded: one row per rejection
        cols = ["key", "rule", "value", "threshold"]
        if len(old) == len(frame) and old[cols].sort_values(["key", "rule"], ignore_index=True).astype(str).equals(
                frame[cols].astype(str)):
            return 0
    ctx.lake.create(op.rejections, ddl(REJECTION_TYPES))
    ctx.lake.overwrite(op.rejections, ctx.spark.createDataFrame(frame, ddl(REJECTION_TYPES)))
    return 1
