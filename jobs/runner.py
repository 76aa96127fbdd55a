"""The incremental, idempotent stage runner.

For a stage at version ``v``: pending = input keys with no output row at ``v`` (anti-join);
they run through the op's row function in ``mapInPandas`` chunk by chunk, each chunk one atomic
Delta append. A killed run loses at most the chunk in flight and a re-run resumes. When nothing
is pending, rows of older versions are deleted (a version bump reprocesses everything), error
rows are mirrored into ``quarantine`` and the run is logged in ``meta.runs`` with the Delta
versions it read and wrote (lineage).
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass
from typing import Any

import pandas as pd
from pyspark.sql import functions as F

from jobs.config import ConfigError, PipelineConfig, StageSpec
from jobs.engine import Engine
from jobs.lake import Lake
from jobs.stages import Op, registry
from jobs.stages.base import GateError, TableOp
from udfs.base import batch_udf, conform

RUN_COLUMNS = ("run_id string, stage string, stage_version int, output string, output_version long, "
               "input string, input_version long, inputs string, pending long, rows long, errors long, "
               "chunks int, started_at timestamp, seconds double, engine string, status string")
QUARANTINE_COLUMNS = ("stage string, stage_version int, key string, video_id string, clip_id string, "
                      "rule string, value string, threshold string, error string, at timestamp")


@dataclass
class Context:
    cfg: PipelineConfig
    engine: Engine
    lake: Lake
    run_id: str = ""

    @property
    def spark(self) -> Any:
        return self.engine.spark

    def current(self, table: str) -> Any:
        """Rows of ``table`` at its producing stage's current version."""
        spec = self.cfg.producer(table)
        df = self.lake.read(table)
        return df.filter(F.col("stage_version") == spec.version) if spec else df


@dataclass
class StageReport:
    stage: str
    pending: int
    rows: int  # output rows at the current version after the run
    errors: int
    chunks: int
    seconds: float
    output_version: int | None


def op_for(spec: StageSpec) -> Op:
    return registry[spec.op]()


def output_schema(op: Op, input_schema: Any) -> str:
    """Spark DDL of the op's output table: passthrough input columns, op columns, bookkeeping."""
    types = {f.name: f.dataType.simpleString() for f in input_schema.fields}
    cols = {c: types[c] for c in op.passthrough}
    cols.update(op.columns)
    cols.update({"error": "string", "stage_version": "int", "processed_at": "timestamp"})
    return ", ".join(f"{name} {typ}" for name, typ in cols.items())


def pending_frame(ctx: Context, spec: StageSpec, op: Op, inp: Any) -> Any:
    """Input rows whose key has no output row at the current version."""
    if not ctx.lake.exists(spec.output):
        return inp
    done = ctx.lake.read(spec.output).filter(F.col("stage_version") == spec.version)
    # a USING join moves the key first: restore the input's column order (rows are rebuilt by position)
    return inp.join(done.select(op.input_key).distinct(), op.input_key, "left_anti").select(*inp.columns)


def input_versions(ctx: Context, spec: StageSpec) -> dict[str, int | None]:
    """The Delta version of every input table as the stage starts (lineage)."""
    return {t: ctx.lake.version(t) for t in spec.inputs}


def run_stage(ctx: Context, spec: StageSpec, log: Any = print) -> StageReport:
    """Run one stage to completion (or until killed: re-running resumes)."""
    op = op_for(spec)
    if isinstance(op, TableOp):
        return run_table_stage(ctx, spec, op, log)
    started, t0 = time.time(), time.perf_counter()
    versions = input_versions(ctx, spec)
    inp = op.input_frame(ctx, spec)
    schema = output_schema(op, inp.schema)
    ctx.lake.create(spec.output, schema)
    todo = pending_frame(ctx, spec, op, inp).orderBy(op.input_key).toPandas()
    fn = batch_udf(op.row_fn(spec), op.columns, op.passthrough, spec.version, spec.resources.processes)
    parts = spec.resources.partitions or ctx.engine.parallelism
    chunks = 0
    for start in range(0, len(todo), spec.resources.batch):
        chunk = todo.iloc[start:start + spec.resources.batch]
        sdf = ctx.spark.createDataFrame(chunk[inp.columns], inp.schema).repartition(min(parts, len(chunk)))
        ctx.lake.append(spec.output, sdf.mapInPandas(fn, schema))
        chunks += 1
        log(f"  {spec.name}: {min(start + len(chunk), len(todo))}/{len(todo)} committed")
    _drop_old_versions(ctx, spec)
    errors = _sync_quarantine(ctx, spec, op)
    out_version = ctx.lake.version(spec.output)
    rows = ctx.current(spec.output).count()
    report = StageReport(spec.name, len(todo), rows, errors, chunks, time.perf_counter() - t0, out_version)
    _log_run(ctx, spec, report, versions, started)
    return report


