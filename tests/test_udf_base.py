"""The UDF contract: errors become rows, one-to-many rows, process pool gives the same answer."""

from __future__ import annotations

import pandas as pd

from udfs.base import StageError, batch_udf, cached_model, error_text


def parity(row: dict) -> dict | list[dict]:
    if row["n"] < 0:
        raise StageError("negative", f"n={row['n']}")
    if row["n"] == 0:
        return [{"half": 0}, {"half": 0}]
    return {"half": row["n"] // 2, "odd": bool(row["n"] % 2)}


def run(processes: int) -> pd.DataFrame:
    fn = batch_udf(parity, {"half": "int", "odd": "boolean"}, ("key",), version=3, processes=processes)
    frames = [pd.DataFrame({"key": ["a", "b"], "n": [5, -1]}), pd.DataFrame({"key": ["c"], "n": [0]})]
    return pd.concat(list(fn(iter(frames))), ignore_index=True)


def test_batch_udf_rows_errors_and_bookkeeping() -> None:
    out = run(0)
    assert list(out.columns) == ["key", "half", "odd", "error", "stage_version", "processed_at"]
    assert out["key"].tolist() == ["a", "b", "c", "c"]
    assert out.loc[0, "half"] == 2 and out.loc[0, "odd"]
    assert out.loc[1, "error"] == "negative: n=-1"
    assert (out["stage_version"] == 3).all()


def test_process_pool_matches_threads() -> None:
    threads, procs = run(0), run(2)
    cols = ["key", "half", "odd", "error"]
    assert threads[cols].astype(str).equals(procs[cols].astype(str))


def test_error_text_of_plain_exceptions() -> None:
    assert error_text(ValueError("bad\nsecond line")) == "ValueError: bad"


def test_cached_model_loads_once_per_thread() -> None:
    calls = []
    for _ in range(3):
        cached_model(("test", id(calls)), lambda: calls.append(1) or object())
    assert len(calls) == 1
