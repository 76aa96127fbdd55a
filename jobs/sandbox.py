"""Crash-isolated row execution: row functions in spawned worker processes, one row at a time.

Used when a stage declares ``resources.processes: N`` (GIL-bound work, or a native library that
may crash) and for rows that were in flight when an earlier run died (``facevid.jobs.inflight``). Each
worker runs one row at a time, so a native crash (segfault, ``os._exit``, the OOM killer) is
pinned to exactly that row: the worker is restarted and the row retried, up to
``resources.max_attempts`` times in all, after which the row is a permanent ``crashed`` error
while the rest of the batch completes. A row past ``resources.timeout_s`` (plus a grace period
for the cooperative deadline to fire first) has its worker killed and becomes a transient
``timeout`` error. Workers are spawned (never forked: the engine process is multi-threaded),
keep their own model caches, and are reused across tasks for the same row function.
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import multiprocessing as mp
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from facevid.udfs.errors import RowError

GRACE_S = 5.0
_idle: dict[str, list[_Worker]] = {}
_all: list[_Worker] = []
_lock = threading.Lock()


def _serve(conn: Any, fn_bytes: bytes, timeout_s: float | None) -> None:
    import pickle

    from facevid.jobs.adapter import run_row

    fn = pickle.loads(fn_bytes)
    while True:
        try:
            rec = conn.recv()
        except EOFError:
            return
        if rec is None:
            return
        conn.send(run_row(fn, rec, timeout_s))


class _Worker:
    def __init__(self, fn_bytes: bytes, timeout_s: float | None) -> None:
        ctx = mp.get_context("spawn")
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_serve, args=(child, fn_bytes, timeout_s), daemon=True)
        self.proc.start()
        child.close()

    def call(self, rec: dict[str, Any], timeout_s: float | None) -> tuple[bool, Any] | RowError:
        """The row's outcome, or a ``RowError`` when the worker died or hung (it is then dead)."""
        try:
            self.conn.send(rec)
            if self.conn.poll(None if timeout_s is None else timeout_s + GRACE_S):
                return self.conn.recv()
            self.kill()
            return RowError("timeout", f"row ran longer than {timeout_s:g} s (resources.timeout_s); worker killed")
        except (EOFError, OSError, BrokenPipeError):
            self.proc.join(5)
            return RowError("worker_lost", f"worker process died (exit code {self.proc.exitcode})")

    @property
    def alive(self) -> bool:
        return self.proc.is_alive()

    def kill(self) -> None:
        if self.proc.is_alive():
            self.proc.kill()
        self.proc.join(5)
        self.conn.close()


def _pickle(obj: Any) -> bytes:
    from pyspark import cloudpickle  # by value, so closures and test-local functions travel too

    return cloudpickle.dumps(obj)


def _checkout(key: str, fn_bytes: bytes, timeout_s: float | None) -> _Worker:
    with _lock:
        pool = _idle.setdefault(key, [])
        while pool:
            worker = pool.pop()
            if worker.alive:
                return worker
    worker = _Worker(fn_bytes, timeout_s)
    with _lock:
        _all.append(worker)
    return worker


def _checkin(key: str, worker: _Worker) -> None:
    if worker.alive:
        with _lock:
            _idle.setdefault(key, []).append(worker)


def run_isolated(key: str, fn_bytes: bytes, rec: dict[str, Any], timeout_s: float | None,
                 max_attempts: int) -> tuple[bool, Any]:
    """One row in a worker, retried on a fresh worker while it kills its worker."""
    crashes: list[str] = []
    while True:
        worker = _checkout(key, fn_bytes, timeout_s)
        outcome = worker.call(rec, timeout_s)
        if not isinstance(outcome, RowError):
            _checkin(key, worker)
            return outcome
        worker.kill()
        if outcome.category != "worker_lost":
            return False, outcome
        crashes.append(outcome.detail)
        if len(crashes) >= max_attempts:
            return False, RowError("crashed", f"the row killed its worker {len(crashes)} times ({crashes[-1]})")


def map_isolated(fn: Callable[[dict[str, Any]], Any], records: list[dict[str, Any]], processes: int,
                 timeout_s: float | None, max_attempts: int) -> list[tuple[bool, Any]]:
    """``[(ok, result_or_RowError)]`` for each record, ``processes`` rows at a time."""
    fn_bytes = _pickle(fn)
    key = hashlib.sha1(fn_bytes).hexdigest()
    with ThreadPoolExecutor(max(1, processes)) as pool:
        return list(pool.map(lambda rec: run_isolated(key, fn_bytes, rec, timeout_s, max_attempts), records))


@atexit.register
def shutdown() -> None:
    with _lock:
        workers = list(_all)
        _all.clear()
        _idle.clear()
    for worker in workers:
        with contextlib.suppress(OSError, BrokenPipeError):
            worker.conn.send(None)
        worker.kill()
