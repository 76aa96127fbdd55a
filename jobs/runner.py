"""The stage runner: pending work is a DataFrame, the executors do the work, few large commits.

A per-row stage, with its output table's lease held (``facevid.jobs.lease``):

1. **plan** (driver: counts only): the input frame's rows whose key has no output row with the same
   input fingerprint and stage fingerprint (``facevid.jobs.lineage``), plus rows holding a transient error
   with attempts left and errors re-queued by ``--retry-errors``, is the pending DataFrame;
2. **chunks**: pending keys are split into ``ceil(pending / resources.commit_rows)`` chunks by a
   hash of the video id (a video's clips stay together); each chunk is repartitioned by video,
   mapped by the op's row function in ``mapInPandas`` on the executors, written to a staging
   Delta table (one distributed job) and published with one ``MERGE`` on the key, which also
   removes rows of the chunk's inputs that the new output no longer has (a re-split). Keys in
   flight are recorded first (``facevid.jobs.inflight``): a run that dies loses at most its chunks in
   flight, a chunk staged but not merged is published by the next run, and rows that were in
   flight when the process crashed run crash-isolated next time;
3. **prune**: output rows whose input row is gone (or now an error) are removed in one commit;
4. the run is logged in ``meta.runs`` with every input's Delta version (lineage).

Whole-table stages (``TableOp``) rebuild their output from their inputs and overwrite it in one
commit when it changed and their gate passes. Error rows of every stage form the ``quarantine``
view (``facevid.jobs.quarantine``); no shared table is written by two stages.
"""

from __future__ import annotations

import contextlib
import math
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from pyspark.sql import functions as F

from facevid.jobs.adapter import RowPlan, map_function
from facevid.jobs.config import ConfigError, PipelineConfig, StageSpec
from facevid.jobs.engine import Engine
from facevid.jobs.lake import Lake
from facevid.jobs.lease import Lease, lease_store
from facevid.jobs.lineage import (
    INPUT_FP,
    PRIOR_ATTEMPTS,
)
from facevid.jobs.runlog import StageReport, ddl, input_versions, log_run, stage_fp
from facevid.jobs.stages import Op, registry
from facevid.jobs.stages.base import TableOp
from facevid.jobs.table_stage import run_table_stage


@dataclass
class Context:
    cfg: PipelineConfig
    engine: Engine
    lake: Lake
    run_id: str = ""
    retry: set[str] | None = None  # --retry-errors: categories to re-queue ("*" = every error)
    allow_shrink: bool = False  # --allow-shrink: gold may drop more than gate.max_shrink of its clips
    wait_s: float = 0.0  # how long to wait for a table another run is writing
    leases: dict[str, Lease] = field(default_factory=dict)

    @property
    def spark(self) -> Any:
        return self.engine.spark

    @property
    def files_root(self) -> str:
        """Where non-table files of the lake live (leases, in-flight records, staging on UC)."""
        return self.cfg.files_root

    def current(self, table: str) -> Any:
        """The rows of ``table`` (every key once: stages publish by MERGE on the key)."""
        return self.lake.read(table)

    def lease(self, table: str, command: str = "run") -> Lease:
        self.run_id = self.run_id or uuid.uuid4().hex[:12]
        lease = Lease(lease_store(self.files_root), table.replace(".", "_"), self.run_id, command)
        lease.acquire(self.wait_s)
        self.leases[table] = lease
        return lease


def op_for(spec: StageSpec) -> Op:
    return registry[spec.op]()


def side_tables(cfg: PipelineConfig) -> list[str]:
    """Tables that whole-table stages keep beside their output (rejections, ledgers)."""
    out: list[str] = []
    for spec in cfg.ordered():
        op = op_for(spec)
        out += [t for t in (getattr(op, "rejections", None), getattr(op, "ledger", None)) if t]
    return out


def row_plan(spec: StageSpec, op: Op, inp: Any) -> RowPlan:
    types = {f.name: f.dataType.simpleString() for f in inp.schema.fields}
    return RowPlan(key=op.key, input_key=op.input_key, columns=op.columns, passthrough=op.passthrough,
                   passthrough_types={c: types[c] for c in op.passthrough}, stage_fp=stage_fp(spec),
                   version=spec.version, timeout_s=spec.resources.timeout_s or None,
                   processes=spec.resources.processes, max_attempts=spec.resources.max_attempts)


def _retry_condition(ctx: Context, spec: StageSpec) -> Any:
    cond = (F.col("error_kind") == "transient") & (F.col("attempts") < spec.resources.max_attempts)
    if ctx.retry:
        category = F.trim(F.substring_index(F.col("error"), ":", 1))
        wanted = F.col("error").isNotNull() if "*" in ctx.retry else category.isin(*sorted(ctx.retry))
        cond = cond | wanted
    return F.coalesce(cond, F.lit(False))


