"""Benchmark the model stages against bare decode of the same clips, in one run.

    python bench/bench.py [--videos DIR] [--out bench/out/bench.json]

Prints (and writes as JSON): bare decode of every frame vs each per-clip stage as a plain loop
over its row function (faces, then quality, crops and embed on the faces output); the faces stage
through the engine (Sail, mapInPandas) vs the plain loop; 1 vs 2 partitions (does the GIL
serialise UDF threads?); and 2 partitions with a 2-process pool. Each video is one clip (its whole
length) so every variant does identical work. Face-less clips are timed like the stage would run
them (quick error rows for crops/embed).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import av  # noqa: E402

from facevid.jobs.config import load_config  # noqa: E402
from facevid.jobs.stages import registry  # noqa: E402
from facevid.udfs.base import batch_udf  # noqa: E402
from facevid.udfs.media.probe import probe_video  # noqa: E402


def timed(fn):
    t0 = time.perf_counter()
    result = fn()
    return time.perf_counter() - t0, result


def bare_decode(paths: list[str]) -> int:
    """Decode every frame of every video (threaded PyAV decode, no conversion)."""
    frames = 0
    for p in paths:
        with av.open(p) as c:
            s = c.streams.video[0]
            s.thread_type = "AUTO"
            for _ in c.decode(s):
                frames += 1
    return frames


def stage_loops(config: str, tracks: list[dict], tmp: str) -> dict[str, float]:
    """Plain-loop time of each per-clip stage that reads the face track (models loaded first)."""
    cfg = load_config(config)
    out: dict[str, float] = {}
    for spec in cfg.ordered():
        if spec.op not in ("quality.score", "crops.write", "identity.embed"):
            continue
        op = registry[spec.op]()
        if hasattr(op, "root"):
            op.root = tmp  # crops: files go to a scratch folder
        fn = op.row_fn(spec)

        def safe(row: dict, fn=fn) -> bool:
            try:
                fn(row)
                return True
            except Exception:  # the runner turns these into error rows; time them the same way
                return False

        safe(tracks[0])  # warm-up: model loading is not per clip
        out[f"{spec.name}_loop_s"], ok = timed(lambda fn=safe: [fn(t) for t in tracks])
        out[f"{spec.name}_clips_ok"] = sum(ok)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--videos", default=str(REPO.parent / "shared" / "data" / "videos"))
    ap.add_argument("--config", default=str(REPO / "pipeline.yml"))
    ap.add_argument("--out", default=str(REPO / "bench" / "out" / "bench.json"))
    args = ap.parse_args()

    paths = sorted(str(p) for p in Path(args.videos).glob("*.mp4"))
    if not paths:
        print(f"no .mp4 files in {args.videos}", file=sys.stderr)
        return 2
    probes = {p: probe_video(p) for p in paths}
    rows = [{"clip_id": f"c{i:03d}", "video_id": f"v{i:03d}", "video_uri": p, "start_s": 0.0,
             "end_s": float(probes[p]["duration_s"])} for i, p in enumerate(paths)]
    seconds = sum(r["end_s"] for r in rows)
    spec = load_config(args.config).stages["faces"]
    op = registry[spec.op]()
    row_fn = op.row_fn(spec)
    results: dict[str, float | int | str] = {"videos": len(paths), "video_seconds": round(seconds, 1),
                                             "cores": os.cpu_count() or 1, "detector": spec.params.detector,
                                             "sample_fps": spec.params.sample_fps}

    t_decode, frames = timed(lambda: bare_decode(paths))
    results.update(decode_s=t_decode, decoded_frames=frames)
    row_fn(rows[0])  # load the model once, as a worker would, before timing
    t_loop, faces = timed(lambda: [row_fn(r) for r in rows])
    results["faces_loop_s"] = t_loop
    tracks = [{**r, **f, "duration_s": r["end_s"], "fps": probes[r["video_uri"]]["fps"], "source": "bench",
               "width": probes[r["video_uri"]]["width"], "height": probes[r["video_uri"]]["height"]}
              for r, f in zip(rows, faces, strict=True)]
    with tempfile.TemporaryDirectory() as tmp:
        results.update(stage_loops(args.config, tracks, tmp))

    import pandas as pd

    from facevid.jobs.engine import start_engine
    from facevid.jobs.runner import output_schema

    with start_engine("local") as engine:
        spark = engine.spark
        inp = spark.createDataFrame(pd.DataFrame(rows))
        schema = output_schema(op, inp.schema)
        variants = {"engine_1p_s": (1, 0), "engine_2p_s": (2, 0), "engine_2p_2proc_s": (2, 2)}
        for name, (parts, procs) in variants.items():
            fn = batch_udf(row_fn, op.columns, op.passthrough, 1, procs)
            job = inp.repartition(parts).mapInPandas(fn, schema).select("clip_id", "n_samples", "error")
            if procs:  # start the pool outside the timing: it lives for the engine's lifetime
                job.collect()
            t, out = timed(job.collect)
            assert len(out) == len(rows) and not any(r["error"] for r in out), out
            results[name] = t

    r = results
    loops = [k for k in r if k.endswith("_loop_s")]
    ratios = {
        **{f"{k[:-2]} / bare_decode": r[k] / r["decode_s"] for k in loops},
        "engine_1p / faces_loop": r["engine_1p_s"] / r["faces_loop_s"],
        "engine_2p / engine_1p": r["engine_2p_s"] / r["engine_1p_s"],
        "engine_2p_2proc / engine_1p": r["engine_2p_2proc_s"] / r["engine_1p_s"],
    }
    print(f"{r['videos']} videos, {r['video_seconds']} s of video, {r['decoded_frames']} frames, "
          f"{r['cores']} cores, detector {r['detector']} @ {r['sample_fps']} fps")
    for key in ("decode_s", *loops, "engine_1p_s", "engine_2p_s", "engine_2p_2proc_s"):
        print(f"  {key:<20} {r[key]:8.2f} s   ({r['video_seconds'] / r[key]:6.1f}x realtime)")
    for key, value in ratios.items():
        print(f"  {key:<28} {value:6.2f}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({**results, "ratios": ratios}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
