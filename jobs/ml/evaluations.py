"""``meta.evaluations``: every evaluation's results, appended to a Delta table, comparable across runs.

One row per (run, metric): the model (URI, registered name/version, backend, mode), the data (table,
Delta URI and version, split, evaluation set, videos scored), the settings that make numbers comparable
(resolution, frames, sampling steps, guidance, each extractor's name and weights hash) and the value.
Long format, so a new metric adds rows, not columns; the README's SQL pivots it into the paper's
Table 2. Appends go through delta-rs on a path lake while holding the table's lease (the same
compare-and-swap lease the stages use, so two evaluations never commit at once), or through the
active Spark session on a Unity Catalog lake (Databricks).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa

from facevid.jobs.lake import Lake, storage_options

TABLE = "meta.evaluations"
SCHEMA = pa.schema([
    ("run_id", pa.string()), ("evaluated_at", pa.timestamp("us", tz="UTC")), ("model_uri", pa.string()),
    ("model_name", pa.string()), ("model_version", pa.string()), ("backend", pa.string()), ("mode", pa.string()),
    ("dataset", pa.string()), ("table_uri", pa.string()), ("table_version", pa.int64()), ("split", pa.string()),
    ("eval_set", pa.string()), ("videos", pa.int64()), ("resolution", pa.int64()), ("metric", pa.string()),
    ("value", pa.float64()), ("n", pa.int64()), ("extractor", pa.string()), ("settings", pa.string()),
])


def evaluation_rows(run: dict[str, Any], metrics: dict[str, dict[str, Any]]) -> pa.Table:
    """Rows for ``metrics`` (``{name: {value, n, extractor}}``) of one evaluation ``run`` (the shared
    columns; ``settings`` becomes JSON)."""
    now = datetime.now(UTC)
    rows = [{**{k: run.get(k) for k in SCHEMA.names if k not in ("evaluated_at", "metric", "value", "n",
                                                                 "extractor", "settings")},
             "evaluated_at": now, "metric": name, "value": None if m.get("value") is None else float(m["value"]),
             "n": m.get("n"), "extractor": m.get("extractor"), "settings": json.dumps(run.get("settings") or {},
                                                                                      sort_keys=True, default=str)}
            for name, m in sorted(metrics.items())]
    return pa.Table.from_pylist(rows, schema=SCHEMA)


def markdown(rows: list[dict[str, Any]]) -> str:
    """A GitHub-style table of ``rows`` (floats to 4 significant digits)."""
    cols = list(rows[0]) if rows else []
    cell = lambda v: f"{v:.4g}" if isinstance(v, float) else str(v)  # noqa: E731
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    return "\n".join(lines + ["| " + " | ".join(cell(r.get(c)) for c in cols) + " |" for r in rows]) + "\n"


def append(lake: str, files_root: str, rows: pa.Table, run_id: str, wait_s: float = 120.0) -> int | None:
    """Append ``rows`` to ``meta.evaluations``; returns the new Delta version (None on Unity Catalog)."""
    if lake.startswith("uc:"):
        from pyspark.sql import SparkSession

        spark = SparkSession.getActiveSession()
        if spark is None:
            raise RuntimeError(f"{TABLE} on {lake} is written through Spark: run on a Databricks cluster")
        spark.createDataFrame(rows.to_pandas()).write.format("delta").mode("append").saveAsTable(
            f"{lake[3:]}.meta_evaluations")
        return None
    from deltalake import DeltaTable, write_deltalake

    from facevid.jobs.lease import Lease, lease_store

    path = Lake(None, lake).delta_path(TABLE)
    with Lease(lease_store(files_root), "meta_evaluations", run_id, command="evaluate") as lease:
        lease.acquire(wait_s)
        write_deltalake(path, rows, mode="append", schema_mode="merge", storage_options=storage_options(path))
        return DeltaTable(path, storage_options=storage_options(path)).version()