def pending_frame(ctx: Context, spec: StageSpec, op: Op, inp: Any) -> Any:
    """Input rows to (re)process, with ``_prior_attempts``; never collected to the driver."""
    if not ctx.lake.exists(spec.output):
        return inp.withColumn(PRIOR_ATTEMPTS, F.lit(0))
    out = ctx.lake.read(spec.output).filter(F.col("stage_fp") == stage_fp(spec))
    out = out.select(op.input_key, F.col("input_fp").alias(INPUT_FP), "attempts",
                     _retry_condition(ctx, spec).alias("_retry"))
    done = out.filter(~F.col("_retry")).select(op.input_key, INPUT_FP).distinct()
    prior = out.filter(F.col("_retry")).groupBy(op.input_key, INPUT_FP).agg(F.max("attempts").alias(PRIOR_ATTEMPTS))
    todo = inp.join(done, [op.input_key, INPUT_FP], "left_anti").join(prior, [op.input_key, INPUT_FP], "left")
    return todo.select(*inp.columns, F.coalesce(F.col(PRIOR_ATTEMPTS), F.lit(0)).alias(PRIOR_ATTEMPTS))


def stale_frame(ctx: Context, spec: StageSpec, op: Op, inp: Any) -> Any:
    """Output rows not produced from their input's current content by the current stage."""
    out = ctx.lake.read(spec.output)
    fresh = inp.select(op.input_key, F.col(INPUT_FP).alias("input_fp")).withColumn("stage_fp", F.lit(stage_fp(spec)))
    return out.join(fresh, [op.input_key, "input_fp", "stage_fp"], "left_anti")


def run_stage(ctx: Context, spec: StageSpec, log: Any = print) -> StageReport:
    """Run one stage to completion, holding its output's lease (a killed run resumes)."""
    op = op_for(spec)
    lease = ctx.lease(spec.output)
    try:
        if isinstance(op, TableOp):
            return run_table_stage(ctx, spec, op, log)
        return run_row_stage(ctx, spec, op, log)
    finally:
        lease.release()
        ctx.leases.pop(spec.output, None)


class _Publisher:
    """Stages a chunk's rows and publishes them with one MERGE; counts the commits."""

    def __init__(self, ctx: Context, spec: StageSpec, op: Op, plan: RowPlan) -> None:
        self.ctx, self.spec, self.op, self.plan = ctx, spec, op, plan
        self.types = plan.schema()
        self.commits = 0

    def publish(self, staging: str) -> int:
        """MERGE a complete staging table into the output (with tombstones for the rows of its
        inputs that it no longer has), drop it; returns the rows staged."""
        lake, op = self.ctx.lake, self.op
        staged = lake.read(staging)
        n = staged.filter(~F.col("_delete")).count()
        if op.key != op.input_key and lake.exists(self.spec.output):
            keys = staged.filter(~F.col("_delete"))
            gone = (lake.read(self.spec.output).join(keys.select(op.input_key).distinct(), op.input_key, "left_semi")
                    .join(keys.select(op.key), op.key, "left_anti").select(op.key))
            if gone.limit(1).count():
                lake.append(staging, self.tombstones(gone))
        self.ctx.leases[self.spec.output].check()
        if not lake.exists(self.spec.output):  # the first chunk creates the table
            lake.append(self.spec.output, staged.select(*self.types))
            self.commits += 1
        elif lake.read(staging).limit(1).count():
            lake.merge(self.spec.output, staging, op.key, list(self.types))
            self.commits += 1
        lake.drop(staging)
        return n

    def tombstones(self, keys: Any) -> Any:
        cols = [F.col(self.op.key)] + [F.lit(None).cast(t).alias(c) for c, t in self.types.items() if c != self.op.key]
        return keys.select(*cols, F.lit(True).alias("_delete")).select(*self.types, "_delete")

    def stage_rows(self, frame: Any, attempt: str) -> str:
        staging = self.ctx.lake.staging(self.spec.output, attempt)
        self.ctx.lake.append(staging, frame.withColumn("_delete", F.lit(False)))
        return staging


