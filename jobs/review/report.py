"""``facevid review --report``: per labelling batch, does it pass ISO 2859-1 acceptance sampling, and
which fields do reviewers correct most (``facevid.udfs.curation.acceptance``)."""

from __future__ import annotations

from typing import Any

import pandas as pd

from facevid.udfs.curation.acceptance import batch_report, field_failures, markdown

TASKS, VERDICTS = "gold.review_tasks", "review.verdicts"
_TASK_READ = ("task_id", "kind", "batch_id", "clip_id", "fields", "sample_rank", "lot_size")
_VERDICT_READ = ("verdict_id", "clip_id", "field", "verdict", "reviewed_at")


def sampling_settings(cfg: Any, aql: float | None, level: str | None) -> tuple[float, str]:
    """The AQL and inspection level: the flags, else the review_tasks stage's params (else 1.0, II)."""
    spec = cfg.producer(TASKS)
    params = spec.params if spec is not None else None
    return (float(aql if aql is not None else getattr(params, "aql", 1.0)),
            str(level or getattr(params, "inspection_level", "II")))


def review_report(ctx: Any, aql: float | None = None, level: str | None = None) -> tuple[str, pd.DataFrame]:
    """The report as Markdown and as a frame (one row per batch)."""
    if not ctx.lake.exists(TASKS):
        raise ValueError(f"{TASKS} does not exist in {ctx.cfg.lake}: run `facevid run` (stage review_tasks) first")
    aql, level = sampling_settings(ctx.cfg, aql, level)
    tasks = ctx.current(TASKS).select(*_TASK_READ).toPandas()  # bounded: 7 short columns per task (3 per gold clip)
    if ctx.lake.exists(VERDICTS):
        verdicts = ctx.current(VERDICTS).select(*_VERDICT_READ).toPandas()  # bounded: 5 short columns per verdict
    else:
        verdicts = pd.DataFrame(columns=list(_VERDICT_READ))
    report = batch_report(tasks, verdicts, aql, level)
    return markdown(report, field_failures(tasks, verdicts)), report
