"""Keys in flight: written before a chunk's work starts, removed once the chunk is published.

A row that crashes the engine process (a segfault in a decoder on the embedded engine, where
Python UDFs run on threads of the run's own process) takes the run down with it. The keys of the
chunk it was in are still recorded here, so the next run knows them: it runs those keys first,
each in a crash-isolated worker process (``facevid.jobs.sandbox``), where a crash is pinned to its row
and, after ``resources.max_attempts`` crashes, the row becomes a permanent ``crashed`` error
while every other key completes. Records are Parquet files written by the executors (the keys
never come to the driver) under ``<files root>/_inflight/<table>/<attempt id>/``.
"""

from __future__ import annotations

from typing import Any

from facevid.jobs.lake import list_dirs, remove_tree, view_name


def folder(files_root: str, table: str) -> str:
    return f"{files_root.rstrip('/')}/_inflight/{view_name(table)}"


def record(spark_frame: Any, files_root: str, table: str, attempt: str) -> None:
    """Write the keys of a chunk (a one-column DataFrame) before its work starts."""
    spark_frame.write.mode("overwrite").parquet(f"{folder(files_root, table)}/{attempt}")


def clear(files_root: str, table: str, attempts: list[str]) -> None:
    for attempt in attempts:
        remove_tree(f"{folder(files_root, table)}/{attempt}")


def dead_attempts(files_root: str, table: str) -> list[str]:
    """Attempts recorded and never cleared: their run died (the caller holds the table's lease,
    so no live run can own them)."""
    return list_dirs(folder(files_root, table))


def suspects(spark: Any, files_root: str, table: str, attempts: list[str], key: str) -> list[Any]:
    """The distinct keys of dead attempts. They come to the driver: at most ``commit_rows`` keys
    per chunk that was in flight, a plan-sized list. An attempt whose record is unreadable (the run
    died while writing it) never started work and is skipped."""
    keys: set[Any] = set()
    for attempt in attempts:
        path = f"{folder(files_root, table)}/{attempt}"
        try:
            keys |= {r[0] for r in spark.read.parquet(path).select(key).distinct().collect()}  # bounded: keys of one chunk in flight (<= commit_rows)
        except Exception:  # a half-written record: that attempt never started its work
            continue
    return sorted(keys)
