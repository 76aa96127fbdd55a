"""The executor-side adapter: errors become typed rows, lineage columns, crash-isolated workers."""

from __future__ import annotations

import os
import time

import pandas as pd
import pytest

from facevid.jobs.adapter import RowPlan, map_function
from facevid.jobs.lineage import INPUT_FP, PRIOR_ATTEMPTS, row_fingerprint, stage_fingerprint
from facevid.udfs.base import cached_model
from facevid.udfs.errors import StageError, check_deadline, classify, error_text


def parity(row: dict) -> dict | list[dict]:
    if row["n"] < 0:
        raise StageError("negative", f"n={row['n']}", value=row["n"], threshold=">= 0")
    if row["n"] == 1:
        raise OSError("connection reset")
    if row["n"] == 0:
        return [{"key": "c0", "half": 0}, {"key": "c1", "half": 0, "error": "too_small: 0", "error_value": "0"}]
    return {"half": row["n"] // 2, "odd": bool(row["n"] % 2)}


def crash_on_13(row: dict) -> dict:
    if row["n"] == 13:
        os._exit(139)  # what a segfault in a native decoder looks like from outside
    if row["n"] == 99:
        time.sleep(30)
    return {"half": row["n"] // 2}


def plan(**kw) -> RowPlan:
    base = {"key": "key", "input_key": "key", "columns": {"half": "int", "odd": "boolean"}, "passthrough": ("key",),
            "passthrough_types": {"key": "string"}, "stage_fp": "s1", "version": 3}
    return RowPlan(**{**base, **kw})


def run(fn, p: RowPlan, frames: list[pd.DataFrame]) -> pd.DataFrame:
    return pd.concat(list(map_function(fn, p)(iter(frames))), ignore_index=True)


def frame(keys: list[str], ns: list[int], prior: list[int] | None = None) -> pd.DataFrame:
    return pd.DataFrame({"key": keys, "n": ns, INPUT_FP: [f"fp-{k}" for k in keys],
                         PRIOR_ATTEMPTS: prior or [0] * len(keys)})


def test_rows_errors_kinds_and_lineage() -> None:
    out = run(parity, plan(), [frame(["a", "b", "d"], [5, -1, 1], [0, 0, 2]), frame(["c"], [0])])
    assert list(out.columns)[:3] == ["key", "half", "odd"]
    assert out["key"].tolist() == ["a", "b", "d", "c0", "c1"]
    a, b, d, c0, c1 = (out.iloc[i] for i in range(5))
    assert a["half"] == 2 and a["odd"] and pd.isna(a["error"]) and a["attempts"] == 1
    assert (b["error"], b["error_kind"], b["error_value"], b["error_threshold"]) == (
        "negative: n=-1", "permanent", "-1", ">= 0")
    assert d["error"] == "io: OSError: connection reset" and d["error_kind"] == "transient" and d["attempts"] == 3
    assert c1["error"] == "too_small: 0" and c1["error_value"] == "0" and pd.isna(c0["error"])
    assert (out["stage_fp"] == "s1").all() and (out["stage_version"] == 3).all()
    assert out["input_fp"].tolist() == ["fp-a", "fp-b", "fp-d", "fp-c", "fp-c"]
    # the fingerprint hashes content: the same output gives the same fingerprint, timings aside
    again = run(parity, plan(), [frame(["a"], [5])])
    assert again.loc[0, "fingerprint"] == a["fingerprint"] and a["fingerprint"] != c0["fingerprint"]
    assert row_fingerprint({"key": "a", "x_ms": 1}, ["key"]) == row_fingerprint({"key": "a", "x_ms": 2}, ["key"])


def test_stage_fingerprint_follows_version_and_params() -> None:
    from facevid.udfs.media.shots import SplitParams

    base = stage_fingerprint("split.shots", 1, SplitParams())
    assert base == stage_fingerprint("split.shots", 1, SplitParams())
    assert base != stage_fingerprint("split.shots", 2, SplitParams())
    assert base != stage_fingerprint("split.shots", 1, SplitParams(threshold=31.0))


def test_error_classification() -> None:
    assert error_text(ValueError("bad\nsecond line")) == "bug: ValueError: bad"
    assert classify(TimeoutError("slow")).kind == "transient"
    assert classify(FileNotFoundError("gone")).category == "missing"
    assert classify(MemoryError()).category == "oom" and classify(MemoryError()).kind == "transient"
    from botocore.exceptions import ClientError, EndpointConnectionError

    assert classify(EndpointConnectionError(endpoint_url="http://x")).category == "s3"
    nokey = ClientError({"Error": {"Code": "NoSuchKey", "Message": "x"}}, "GetObject")
    assert classify(nokey).category == "missing" and classify(nokey).kind == "permanent"


def test_cooperative_deadline() -> None:
    from facevid.jobs.adapter import run_row

    def slow(row: dict) -> dict:
        for _ in range(200):
            time.sleep(0.01)
            check_deadline()
        return {}

    ok, err = run_row(slow, {}, timeout_s=0.1)
    assert not ok and err.category == "timeout" and err.kind == "transient"
    check_deadline()  # cleared after the row


def test_isolated_workers_match_threads_pin_crashes_and_kill_hung_rows() -> None:
    threads = run(parity, plan(), [frame(["a", "b", "c"], [5, -1, 0])])
    procs = run(parity, plan(processes=2), [frame(["a", "b", "c"], [5, -1, 0])])
    cols = ["key", "half", "odd", "error", "error_kind", "fingerprint"]
    assert threads[cols].astype(str).equals(procs[cols].astype(str))
    out = run(crash_on_13, plan(processes=2, max_attempts=2, timeout_s=0.5),
              [frame(["k4", "k13", "k8", "k99", "k6"], [4, 13, 8, 99, 6])])
    by = out.set_index("key")
    assert by.loc["k13", "error"].startswith("crashed: the row killed its worker 2 times")
    assert by.loc["k13", "error_kind"] == "permanent"
    assert by.loc["k99", "error"].startswith("timeout:") and by.loc["k99", "error_kind"] == "transient"
    assert by.loc[["k4", "k8", "k6"], "half"].tolist() == [2, 4, 3] and by.loc[["k4", "k8", "k6"], "error"].isna().all()


def test_cached_model_loads_once_per_thread() -> None:
    calls = []
    for _ in range(3):
        cached_model(("test", id(calls)), lambda: calls.append(1) or object())
    assert len(calls) == 1


@pytest.mark.parametrize("bad", [{"commit_rows": 0}, {"max_attempts": 0}, {"timeout_s": -1}])
def test_resources_are_validated(bad: dict) -> None:
    from facevid.jobs.config import ConfigError, Resources

    with pytest.raises(ConfigError, match="resources"):
        Resources(**bad)


def test_stage_error_can_declare_itself_transient() -> None:
    from facevid.udfs.errors import StageError, classify

    assert classify(StageError("parse", "no JSON")).kind == "permanent"
    err = classify(StageError("parse", "no JSON", transient=True))
    assert err.category == "parse" and err.kind == "transient"
