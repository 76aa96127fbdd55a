"""The contract every UDF follows: pure per-row functions, errors as data, a model cache.

A UDF module exposes a pure function over one input row (a dict) that returns one output dict
(or a list of them for one-to-many stages) and declares its output columns as Spark SQL types.
The job layer's adapter (``facevid.jobs.adapter``) runs it in ``mapInPandas``; an exception raised for
a row becomes that row's ``error`` (``facevid.udfs.errors``), never a failed task.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from facevid.udfs.errors import StageError, error_text

__all__ = ["RowFn", "StageError", "cached_model", "error_text", "validate"]


def validate(prefix: str, checks: list[tuple[bool, str]]) -> None:
    """Raise ``ValueError("<prefix>.<message>")`` for the first failed ``(ok, message)`` check
    (params dataclasses call it from ``__post_init__``; config loading turns it into a clear error)."""
    for ok, message in checks:
        if not ok:
            raise ValueError(f"{prefix}.{message}")


RowFn = Callable[[dict[str, Any]], "dict[str, Any] | list[dict[str, Any]]"]


_cache = threading.local()


def file_version(path: str | os.PathLike[str] | None, default: Path, what: str) -> tuple[str, int, int]:
    """``(resolved path, mtime_ns, size)`` of ``path`` (default: ``default``): the key of a loader
    cached per file version; a ``ValueError`` naming ``what`` when it cannot be read."""
    p = Path(path) if path is not None else default
    try:
        st = p.stat()
    except OSError as exc:
        raise ValueError(f"{p}: cannot read {what} ({exc.strerror})") from None
    return str(p.resolve()), st.st_mtime_ns, st.st_size


def cached_model(key: tuple, factory: Callable[[], Any]) -> Any:
    """Load a model once per worker thread (Sail runs UDFs on threads; OpenCV nets are not
    thread-safe), keyed by e.g. ``(name, weights_path, device)``."""
    models = getattr(_cache, "models", None)
    if models is None:
        models = _cache.models = {}
    if key not in models:
        models[key] = factory()
    return models[key]