def run_table_stage(ctx: Context, spec: StageSpec, op: TableOp, log: Any = print) -> StageReport:
    """Rebuild a whole-table stage; commit (overwrite) only when the gate passes and the rows changed."""
    started, t0 = time.time(), time.perf_counter()
    versions = input_versions(ctx, spec)
    previous = ctx.current(spec.output).toPandas() if ctx.lake.exists(spec.output) else None
    table = op.build(ctx, spec, previous)
    if "error" not in table.columns:
        table["error"] = None
    names = list(op.columns) + ["error"]
    table = conform(table[names].sort_values(op.key, ignore_index=True), {**op.columns, "error": "string"})
    table["stage_version"] = spec.version
    schema = ", ".join(f"{c} {t}" for c, t in {**op.columns, "error": "string", "stage_version": "int",
                                                 "processed_at": "timestamp"}.items())
    try:
        op.check(ctx, spec, table)
    except GateError:
        report = StageReport(spec.name, len(table), len(table), 0, 0, time.perf_counter() - t0,
                             ctx.lake.version(spec.output))
        _log_run(ctx, spec, report, versions, started, status="gate_failed")
        raise
    unchanged = previous is not None and _same_rows(previous, table, {**op.columns, "error": "string"}, op.key)
    if not unchanged:
        table["processed_at"] = pd.Timestamp.now(tz="UTC")
        ctx.lake.create(spec.output, schema)
        ctx.lake.overwrite(spec.output, ctx.spark.createDataFrame(table, schema))
        log(f"  {spec.name}: {len(table)} rows committed")
    else:
        log(f"  {spec.name}: {len(table)} rows, unchanged (no commit)")
    _drop_old_versions(ctx, spec)
    quarantine = op.quarantine_rows(spec, table)
    errors = _sync_quarantine(ctx, spec, op) if quarantine is None else _replace_quarantine(ctx, spec, quarantine)
    report = StageReport(spec.name, len(table), len(table), errors, 0 if unchanged else 1,
                         time.perf_counter() - t0, ctx.lake.version(spec.output))
    _log_run(ctx, spec, report, versions, started)
    return report


def _same_rows(previous: pd.DataFrame, table: pd.DataFrame, types: dict[str, str], key: str) -> bool:
    """Whether a rebuilt table equals the committed one (ignoring ``processed_at``); both sides get
    the same dtypes first (Spark hands back a null int as NaN, the rebuilt table holds <NA>)."""
    names = list(types)
    if len(previous) != len(table) or set(names) - set(previous.columns):
        return False
    left = conform(previous[names].sort_values(key, ignore_index=True), types).astype(str)
    return bool(left.equals(table[names].astype(str)))


def _replace_quarantine(ctx: Context, spec: StageSpec, rows: pd.DataFrame) -> int:
    """Replace the stage's quarantine rows with ``rows`` (a table stage's rule decisions)."""
    ctx.lake.create("quarantine", QUARANTINE_COLUMNS)
    ctx.lake.delete("quarantine", f"stage = '{spec.name}'")
    if len(rows):
        frame = rows.assign(stage=spec.name, stage_version=spec.version, at=pd.Timestamp.now(tz="UTC"))
        names = [c.split()[0] for c in QUARANTINE_COLUMNS.split(", ")]
        for col in names:
            if col not in frame.columns:
                frame[col] = None
        frame = conform(frame[names], {c: "string" for c in names if c not in ("stage_version", "at")})
        ctx.lake.append("quarantine", ctx.spark.createDataFrame(frame, QUARANTINE_COLUMNS))
    return int(rows["key"].nunique()) if len(rows) else 0


