"""The review page's only store, the lake: ``gold.review_tasks`` read and ``review.verdicts`` appended
with delta-rs on a path lake (a local folder or ``s3://``).

Tasks are re-read whenever the tasks table's Delta version changes (the review stage rebuilt it);
the fields with a verdict are re-read whenever the verdicts table's version changes (another page
server appended). Each submitted task is ONE append commit, made while holding the verdicts
table's lease (the compare-and-swap lease the stages use, so two page servers, or a maintenance
job, never commit at once) and, inside this process, a lock; ``append`` returns only once the
commit is in the Delta log, so a page that got its answer has a durable verdict.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

import pyarrow as pa

from facevid.jobs.config import ConfigError
from facevid.jobs.lake import Lake, storage_options
from facevid.udfs.curation.review_schema import VERDICT_SCHEMA

TASKS = "gold.review_tasks"
VERDICTS = "review.verdicts"


def table_path(lake: str, table: str) -> str:
    """The delta-rs path of ``table`` in a path lake; a ``uc:`` lake is a ``ConfigError``."""
    if lake.startswith("uc:"):
        raise ConfigError(f"facevid review works on a path lake (a directory or s3://), not {lake}: the page is a "
                          "local tool; pass --lake with the lake's storage path")
    return Lake(None, lake).delta_path(table)


class _Table:
    """One Delta table followed by version (None until it exists)."""

    def __init__(self, path: str) -> None:
        self.path, self.options = path, storage_options(path)
        self.dt: Any = None

    def version(self) -> int | None:
        from deltalake import DeltaTable

        if self.dt is None:
            if not DeltaTable.is_deltatable(self.path, storage_options=self.options):
                return None
            self.dt = DeltaTable(self.path, storage_options=self.options)
        else:
            self.dt.update_incremental()
        return int(self.dt.version())

    def rows(self, columns: list[str] | None = None) -> list[dict[str, Any]]:
        return self.dt.to_pyarrow_table(columns=columns).to_pylist()


class ReviewStore:
    """Tasks and verdicts of one lake for one page server (thread-safe)."""

    def __init__(self, lake: str, files_root: str, server_id: str, wait_s: float = 30.0) -> None:
        self.tasks_table = _Table(table_path(lake, TASKS))
        self.verdicts_table = _Table(table_path(lake, VERDICTS))
        self.files_root, self.server_id, self.wait_s = files_root, server_id, wait_s
        self._mu = threading.Lock()       # caches
        self._append = threading.Lock()   # one commit at a time from this process
        self.tasks_version: int | None = None
        self._tasks: dict[str, dict[str, Any]] = {}
        self._verdicts_version: int | None = None
        self._reviewed: dict[str, set[str]] = {}

    def check(self) -> None:
        """A clear error when there are no tasks to review."""
        if self.tasks_table.version() is None:
            raise ConfigError(f"no {TASKS} table at {self.tasks_table.path}: run the pipeline's review tasks stage "
                              "first (facevid run)")

    def refresh(self) -> tuple[int, dict[str, dict[str, Any]], dict[str, set[str]]]:
        """``(tasks version, tasks by id, task id -> fields with a verdict)``, re-read where changed."""
        with self._mu:
            version = self.tasks_table.version()
            if version is None:
                raise ConfigError(f"{TASKS} is gone from {self.tasks_table.path}")
            if version != self.tasks_version:
                self._tasks = {r["task_id"]: r for r in self.tasks_table.rows()}
                self.tasks_version = version
            seen = self.verdicts_table.version()
            if seen is not None and seen != self._verdicts_version:
                reviewed: dict[str, set[str]] = {}
                for r in self.verdicts_table.rows(["task_id", "field"]):
                    reviewed.setdefault(r["task_id"], set()).add(r["field"])
                self._reviewed, self._verdicts_version = reviewed, seen
            return self.tasks_version, self._tasks, self._reviewed

    def append(self, rows: list[Mapping[str, Any]]) -> int:
        """Append one task's verdict rows in one commit (the table is created by the first); returns
        the verdicts table's new version once the commit is durable. Raises ``LeaseHeld`` when
        another writer keeps the table's lease past ``wait_s``."""
        from deltalake import DeltaTable, write_deltalake

        from facevid.jobs.lease import Lease, lease_store

        data = pa.Table.from_pylist([dict(r) for r in rows], schema=VERDICT_SCHEMA)
        path, options = self.verdicts_table.path, self.verdicts_table.options
        with self._append:
            with Lease(lease_store(self.files_root), VERDICTS.replace(".", "_"), self.server_id,
                       command="review") as lease:
                lease.acquire(self.wait_s)
                write_deltalake(path, data, mode="append", storage_options=options)
                version = int(DeltaTable(path, storage_options=options).version())
            with self._mu:
                if self._verdicts_version == version - 1 or (self._verdicts_version is None and version == 0):
                    for r in rows:  # only our commit happened since the last read: no re-read needed
                        self._reviewed.setdefault(r["task_id"], set()).add(r["field"])
                    self._verdicts_version = version
        return version