def run_row_stage(ctx: Context, spec: StageSpec, op: Op, log: Any = print) -> StageReport:
    from facevid.jobs import inflight

    started, t0 = time.time(), time.perf_counter()
    versions = input_versions(ctx, spec)
    inp = op.input_frame(ctx, spec)
    op.check_input(spec, inp)
    plan = row_plan(spec, op, inp)
    pub = _Publisher(ctx, spec, op, plan)
    if ctx.lake.exists(spec.output):
        ctx.lake.add_columns(spec.output, ddl(pub.types))  # a version bump may add columns
    for staging in ctx.lake.staged_tables(spec.output):  # staged by a run that died before publishing
        if not ctx.lake.exists(staging):  # it died while staging: nothing was committed there
            ctx.lake.drop(staging)
            continue
        log(f"  {spec.name}: publishing {staging} left by an earlier run")
        pub.publish(staging)
    group = "video_id" if "video_id" in inp.columns else op.input_key
    with contextlib.suppress(Exception):  # native Spark: Arrow batches of resources.batch rows (Sail ignores it)
        ctx.spark.conf.set("spark.sql.execution.arrow.maxRecordsPerBatch", str(spec.resources.batch))
    parts = spec.resources.partitions or ctx.engine.parallelism
    todo = pending_frame(ctx, spec, op, inp)
    dead = inflight.dead_attempts(ctx.files_root, spec.output)
    suspects = inflight.suspects(ctx.spark, ctx.files_root, spec.output, dead, op.input_key) if dead else None
    chunks, done, pending = 0, 0, todo.count()

    def run_chunk(chunk: Any, isolated: bool) -> int:
        attempt = uuid.uuid4().hex[:12]
        inflight.record(chunk.select(op.input_key), ctx.files_root, spec.output, attempt)
        this = plan if not isolated else RowPlan(**{**plan.__dict__, "processes": max(1, plan.processes)})
        fn, parted = map_function(op.row_fn(spec), this), chunk.repartition(parts, group)
        try:
            mapped = parted.mapInPandas(fn, ddl(pub.types), **task_profile(ctx, spec))
        except TypeError:  # a runtime whose mapInPandas takes no profile: the cluster setting decides
            mapped = parted.mapInPandas(fn, ddl(pub.types))
        n = pub.publish(pub.stage_rows(mapped, attempt))
        inflight.clear(ctx.files_root, spec.output, [attempt])
        return n

    risky_n = 0
    if suspects:
        hit = F.col(op.input_key).isin(*suspects)
        risky = todo.filter(hit)
        risky_n = risky.count()
        if risky_n:
            log(f"  {spec.name}: {risky_n} keys were in flight when an earlier run died: re-running them crash-isolated")
            done += run_chunk(risky, isolated=True)
            chunks += 1
        todo = todo.filter(~hit)
        inflight.clear(ctx.files_root, spec.output, dead)
    n_chunks = math.ceil((pending - risky_n) / spec.resources.commit_rows)
    bucketed = todo.withColumn("_chunk", F.pmod(F.xxhash64(F.col(group)), F.lit(max(n_chunks, 1))))
    for b in range(n_chunks):
        done += run_chunk(bucketed.filter(F.col("_chunk") == b).drop("_chunk"), isolated=False)
        chunks += 1
        log(f"  {spec.name}: chunk {b + 1}/{n_chunks} published ({done} rows)")
    ctx.lake.create(spec.output, ddl(pub.types))  # nothing was pending: downstream still reads it
    pruned = prune(ctx, spec, op, inp, pub) if op.prune else 0
    out = ctx.current(spec.output)
    rows, errors = out.count(), out.filter(F.col("error").isNotNull()).count()
    report = StageReport(spec.name, pending, rows, errors, chunks, time.perf_counter() - t0,
                         ctx.lake.version(spec.output), pub.commits, pruned)
    log_run(ctx, spec, report, versions, started)
    return report


def task_profile(ctx: Context, spec: StageSpec) -> dict[str, Any]:
    """Stage-level scheduling: on native Spark a stage with ``resources.gpu`` asks for that GPU
    share per task through a ``ResourceProfile`` on ``mapInPandas`` (Spark >= 4.0 with dynamic
    allocation or a standalone/K8s cluster; elsewhere the cluster-wide
    ``spark.task.resource.gpu.amount`` applies). Sail has no resource profiles: nothing is asked."""
    if spec.resources.gpu <= 0 or ctx.engine.kind != "spark":
        return {}
    try:
        from pyspark.resource import ResourceProfileBuilder, TaskResourceRequests

        requests = TaskResourceRequests().cpus(1).resource("gpu", spec.resources.gpu)
        return {"profile": ResourceProfileBuilder().require(requests).build}
    except Exception:  # an older runtime: the cluster setting decides
        return {}


def prune(ctx: Context, spec: StageSpec, op: Op, inp: Any, pub: _Publisher) -> int:
    """Remove output rows whose input row is gone (one MERGE commit); returns how many."""
    orphans = ctx.lake.read(spec.output).join(inp.select(op.input_key).distinct(), op.input_key, "left_anti")
    n = orphans.count()
    if n:
        staging = ctx.lake.staging(spec.output, "prune" + uuid.uuid4().hex[:8])
        ctx.lake.append(staging, pub.tombstones(orphans.select(op.key)))
        pub.publish(staging)
    return n


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
