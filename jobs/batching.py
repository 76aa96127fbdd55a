"""The executor side of a ``BatchOp``: prefetch, batch, one model per process, 1:1 results.

``batch_runner(op, spec)`` returns the function the adapter calls with a task's rows (it is
marked ``batched``): a prefetch thread runs ``op.prepare`` on the rows ahead of the model (CPU
decode overlaps model work), prepared rows are grouped into batches of ``resources.batch`` and
given to ``op.infer`` with the process's model, whose result count is checked; a failing batch is
retried one row at a time so that errors stay data on the row that caused them.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from typing import Any

from facevid.udfs.errors import StageError, classify, set_deadline
from facevid.udfs.models.runtime import pick_device, shared_model

Outcome = tuple[bool, Any]
_DONE = object()


def prefetch(records: list[dict[str, Any]], prepare: Callable[[dict[str, Any]], Any], depth: int,
             timeout_s: float | None) -> Iterator[tuple[int, Outcome]]:
    """``(index, (ok, item_or_error))`` for each record, prepared ``depth`` rows ahead in a thread."""
    out: queue.Queue = queue.Queue(maxsize=max(1, depth))

    def work() -> None:
        for i, rec in enumerate(records):
            set_deadline(timeout_s)
            try:
                out.put((i, (True, prepare(rec))))
            except Exception as exc:  # errors are data
                out.put((i, (False, classify(exc))))
            finally:
                set_deadline(None)
        out.put(_DONE)

    thread = threading.Thread(target=work, name="facevid-prefetch", daemon=True)
    thread.start()
    while (item := out.get()) is not _DONE:
        yield item
    thread.join()


def batch_runner(op: Any, spec: Any) -> Callable[[list[dict[str, Any]]], list[Outcome]]:
    params, size = spec.params, spec.resources.batch
    gpu, timeout_s = spec.resources.gpu, spec.resources.timeout_s or None
    requested = getattr(params, "device", "auto") or "auto"

    def infer(model: Any, lock: Any, items: list[Any]) -> list[Any]:
        with lock:
            results = op.infer(model, items, params)
        if len(results) != len(items):
            raise StageError("bug", f"{op.name}.infer returned {len(results)} results for {len(items)} rows")
        return list(results)

    def run(records: list[dict[str, Any]]) -> list[Outcome]:
        device = pick_device(gpu, requested)
        model, lock = shared_model(op.model_key(spec, device), lambda: op.load(spec, device))
        outcomes: list[Outcome | None] = [None] * len(records)

        def flush(batch: list[tuple[int, Any]]) -> None:
            if not batch:
                return
            try:
                for (i, _), result in zip(batch, infer(model, lock, [it for _, it in batch]), strict=True):
                    outcomes[i] = (True, result)
            except Exception:  # find the row that fails: one at a time
                for i, item in batch:
                    try:
                        outcomes[i] = (True, infer(model, lock, [item])[0])
                    except Exception as exc:
                        outcomes[i] = (False, classify(exc))

        batch: list[tuple[int, Any]] = []
        for i, (ok, item) in prefetch(records, lambda r: op.prepare(r, params), 2 * size, timeout_s):
            if not ok:
                outcomes[i] = (False, item)
                continue
            batch.append((i, item))
            if len(batch) >= size:
                flush(batch)
                batch = []
        flush(batch)
        return [o if o is not None else (False, classify(RuntimeError("row lost"))) for o in outcomes]

    run.batched = True  # type: ignore[attr-defined]
    return run
