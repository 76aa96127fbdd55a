"""A per-worker process pool for row functions whose work holds the GIL.

Sail runs Python UDFs on threads of its own process: OpenCV/PyAV calls release the GIL and scale
with partitions, pure-Python parts do not. With ``resources.processes: N`` a task sends its rows
to N spawned worker processes instead (the row function travels once, cloudpickled, in the pool
initializer; each worker keeps its own model cache). Pools are created lazily and reused for the
life of the engine process, one per (row function, size).
"""

from __future__ import annotations

import atexit
import hashlib
import multiprocessing as mp
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor
from typing import Any

_pools: dict[tuple[str, int], ProcessPoolExecutor] = {}
_lock = threading.Lock()
_fn: Callable[[dict[str, Any]], Any] | None = None


def _pickle(obj: Any) -> bytes:
    from pyspark import cloudpickle  # by value, so closures and test-local functions travel too

    return cloudpickle.dumps(obj)


def _init(fn_bytes: bytes) -> None:
    import pickle

    global _fn
    _fn = pickle.loads(fn_bytes)


def _call(rec: dict[str, Any]) -> tuple[bool, Any]:
    """Run the worker's row function; exceptions come back as values (errors are data)."""
    from udfs.base import error_text

    assert _fn is not None
    try:
        return True, _fn(rec)
    except Exception as exc:
        return False, error_text(exc)


def _pool(fn: Callable[[dict[str, Any]], Any], processes: int) -> ProcessPoolExecutor:
    fn_bytes = _pickle(fn)
    key = (hashlib.sha1(fn_bytes).hexdigest(), processes)
    with _lock:
        pool = _pools.get(key)
        if pool is None:
            # spawn, never fork: the engine process is multi-threaded (Sail, gRPC, OpenCV)
            pool = ProcessPoolExecutor(processes, mp_context=mp.get_context("spawn"),
                                       initializer=_init, initargs=(fn_bytes,))
            _pools[key] = pool
        return pool


def map_rows(fn: Callable[[dict[str, Any]], Any], records: Iterable[dict[str, Any]],
             processes: int) -> list[tuple[bool, Any]]:
    """``[(ok, result_or_error_text)]`` for each record, computed in a pool of ``processes``."""
    return list(_pool(fn, processes).map(_call, list(records)))


@atexit.register
def shutdown() -> None:
    with _lock:
        for pool in _pools.values():
            pool.shutdown(wait=False, cancel_futures=True)
        _pools.clear()
