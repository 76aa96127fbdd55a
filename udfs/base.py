"""The contract every UDF follows: pure per-row functions, errors as data, per-thread model cache.

A UDF module exposes a pure function over one input row (a dict) that returns one output dict
(or a list of them for one-to-many stages) and declares its output columns as Spark SQL types.
`batch_udf` turns it into the iterator-of-pandas function that `mapInPandas` runs; any exception
raised for a row becomes that row's `error` ("<category>: <detail>"), never a failed task.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import pandas as pd


class StageError(Exception):
    """A per-row failure with a short machine-friendly category (e.g. ``decode``, ``not_video``)."""

    def __init__(self, category: str, detail: str) -> None:
        super().__init__(f"{category}: {detail}")
        self.category = category
        self.detail = detail


def error_text(exc: BaseException) -> str:
    """Render an exception as the ``error`` column value: ``"<category>: <detail>"``."""
    if isinstance(exc, StageError):
        return f"{exc.category}: {exc.detail}"[:2000]
    detail = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {detail}"[:2000]


def validate(prefix: str, checks: list[tuple[bool, str]]) -> None:
    """Raise ``ValueError("<prefix>.<message>")`` for the first failed ``(ok, message)`` check
    (params dataclasses call it from ``__post_init__``; config loading turns it into a clear error)."""
    for ok, message in checks:
        if not ok:
            raise ValueError(f"{prefix}.{message}")


RowFn = Callable[[dict[str, Any]], "dict[str, Any] | list[dict[str, Any]]"]


def batch_udf(
    fn: RowFn,
    columns: dict[str, str],
    passthrough: tuple[str, ...],
    version: int,
    processes: int = 0,
) -> Callable[[Iterator[pd.DataFrame]], Iterator[pd.DataFrame]]:
    """Wrap a per-row function as a ``mapInPandas`` function.

    ``passthrough`` input columns are copied to every output row; ``columns`` are the function's
    outputs (missing keys become null). Adds ``error``, ``stage_version`` and ``processed_at``.
    ``processes > 0`` runs the rows of each batch in a worker process pool (see ``udfs.pool``).
    """
    names = list(passthrough) + [c for c in columns if c not in passthrough]

    def results(records: list[dict[str, Any]]) -> list[tuple[bool, Any]]:
        if processes > 0:
            from udfs.pool import map_rows

            return map_rows(fn, records, processes)
        out: list[tuple[bool, Any]] = []
        for rec in records:
            try:
                out.append((True, fn(rec)))
            except Exception as exc:  # errors are data: one bad row never fails the task
                out.append((False, error_text(exc)))
        return out

    def run(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        for pdf in batches:
            records = pdf.to_dict("records")
            rows: list[dict[str, Any]] = []
            for rec, (ok, result) in zip(records, results(records), strict=True):
                base = {k: rec.get(k) for k in passthrough}
                if not ok:
                    rows.append({**base, "error": result})
                    continue
                for out in result if isinstance(result, list) else [result]:
                    rows.append({**base, **out, "error": out.get("error")})
            frame = conform(pd.DataFrame(rows, columns=names + ["error"]), columns)
            frame["stage_version"] = version
            frame["processed_at"] = pd.Timestamp.now(tz="UTC")
            yield frame

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
        else:
            frame[name] = col.astype(object).where(col.notna(), None)
    return frame


_cache = threading.local()


def cached_model(key: tuple, factory: Callable[[], Any]) -> Any:
    """Load a model once per worker thread (Sail runs UDFs on threads; OpenCV nets are not
    thread-safe), keyed by e.g. ``(name, weights_path, device)``."""
    models = getattr(_cache, "models", None)
    if models is None:
        models = _cache.models = {}
    if key not in models:
        models[key] = factory()
    return models[key]
