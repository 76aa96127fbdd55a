"""Errors are data, and they have a future: one module for every per-row error.

A row that fails becomes an output row whose ``error`` is ``"<category>: <detail>"``. Each
category is **transient** (the next run retries it, up to ``resources.max_attempts``) or
**permanent** (it stays until ``facevid run --retry-errors [CATEGORY]`` re-queues it):

- transient: ``io`` (OS errors reading or writing), ``s3`` (object-store errors, 5xx, throttling,
  connection resets), ``timeout`` (the per-row deadline passed), ``worker_lost`` (the worker
  process died or was killed while the row ran, e.g. out of memory), ``oom`` (MemoryError);
- permanent: everything else, e.g. ``missing``, ``empty``, ``not_video``, ``truncated``,
  ``decode``, ``encode``, ``no_face``, ``min_clip_s``, ``min_crop_px``, ``crashed`` (a row that
  crashed its worker ``max_attempts`` times), ``parse``, and ``bug`` for an unexpected exception
  (its type name is in the detail).

``StageError`` carries the measured ``value`` and the ``threshold`` for rule-like errors, so
quarantine rows never parse them back out of the message.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

TRANSIENT = frozenset({"io", "s3", "timeout", "worker_lost", "oom"})
TRANSIENT_KIND, PERMANENT_KIND = "transient", "permanent"


class StageError(Exception):
    """A per-row failure with a short machine-friendly category (e.g. ``decode``, ``not_video``),
    optionally with the measured ``value`` and the ``threshold`` it failed. ``transient=True``
    makes a category outside ``TRANSIENT`` retryable for this row (e.g. a caption answer that did
    not parse: a new prompt version or model may parse next run)."""

    def __init__(self, category: str, detail: str, value: object = None, threshold: object = None,
                 transient: bool | None = None) -> None:
        super().__init__(f"{category}: {detail}")
        self.category = category
        self.detail = detail
        self.value = None if value is None else str(value)
        self.threshold = None if threshold is None else str(threshold)
        self.transient = transient


class RowTimeout(StageError):
    """The row ran past its deadline (``resources.timeout_s``)."""

    def __init__(self, detail: str) -> None:
        super().__init__("timeout", detail)


@dataclass(frozen=True)
class RowError:
    """What an output row records about a failure."""

    category: str
    detail: str
    value: str | None = None
    threshold: str | None = None
    transient: bool | None = None  # None: decided by the category (``TRANSIENT``)

    @property
    def kind(self) -> str:
        transient = self.category in TRANSIENT if self.transient is None else self.transient
        return TRANSIENT_KIND if transient else PERMANENT_KIND

    @property
    def text(self) -> str:
        return f"{self.category}: {self.detail}"[:2000]


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else ""


def _is_s3(exc: BaseException) -> bool:
    mod = type(exc).__module__ or ""
    return mod.startswith(("botocore", "boto3", "s3transfer", "urllib3"))


def classify(exc: BaseException) -> RowError:
    """The ``RowError`` of an exception raised while processing a row."""
    if isinstance(exc, StageError):
        return RowError(exc.category, exc.detail, exc.value, exc.threshold, exc.transient)
    detail = f"{type(exc).__name__}: {_first_line(exc)}"
    if _is_s3(exc):
        code = str(getattr(exc, "response", {}).get("Error", {}).get("Code", ""))
        return RowError("missing" if code in ("404", "NoSuchKey", "NoSuchBucket") else "s3", detail)
    if isinstance(exc, MemoryError):
        return RowError("oom", detail)
    if isinstance(exc, TimeoutError):
        return RowError("timeout", detail)
    if isinstance(exc, FileNotFoundError):
        return RowError("missing", detail)
    if isinstance(exc, (ConnectionError, OSError)):
        return RowError("io", detail)
    return RowError("bug", detail)


def error_text(exc: BaseException) -> str:
    """Render an exception as the ``error`` column value: ``"<category>: <detail>"``."""
    return classify(exc).text


def category_of(error: str | None) -> str | None:
    """The category of an ``error`` column value (the part before the first colon)."""
    return None if error is None else error.split(":", 1)[0].strip()


# -- per-row deadlines (cooperative: long loops call check_deadline) --------------------------
_deadline = threading.local()


def set_deadline(seconds: float | None) -> None:
    """Start (or clear, with ``None``) the current thread's per-row deadline."""
    _deadline.at = None if not seconds else time.monotonic() + seconds
    _deadline.seconds = seconds


def check_deadline() -> None:
    """Raise ``RowTimeout`` when the current row has run past its deadline (decode loops call this
    once per frame, so a pathological video cannot hold a worker for hours)."""
    at = getattr(_deadline, "at", None)
    if at is not None and time.monotonic() > at:
        raise RowTimeout(f"row ran longer than {_deadline.seconds:g} s (resources.timeout_s)")
