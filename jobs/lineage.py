"""Lineage: what every output row records about what produced it, and the fingerprints behind it.

Every row a stage writes carries

- ``input_fp``: the fingerprint of the input row(s) it was computed from (for a stage with several
  inputs, the joined rows' fingerprints in input order, ``:``-separated);
- ``stage_fp``: a hash of the op name, the stage ``version`` and its params (a params change is a
  new ``stage_fp`` just as a version bump is);
- ``fingerprint``: a hash of the row's own content (its key and output columns, without timings or
  bookkeeping) — what the next stage sees as its ``input_fp``;
- ``attempts``, ``error``/``error_kind``/``error_value``/``error_threshold``, ``stage_version`` and
  ``processed_at``.

An input row is pending when no output row of its key has the same ``input_fp`` and ``stage_fp``
(or that row holds a transient error with attempts left, or a re-queued error). Because the
fingerprint hashes content, a change upstream re-runs downstream exactly the rows whose input
content changed: a re-split that keeps a clip's span keeps its ``clip_id`` and its fingerprint,
and nothing downstream of it runs again.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from collections.abc import Iterable
from typing import Any

import numpy as np
import pandas as pd

BOOKKEEPING: dict[str, str] = {
    "error": "string", "error_kind": "string", "error_value": "string", "error_threshold": "string",
    "attempts": "int", "input_fp": "string", "stage_fp": "string", "fingerprint": "string",
    "stage_version": "int", "processed_at": "timestamp",
}
INPUT_FP = "_input_fp"  # the input frame's column holding each row's input fingerprint
PRIOR_ATTEMPTS = "_prior_attempts"  # attempts of the row being retried (0 for new work)
FP_HEX = 16


def _plain(value: Any) -> Any:
    """A JSON-stable form of a cell: arrays to lists, NaN/NA to None, timestamps to ISO text."""
    if value is None:
        return None
    if isinstance(value, np.ndarray):
        return [_plain(v) for v in value.tolist()]
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in sorted(value.items())}
    if isinstance(value, (np.floating, float)):
        f = float(value)
        return None if math.isnan(f) else f
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.bool_,)):
        return bool(value)
    if isinstance(value, (pd.Timestamp,)):
        return value.isoformat()
    if value is pd.NA or value is pd.NaT:
        return None
    return value


def digest(parts: Iterable[Any]) -> str:
    """A short stable hex digest of JSON-able parts."""
    text = json.dumps([_plain(p) for p in parts], sort_keys=True, default=str, allow_nan=False)
    return hashlib.sha256(text.encode()).hexdigest()[:FP_HEX]


def row_fingerprint(row: dict[str, Any], columns: Iterable[str]) -> str:
    """The content fingerprint of an output row over ``columns`` (in sorted order)."""
    names = sorted(columns)
    return digest([names, [row.get(c) for c in names]])


def params_state(params: Any) -> Any:
    """Params as plain data for hashing (dataclasses recursively, everything else by value). A params
    dataclass with ``content_state()`` adds what its files hold (e.g. the vocabulary and the prompt
    template: editing either re-runs the stage, as a params change does)."""
    if dataclasses.is_dataclass(params) and not isinstance(params, type):
        state = {f.name: params_state(getattr(params, f.name)) for f in dataclasses.fields(params)}
        if callable(getattr(params, "content_state", None)):
            state["_content"] = params_state(params.content_state())
        return state
    if isinstance(params, dict):
        return {str(k): params_state(v) for k, v in params.items()}
    if isinstance(params, (list, tuple)):
        return [params_state(v) for v in params]
    return params


def stage_fingerprint(op_name: str, version: int, params: Any) -> str:
    """``stage_fp``: what the stage is (op, version, params); a change re-runs every row."""
    return digest([op_name, version, params_state(params)])


def is_volatile(column: str) -> bool:
    """Columns left out of a row's fingerprint: timings differ from run to run."""
    return column.endswith("_ms")


def content_columns(key: str, columns: Iterable[str]) -> list[str]:
    return [key] + [c for c in columns if c != key and not is_volatile(c)]


def frame_fingerprints(frame: pd.DataFrame, columns: Iterable[str]) -> pd.Series:
    """``row_fingerprint`` of every row of a pandas frame (whole-table stages, source listings)."""
    names = list(columns)
    records = frame[names].to_dict("records")
    return pd.Series([row_fingerprint(r, names) for r in records], index=frame.index, dtype=object)
