"""The engine-free side of the benchmark: bare decode, and each per-row stage's row function in a
plain Python loop over exactly the input rows the engine run saw (read back from its lake)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import av
import pandas as pd
from deltalake import DeltaTable

from bench.runs import cpu_s
from facevid.jobs.adapter import run_row
from facevid.jobs.lineage import BOOKKEEPING
from facevid.jobs.stages import registry
from facevid.jobs.stages.base import CLIP_CONTEXT, ClipTrackOp, TableOp


def bare_decode(paths: list[str]) -> int:
    """Decode every frame of every video (threaded PyAV decode, no conversion); returns frames."""
    frames = 0
    for p in paths:
        with av.open(p) as c:
            s = c.streams.video[0]
            s.thread_type = "AUTO"
            for _ in c.decode(s):
                frames += 1
    return frames


def read_table(lake: str, table: str) -> pd.DataFrame:
    layer, _, name = table.partition(".")
    return DeltaTable(f"{lake}/{layer}/{name}").to_pandas()


def good_rows(df: pd.DataFrame) -> pd.DataFrame:
    """As ``facevid.jobs.stages.base.good_rows``: rows without errors, bookkeeping dropped."""
    drop = [c for c in BOOKKEEPING if c != "fingerprint" and c in df.columns]
    return df[df["error"].isna()].drop(columns=drop)


def stage_inputs(spec: Any, op: Any, lake: str) -> list[dict[str, Any]]:
    """The rows the stage's ``input_frame`` gave the engine, rebuilt in pandas from the lake."""
    if spec.op == "ingest.files":  # the listing: bronze.files holds its columns
        files = read_table(lake, spec.output)
        frame = files[list(op.passthrough)].assign(listing_error=None)
    elif spec.op == "caption.annotate":  # clip_join_frame: the crops joined with av and quality
        frame = good_rows(read_table(lake, spec.inputs[0]))
        for table in spec.inputs[1:]:
            other = good_rows(read_table(lake, table))
            frame = frame.merge(other[["clip_id", *[c for c in other.columns if c not in frame.columns]]],
                                on="clip_id", how="inner")
    elif isinstance(op, ClipTrackOp) or spec.op == "av.signals":
        faces, clips = (good_rows(read_table(lake, t)) for t in spec.inputs[:2])
        frame = faces.merge(clips[["clip_id", *CLIP_CONTEXT]], on="clip_id", how="inner")
    else:
        frame = good_rows(read_table(lake, spec.input))
        if spec.op == "probe.video":  # one row per content hash, the earliest URI
            frame = frame.sort_values("uri").drop_duplicates("video_id")
    return frame.sort_values(op.input_key).to_dict("records")


def run_loops(cfg: Any, lake: str, scratch: Path) -> dict[str, dict[str, Any]]:
    """Per row stage: its row function over its input rows, one after the other, errors as data
    (``facevid.jobs.adapter.run_row``, as the engine calls it). The first row is run once before timing
    (model loading is per worker, not per clip) and its cold time is kept as ``first_row_s``."""
    out: dict[str, dict[str, Any]] = {}
    for spec in cfg.ordered():
        op = registry[spec.op]()
        if isinstance(op, TableOp):
            continue
        rows = stage_inputs(spec, op, lake)
        if not rows:
            out[spec.name] = {"rows": 0, "ok": 0, "seconds": 0.0, "cpu_s": 0.0, "first_row_s": 0.0}
            continue
        if hasattr(op, "root"):  # crops: a scratch folder each, so the timed pass encodes every file
            op.root = str(scratch / f"{spec.name}_warm")
        warm = op.row_fn(spec)
        if hasattr(op, "root"):
            op.root = str(scratch / spec.name)
        fn = op.row_fn(spec)
        t0 = time.perf_counter()
        if getattr(fn, "batched", False):  # a batch op: prefetch + batches, as the engine runs it
            warm(rows[:1])
            first = time.perf_counter() - t0
            t0, cpu0 = time.perf_counter(), cpu_s()
            outcomes = fn(rows)
        else:
            run_row(warm, rows[0], None)
            first = time.perf_counter() - t0
            t0, cpu0 = time.perf_counter(), cpu_s()
            outcomes = [run_row(fn, r, None) for r in rows]
        out[spec.name] = {"rows": len(rows), "ok": sum(ok for ok, _ in outcomes),
                          "seconds": time.perf_counter() - t0, "cpu_s": cpu_s() - cpu0, "first_row_s": first}
    return out