def _drop_old_versions(ctx: Context, spec: StageSpec) -> None:
    stale = ctx.lake.read(spec.output).filter(F.col("stage_version") != spec.version)
    if stale.limit(1).count():
        ctx.lake.delete(spec.output, f"stage_version <> {spec.version}")


def _sync_quarantine(ctx: Context, spec: StageSpec, op: Op) -> int:
    """Mirror the stage's current error rows into ``quarantine`` (idempotent); returns their count."""
    ctx.lake.create("quarantine", QUARANTINE_COLUMNS)
    out = ctx.current(spec.output)
    cols = set(out.columns)
    value, threshold = op.quarantine_measure(spec)

    def col_or_null(name: str) -> str:
        return name if name in cols else "CAST(NULL AS STRING)"

    errs = out.filter("error IS NOT NULL").selectExpr(
        f"'{spec.name}' AS stage", f"CAST({spec.version} AS INT) AS stage_version",
        f"CAST({op.key} AS STRING) AS key", f"{col_or_null('video_id')} AS video_id",
        f"{col_or_null('clip_id')} AS clip_id",
        f"concat('{spec.name}.', trim(substring_index(error, ':', 1))) AS rule",
        f"{value} AS value", f"{threshold} AS threshold", "error", "current_timestamp() AS at",
    )
    q = ctx.lake.read("quarantine").filter(F.col("stage") == spec.name)
    if q.filter(F.col("stage_version") != spec.version).limit(1).count():
        ctx.lake.delete("quarantine", f"stage = '{spec.name}' AND stage_version <> {spec.version}")
    seen = q.filter(F.col("stage_version") == spec.version).select("key", "rule")
    fresh = errs.join(seen, ["key", "rule"], "left_anti")
    if fresh.limit(1).count():
        ctx.lake.append("quarantine", fresh)
    return int(errs.count())


def _log_run(ctx: Context, spec: StageSpec, r: StageReport, versions: dict[str, int | None], started: float,
             status: str = "ok") -> None:
    ctx.lake.create("meta.runs", RUN_COLUMNS)
    row = pd.DataFrame([{
        "run_id": ctx.run_id or uuid.uuid4().hex[:12], "stage": spec.name, "stage_version": spec.version,
        "output": spec.output, "output_version": r.output_version, "input": spec.input,
        "input_version": versions.get(spec.input) if spec.input else None, "inputs": json.dumps(versions),
        "pending": r.pending, "rows": r.rows, "errors": r.errors,
        "chunks": r.chunks, "started_at": pd.Timestamp(started, unit="s", tz="UTC"), "seconds": r.seconds,
        "engine": ctx.engine.kind, "status": status,
    }])
    ctx.lake.append("meta.runs", ctx.spark.createDataFrame(row, RUN_COLUMNS))


def run_pipeline(ctx: Context, names: list[str] | None = None, log: Any = print) -> list[StageReport]:
    """Run the declared stages (or ``names``) in dependency order."""
    ctx.run_id = ctx.run_id or uuid.uuid4().hex[:12]
    specs = ctx.cfg.ordered(names)
    produced = {s.output for s in specs}
    for spec in specs:  # fail before any work when a needed input will not exist
        for table in spec.inputs:
            if table not in produced and not ctx.lake.exists(table):
                producer = ctx.cfg.producer(table)
                raise ConfigError(f"stage {spec.name}: input table {table} does not exist in {ctx.cfg.lake} yet; "
                                  f"run stage {producer.name if producer else '?'} first (or without --stages)")
    reports = []
    for spec in specs:
        log(f"stage {spec.name} ({spec.op} v{spec.version}) -> {spec.output}")
        reports.append(run_stage(ctx, spec, log))
    return reports
