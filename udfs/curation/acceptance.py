"""Acceptance sampling of review batches: ISO 2859-1 single sampling over ``gold.review_tasks`` and
``review.verdicts`` (pure pandas; the report behind ``facevid review --report``).

What is counted, precisely:

- **Lot**: one labelling batch (``batch_id``); its items are review tasks (one clip seen one way).
  The lot size N is the batch's ``lot_size`` column (else the number of its task rows).
- **Plan**: ``single_plan(N, aql, level, inspection)`` gives the code letter, n, Ac and Re.
- **Sample**: the batch's tasks with ``sample_rank < n``, the first n of the seeded random order
  (the rule the review_tasks stage uses for ``in_sample``; computing it here lets the report's AQL
  and level decide, and the first n of that order are a simple random sample for any n).
- **Latest verdict**: per ``(clip_id, field)`` the verdict with the latest ``reviewed_at`` wins (ties
  and missing times: the row appended later wins), so a later ``accept`` clears an earlier
  ``correct`` and the reverse. Only the fields a task lists count for it.
- **Inspected**: a sampled task whose every field has a verdict.
- **Defect** (ISO 2859-1 "nonconforming item"; the AQL is in percent nonconforming): an inspected
  task at least one of whose fields' latest verdict is ``correct`` (the model's value was wrong) or
  ``reject`` (the restored file was refused). A task with three corrected fields is one
  nonconforming item, not three nonconformities; a task not yet fully reviewed is not counted.
- **Decision**: ``reject`` as soon as defects >= Re, even before n tasks are inspected (no further
  inspection can undo it); ``accept`` once all n are inspected with defects <= Ac; otherwise
  ``incomplete (k of n inspected)``.

``field_failures`` ranks fields by how often reviewers corrected them, over every reviewed task of a
batch (sampled or not: flagged clips are reviewed first, so these rates lean high).
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pandas as pd

from facevid.udfs.curation.review_schema import VERDICTS
from facevid.udfs.curation.sampling import single_plan

FAILING = ("correct", "reject")
REPORT_COLUMNS = ["batch_id", "kind", "lot_size", "aql", "level", "inspection", "code_letter", "plan_letter",
                  "n", "ac", "re", "inspected", "defects", "decision"]
FAILURE_COLUMNS = ["batch_id", "kind", "field", "reviewed", "corrected", "correction_rate"]
_TASK_COLUMNS = ("task_id", "kind", "batch_id", "clip_id", "fields", "sample_rank")
_VERDICT_COLUMNS = ("clip_id", "field", "verdict")


def latest_verdicts(verdicts: pd.DataFrame) -> pd.DataFrame:
    """One row per ``(clip_id, field)``: its latest verdict (by ``reviewed_at``, then ``verdict_id``
    as gold's Spark window orders them, then append order)."""
    _require(verdicts, _VERDICT_COLUMNS, "verdicts")
    bad = sorted(set(verdicts["verdict"].dropna().astype(str)) - set(VERDICTS) | (
        {"<null>"} if verdicts["verdict"].isna().any() else set()))
    if bad:
        raise ValueError(f"verdicts.verdict: unknown value(s) {', '.join(bad)}; expected {', '.join(VERDICTS)}")
    v = verdicts.reset_index(drop=True)
    order = [c for c in ("reviewed_at", "verdict_id") if c in v.columns]
    if order:
        v = v.sort_values(order, kind="mergesort", na_position="first")
    return v.groupby(["clip_id", "field"], sort=False, as_index=False).tail(1).reset_index(drop=True)


def task_fields(tasks: pd.DataFrame, verdicts: pd.DataFrame) -> pd.DataFrame:
    """One row per (task, field it lists) with that field's latest ``verdict`` (null if unreviewed)."""
    _require(tasks, _TASK_COLUMNS, "tasks")
    rows = []
    for t in tasks.itertuples(index=False):
        fields = _as_list(t.fields)
        if not fields:
            raise ValueError(f"tasks.fields: task {t.task_id} lists no field to review")
        rows += [(t.batch_id, t.kind, t.task_id, t.clip_id, t.sample_rank, f) for f in fields]
    cols = ["batch_id", "kind", "task_id", "clip_id", "sample_rank", "field"]
    out = pd.DataFrame(rows, columns=cols)
    latest = latest_verdicts(verdicts)[["clip_id", "field", "verdict"]]
    return out.merge(latest, on=["clip_id", "field"], how="left")


def batch_report(tasks: pd.DataFrame, verdicts: pd.DataFrame, aql: float, level: str = "II",
                 inspection: str = "normal") -> pd.DataFrame:
    """One row per batch (``REPORT_COLUMNS``): the ISO 2859-1 plan for its lot size and where its
    sample stands: tasks inspected, defects found and the decision (see the module docstring)."""
    per_field = task_fields(tasks, verdicts)
    per_field["failed"] = per_field["verdict"].isin(FAILING)
    per_field["seen"] = per_field["verdict"].notna()
    per_task = per_field.groupby(["batch_id", "task_id"], sort=False).agg(
        sample_rank=("sample_rank", "first"), complete=("seen", "all"), defective=("failed", "any"))
    rows = []
    for batch_id, group in tasks.groupby("batch_id", sort=True):
        lot = _lot_size(batch_id, group)
        plan = single_plan(lot, aql, level, inspection)
        outcome = per_task.loc[batch_id]
        if outcome["sample_rank"].isna().any():
            raise ValueError(f"tasks.sample_rank: batch {batch_id} has tasks without a sample rank")
        sampled = outcome[outcome["sample_rank"].astype(int) < plan.sample_size]
        inspected = sampled[sampled["complete"]]
        defects = int(inspected["defective"].sum())
        if defects >= plan.re:
            decision = "reject"
        elif len(inspected) >= plan.sample_size:
            decision = "accept"
        else:
            decision = f"incomplete ({len(inspected)} of {plan.sample_size} inspected)"
        rows.append([batch_id, "+".join(sorted(group["kind"].astype(str).unique())), lot, plan.aql, plan.level,
                     plan.inspection, plan.code_letter, plan.letter, plan.sample_size, plan.ac, plan.re,
                     len(inspected), defects, decision])
    return pd.DataFrame(rows, columns=REPORT_COLUMNS)


def field_failures(tasks: pd.DataFrame, verdicts: pd.DataFrame) -> pd.DataFrame:
    """Per batch and field (``FAILURE_COLUMNS``): reviewed tasks, how many were corrected (a
    ``correct`` or, for restorations, a ``reject`` verdict) and the rate; within a batch the fields
    that fail most come first."""
    per_field = task_fields(tasks, verdicts)
    seen = per_field[per_field["verdict"].notna()].assign(failed=lambda d: d["verdict"].isin(FAILING))
    if seen.empty:
        return pd.DataFrame(columns=FAILURE_COLUMNS)
    out = seen.groupby(["batch_id", "kind", "field"], as_index=False).agg(
        reviewed=("failed", "size"), corrected=("failed", "sum"))
    out["corrected"] = out["corrected"].astype(int)
    out["correction_rate"] = out["corrected"] / out["reviewed"]
    out = out.sort_values(["batch_id", "correction_rate", "corrected", "field"],
                          ascending=[True, False, False, True], kind="mergesort")
    return out[FAILURE_COLUMNS].reset_index(drop=True)


def markdown(report: pd.DataFrame, failures: pd.DataFrame | None = None, top: int = 3) -> str:
    """The report as Markdown: one table row per batch and, under it, each batch's ``top`` most
    corrected fields (those corrected at least once)."""
    if report.empty:
        return "No review batches.\n"
    first = report.iloc[0]
    head = f"Acceptance sampling: ISO 2859-1 single sampling, {first['inspection']} inspection, " \
           f"level {first['level']}, AQL {first['aql']:g} (% nonconforming tasks)\n\n"
    table = pd.DataFrame({
        "batch": report["batch_id"], "kind": report["kind"], "lot": report["lot_size"],
        "plan": [f"{r.code_letter}" + (f"->{r.plan_letter}" if r.plan_letter != r.code_letter else "")
                 + f" n={r.n} Ac {r.ac} Re {r.re}" for r in report.itertuples()],
        "inspected": report["inspected"], "defects": report["defects"], "decision": report["decision"]})
    text = head + _md_table(table)
    if failures is not None and not failures.empty:
        lines = []
        for batch_id, group in failures[failures["corrected"] > 0].groupby("batch_id", sort=True):
            worst = ", ".join(f"{r.field} {r.corrected}/{r.reviewed} ({r.correction_rate:.0%})"
                              for r in group.head(top).itertuples())
            lines.append(f"- {batch_id}: {worst}")
        if lines:
            text += "\nFields corrected most (all reviewed tasks):\n\n" + "\n".join(lines) + "\n"
    return text


def _md_table(df: pd.DataFrame) -> str:
    cells = [[str(c) for c in df.columns]] + [[str(v) for v in row] for row in df.itertuples(index=False)]
    widths = [max(len(r[i]) for r in cells) for i in range(len(df.columns))]
    fmt = ["| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |" for r in cells]
    fmt.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(fmt) + "\n"


def _lot_size(batch_id: Any, group: pd.DataFrame) -> int:
    rows = len(group)
    if "lot_size" not in group.columns or group["lot_size"].isna().all():
        return rows
    sizes = sorted({int(v) for v in group["lot_size"].dropna()})
    if len(sizes) != 1 or sizes[0] < rows:
        raise ValueError(f"tasks.lot_size: batch {batch_id} has lot sizes {sizes} for {rows} task rows "
                         "(one value, at least the number of tasks, expected)")
    return sizes[0]


def _as_list(value: Any) -> list[str]:
    """A task's ``fields``: an array (Arrow/Delta), a list, or a JSON list in a string."""
    if not isinstance(value, list | tuple | np.ndarray | str) and pd.isna(value):
        return []
    if isinstance(value, str):
        text = value.strip()
        parsed = json.loads(text) if text.startswith("[") else [text] if text else []
        return [str(v) for v in parsed]
    return [str(v) for v in value]


def _require(frame: pd.DataFrame, columns: tuple[str, ...], name: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"{name}: missing column(s) {', '.join(missing)}")
