"""Engine adapter: an op's row function as the function ``mapInPandas`` runs on the executors.

For every input row it calls the op's pure row function (in this thread, or in a crash-isolated
worker process: ``facevid.jobs.sandbox``), turns exceptions into error rows (``facevid.udfs.errors``), and adds
the lineage columns (``facevid.jobs.lineage``). Rows are handled in ``(video_id, key)`` order inside a
batch so that a task's consecutive clips share one download of their video.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pandas as pd

from facevid.jobs.lineage import BOOKKEEPING, INPUT_FP, PRIOR_ATTEMPTS, content_columns, row_fingerprint
from facevid.udfs.errors import RowError, classify, set_deadline

RowFn = Callable[[dict[str, Any]], "dict[str, Any] | list[dict[str, Any]]"]
Outcome = tuple[bool, Any]  # (True, result) or (False, RowError)


@dataclass(frozen=True)
class RowPlan:
    """Everything the executor side needs besides the row function (pickled with it)."""

    key: str
    input_key: str
    columns: dict[str, str]
    passthrough: tuple[str, ...]
    passthrough_types: dict[str, str]
    stage_fp: str
    version: int
    timeout_s: float | None = None
    processes: int = 0
    max_attempts: int = 3

    @property
    def names(self) -> list[str]:
        return list(self.passthrough) + [c for c in self.columns if c not in self.passthrough]

    def schema(self) -> dict[str, str]:
        """Spark types of every output column, in output order."""
        return {**{c: self.passthrough_types[c] for c in self.passthrough}, **self.columns, **BOOKKEEPING}


def run_row(fn: RowFn, rec: dict[str, Any], timeout_s: float | None) -> Outcome:
    """One row through ``fn`` with its deadline; errors are data."""
    set_deadline(timeout_s)
    try:
        return True, fn(rec)
    except Exception as exc:  # errors are data: one bad row never fails the task
        return False, classify(exc)
    finally:
        set_deadline(None)


def _error_of(out: dict[str, Any]) -> RowError | None:
    """A row function may return rows that are errors themselves (e.g. a clip too short)."""
    text = out.get("error")
    if text is None:
        return None
    category, _, detail = str(text).partition(":")
    kind = out.get("error_kind")
    return RowError(category.strip(), detail.strip(), out.get("error_value"), out.get("error_threshold"),
                    None if kind is None else kind == "transient")


def output_rows(plan: RowPlan, rec: dict[str, Any], outcome: Outcome, now: pd.Timestamp) -> list[dict[str, Any]]:
    """The output rows of one input row, with lineage and error columns."""
    ok, result = outcome
    base = {k: rec.get(k) for k in plan.passthrough}
    if ok:
        outs = [{**base, **o} for o in (result if isinstance(result, list) else [result])]
        errs = [_error_of(o) for o in outs]
    else:
        key = rec.get(plan.key) if plan.key in rec else f"{rec.get(plan.input_key)}_err"
        outs, errs = [{**base, plan.key: key}], [result]
    cols = content_columns(plan.key, plan.names) + ["error"]
    rows = []
    for out, err in zip(outs, errs, strict=True):
        row = {c: out.get(c) for c in plan.names}
        row.update(error=None if err is None else err.text, error_kind=None if err is None else err.kind,
                   error_value=None if err is None else err.value,
                   error_threshold=None if err is None else err.threshold)
        row["fingerprint"] = row_fingerprint(row, cols)
        row.update(attempts=int(rec.get(PRIOR_ATTEMPTS) or 0) + 1, input_fp=rec.get(INPUT_FP),
                   stage_fp=plan.stage_fp, stage_version=plan.version, processed_at=now)
        rows.append(row)
    return rows


def map_function(fn: RowFn, plan: RowPlan) -> Callable[[Iterator[pd.DataFrame]], Iterator[pd.DataFrame]]:
    """The ``mapInPandas`` function of a row stage."""
    schema = plan.schema()
    order = [c for c in ("video_id", plan.input_key) if c]

    def results(records: list[dict[str, Any]]) -> list[Outcome]:
        if getattr(fn, "batched", False):  # a BatchOp: the whole batch at once (facevid.jobs.batching)
            return fn(records)
        if plan.processes > 0:
            from facevid.jobs.sandbox import map_isolated

            return map_isolated(fn, records, plan.processes, plan.timeout_s, plan.max_attempts)
        return [run_row(fn, rec, plan.timeout_s) for rec in records]

    def run(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        for pdf in batches:
            by = [c for c in order if c in pdf.columns]
            records = (pdf.sort_values(by, kind="stable") if by else pdf).to_dict("records")
            now = pd.Timestamp.now(tz="UTC")
            rows: list[dict[str, Any]] = []
            for rec, outcome in zip(records, results(records), strict=True):
                rows += output_rows(plan, rec, outcome, now)
            yield conform(pd.DataFrame(rows, columns=list(schema)), schema)

    return run


_NUMERIC = {"double": "float64", "float": "float64", "int": "Int64", "bigint": "Int64", "long": "Int64",
            "smallint": "Int64", "boolean": "boolean"}


def conform(frame: pd.DataFrame, types: dict[str, str]) -> pd.DataFrame:
    """Give each declared column a dtype Arrow converts to its Spark type even when every value
    is missing (an all-error batch has all-NaN float columns, which Arrow refuses as strings)."""
    for name, typ in types.items():
        col = frame[name]
        if typ in _NUMERIC:
            frame[name] = (col.astype("boolean") if typ == "boolean" else pd.to_numeric(col)).astype(_NUMERIC[typ])
        elif typ == "timestamp":
            frame[name] = pd.to_datetime(col, utc=True)
        else:
            frame[name] = col.astype(object).where(col.notna(), None)
    return frame
