"""The ``quarantine`` view: every rejected or failed row, with the rule or error that rejected it.

It is not a table that stages write (two stages running in parallel would rewrite it at once):
it is a view over the error rows of every per-row stage's output (``rule`` = ``<stage>.<category>``,
``value``/``threshold`` from the error) and the rejection tables of whole-table stages (gold's
rule decisions, ``gold.rejections``), built when it is read.
"""

from __future__ import annotations

from typing import Any

from pyspark.sql import functions as F

REJECTION_TYPES: dict[str, str] = {
    "stage": "string", "stage_version": "int", "key": "string", "video_id": "string", "clip_id": "string",
    "rule": "string", "value": "string", "threshold": "string", "error": "string", "at": "timestamp",
}
QUARANTINE_TYPES: dict[str, str] = {**REJECTION_TYPES, "kind": "string", "attempts": "int"}


def _cast(name: str) -> Any:
    return F.col(name).cast(QUARANTINE_TYPES[name]).alias(name)


def _null(name: str) -> Any:
    return F.lit(None).cast(QUARANTINE_TYPES[name]).alias(name)


def quarantine_frame(ctx: Any) -> Any | None:
    """The view's DataFrame over the lake's current tables (``None`` when there is nothing yet)."""
    from facevid.jobs.runner import op_for
    from facevid.jobs.stages.base import TableOp

    frames = []
    for spec in ctx.cfg.ordered():
        op = op_for(spec)
        if isinstance(op, TableOp):
            if op.rejections and ctx.lake.exists(op.rejections):
                rej = ctx.lake.read(op.rejections)
                frames.append(rej.select(*[_cast(c) for c in REJECTION_TYPES], F.lit("permanent").alias("kind"),
                                         F.lit(None).cast("int").alias("attempts")))
            continue
        if not ctx.lake.exists(spec.output):
            continue
        out = ctx.lake.read(spec.output)
        if "error_kind" not in out.columns:
            continue
        cols = set(out.columns)
        errs = out.filter(F.col("error").isNotNull()).select(
            F.lit(spec.name).alias("stage"), F.col("stage_version").cast("int").alias("stage_version"),
            F.col(op.key).cast("string").alias("key"),
            _cast("video_id") if "video_id" in cols else _null("video_id"),
            _cast("clip_id") if "clip_id" in cols else _null("clip_id"),
            F.concat(F.lit(spec.name + "."), F.trim(F.substring_index(F.col("error"), ":", 1))).alias("rule"),
            F.col("error_value").alias("value"), F.col("error_threshold").alias("threshold"), "error",
            F.col("processed_at").alias("at"), F.col("error_kind").alias("kind"), _cast("attempts"))
        frames.append(errs)
    if not frames:
        return None
    out = frames[0]
    for frame in frames[1:]:
        out = out.unionByName(frame)
    return out


def register_views(ctx: Any) -> list[str]:
    """Temp views over every table of the lake (``<layer>_<name>``) and the ``quarantine`` view."""
    from facevid.jobs.runner import side_tables

    tables = [s.output for s in ctx.cfg.ordered()] + side_tables(ctx.cfg)
    views = ctx.lake.register_views(tables)
    quarantine = quarantine_frame(ctx)
    if quarantine is not None:
        quarantine.createOrReplaceTempView("quarantine")
        views.append("quarantine")
    return views
