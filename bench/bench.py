"""Benchmark the pipeline through the engine against plain loops and bare decode, in one run.

    python bench/bench.py [--videos DIR] [--config pipeline.yml] [--out bench/out/bench.json]

On the same videos (pipeline.yml as declared, sources = DIR, every stage with explicit
``resources.partitions``), in this order:

1. bare decode of every frame (the baseline); then, unreported, the pipeline on the smallest video
   (module imports, the first engine start: every embedded run below starts from a warm process);
2. the whole pipeline through ``facevid.jobs.runner.run_pipeline`` on a fresh lake, embedded Sail,
   2 partitions; then the same again on that lake (nothing pending: the fixed cost per stage);
3. each per-row stage's row function as a plain Python loop over the very rows the engine got
   (rebuilt from that lake), warm models;
4. the whole pipeline with 1 partition; faces alone with 1 partition and ``processes: 2``
   (two crash-isolated worker processes, the same 2-way parallelism as 2 partitions) on a copy of
   the 2-partition lake's upstream tables; faces again on the 2-partition lake with its version
   bumped, in 4 chunks (``commit_rows``): every chunk published with a MERGE into the table;
5. the whole pipeline as a ``facevid run`` subprocess against ``sail spark server`` in its own
   process (the driver's peak RSS is then the driver's alone).

Per stage it reports seconds, chunks and commits (``meta.runs``), the Delta versions each table
gained (delta-rs history), and the ExecutePlan requests the driver sent (counted at the client).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.loops import bare_decode, read_table, run_loops  # noqa: E402
from bench.runs import config, resources, run_cli, run_embedded  # noqa: E402

MODEL_STAGES = ("faces", "quality", "crops", "embed")
NOTES = {
    "requests": "measured: Spark Connect ExecutePlan requests sent by the driver per stage (a session Hook), "
                "by kind: query = a relation (count/collect/toPandas), write = DataFrameWriter, sql = a SQL "
                "command (MERGE). spark.sql() runs the command eagerly, so a MERGE is 1 sql + 1 query (its "
                "collect). Analyze requests (schemas) are not counted.",
    "spark_jobs": "not measured: Sail exposes no job/stage listener or UI, so engine jobs per request cannot be "
                  "counted; on native Spark one request may be several jobs (a MERGE is at least 2).",
    "derived_from_runner": "jobs/runner.py, a row stage: pending count (1 query); per chunk: in-flight keys "
                           "(1 write), staging append that runs the UDFs (1 write, the only request doing model "
                           "work), staged-row count (1 query), then a chunk that creates the output 1 write, one "
                           "into an existing output a non-empty check (1 query) + MERGE (1 sql + 1 query); for a "
                           "re-split stage (key != input key) into an existing output, 1 query more; prune count "
                           "(1 query, not ingest); rows and errors (2 queries); meta.runs append (1 write, +1 "
                           "creating it); on an existing output, add_columns' empty mergeSchema append (1 write: it compares "
                           "`backticked` DDL names with the table's columns, so it always writes; no Delta version "
                           "results). Fresh lake, 1 chunk: 5 queries + 4 writes (ingest 4 + 5); n MERGE chunks: "
                           "4 + 3n queries, 2n + 2 writes, n sql. The measured counts agree.",
    "commits": "measured: meta.runs.commits (the runner's publish commits on the output) and the Delta versions "
               "each table has on the fresh lake (delta-rs history: creates, appends, MERGEs, overwrites).",
    "driver_peak_mb": "measured: meta.runs.driver_peak_mb = VmHWM of the driver process. Embedded: the UDFs "
                      "and their models run on Sail threads inside that process (and the bench's own loops ran "
                      "later, so only the first embedded run's peak is clean). Remote: the driver alone; "
                      "server_peak_mb is the Sail server's VmHWM, which holds the UDFs and models.",
}


def timed(fn: Any) -> tuple[float, Any]:
    t0 = time.perf_counter()
    result = fn()
    return time.perf_counter() - t0, result


def ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or not b else a / b


def summarise(r: dict[str, Any]) -> dict[str, Any]:
    """The ratios the benchmark exists for (seconds of runs: wall; of stages: meta.runs)."""
    loops, runs, decode = r["loops"], r["runs"], r["decode_s"]
    two, one, remote = (runs[k]["stages"] for k in ("embedded_2p", "embedded_1p", "remote_2p"))
    faces = {"1p": one["faces"]["seconds"], "2p": two["faces"]["seconds"],
             "1p_2proc": runs["faces_1p_2proc"]["stages"]["faces"]["seconds"],
             "2p_4chunks_merge": runs["faces_2p_merge"]["stages"]["faces"]["seconds"]}
    model_sum = sum(loops[s]["seconds"] for s in MODEL_STAGES)
    all_sum = sum(v["seconds"] for v in loops.values())
    out: dict[str, Any] = {f"{s}_loop / bare_decode": ratio(v["seconds"], decode) for s, v in loops.items()}
    out.update({
        "model_loops_sum / bare_decode": ratio(model_sum, decode),
        "row_loops_sum / bare_decode": ratio(all_sum, decode),
        "pipeline_1p / bare_decode": ratio(runs["embedded_1p"]["wall_s"], decode),
        "pipeline_2p / bare_decode": ratio(runs["embedded_2p"]["wall_s"], decode),
        "pipeline_1p / row_loops_sum": ratio(runs["embedded_1p"]["wall_s"], all_sum),
        "pipeline_2p / row_loops_sum": ratio(runs["embedded_2p"]["wall_s"], all_sum),
        "pipeline_2p / pipeline_1p": ratio(runs["embedded_2p"]["wall_s"], runs["embedded_1p"]["wall_s"]),
        "facevid_run_local_2p / pipeline_2p": ratio(runs["cli_local_2p"]["wall_s"], runs["embedded_2p"]["wall_s"]),
        "facevid_run_remote_2p / facevid_run_local_2p": ratio(runs["remote_2p"]["wall_s"], runs["cli_local_2p"]["wall_s"]),
        "faces_1p_2proc / faces_1p": ratio(faces["1p_2proc"], faces["1p"]),
        "faces_1p_2proc / faces_2p": ratio(faces["1p_2proc"], faces["2p"]),
        "faces_4_merge_chunks / faces_2p": ratio(faces["2p_4chunks_merge"], faces["2p"]),
    })
    out.update({f"{s}_1p / {s}_loop": ratio(one[s]["seconds"], loops[s]["seconds"]) for s in loops})
    out.update({f"{s}_2p / {s}_1p": ratio(two[s]["seconds"], one[s]["seconds"]) for s in one})
    out["seconds"] = {
        "bare_decode": decode, "model_loops_sum": model_sum, "row_loops_sum": all_sum,
        "pipeline_1p": runs["embedded_1p"]["wall_s"], "pipeline_2p": runs["embedded_2p"]["wall_s"],
        "facevid_run_local_2p": runs["cli_local_2p"]["wall_s"], "facevid_run_remote_2p": runs["remote_2p"]["wall_s"],
        "remote_2p_stages_sum": sum(v["seconds"] for v in remote.values()),
        "noop_rerun_2p": runs["noop_rerun_2p"]["wall_s"],
        "overhead_1p_row_stages (1p - loop)": sum(one[s]["seconds"] - loops[s]["seconds"] for s in loops),
        "table_stages_1p": sum(v["seconds"] for s, v in one.items() if s not in loops),
        "outside_stages_1p": runs["embedded_1p"]["wall_s"] - sum(v["seconds"] for v in one.values()),
        **{f"faces_{k}": v for k, v in faces.items()},
    }
    cpu_loops = sum(v["cpu_s"] for v in loops.values())
    cpu_1p, cpu_2p = (sum(runs[k]["cpu_s"].values()) for k in ("embedded_1p", "embedded_2p"))
    out["cpu_s"] = {"row_loops_sum": cpu_loops, "pipeline_1p": cpu_1p, "pipeline_2p": cpu_2p,
                    "cli_local_2p": runs["cli_local_2p"]["cpu_s"],
                    "remote_2p (driver + server)": runs["remote_2p"]["cpu_s"],
                    "pipeline_1p / row_loops_sum": ratio(cpu_1p, cpu_loops)}
    cli = runs["cli_local_2p"]["stages"]
    out["peak_rss_mb"] = {"embedded driver (UDFs inside)": max(v["driver_peak_mb"] for v in cli.values()),
                          "remote driver": max(v["driver_peak_mb"] for v in remote.values()),
                          "remote Sail server (UDFs inside)": runs["remote_2p"]["server_peak_mb"]}
    return out


def mismatches(runs: dict[str, Any]) -> list[str]:
    """Every run did the same work: per stage, the output rows and error rows of the first run."""
    ref = runs["embedded_2p"]["stages"]
    return [f"{name}: stage {s} has {v['rows']} rows / {v['errors']} errors, embedded_2p {ref[s]['rows']} / "
            f"{ref[s]['errors']}" for name, run in runs.items() for s, v in run["stages"].items()
            if (v["rows"], v["errors"]) != (ref[s]["rows"], ref[s]["errors"])]


def fmt(x: Any, width: int = 6, digits: int = 2) -> str:
    if x is None:
        return f"{'-':>{width}}"
    return f"{x:>{width}.{digits}f}" if isinstance(x, float) else f"{x!s:>{width}}"


def table(title: str, cols: list[str], rows: list[tuple[str, list[Any]]]) -> None:
    widths = [max(6, len(c)) for c in cols]
    head = f"{title:<10} " + " ".join(f"{c:>{w}}" for c, w in zip(cols, widths, strict=True))
    print(head + "\n" + "-" * len(head))
    for name, values in rows:
        print(f"{name:<10} " + " ".join(fmt(v, w) for v, w in zip(values, widths, strict=True)))


def report(r: dict[str, Any]) -> None:
    runs, loops, ratios, sec, i = r["runs"], r["loops"], r["ratios"], r["ratios"]["seconds"], r["inputs"]
    st = {k: v["stages"] for k, v in runs.items()}
    two, one = st["embedded_2p"], st["embedded_1p"]
    cpu1, cpu2 = runs["embedded_1p"]["cpu_s"], runs["embedded_2p"]["cpu_s"]
    print(f"\n{i['videos']} videos, {i['video_seconds']} s of video, {i['frames']} frames, {i['clips']} clips; "
          f"{r['machine']['cores']} cores, load {r['machine']['load_start']} -> {r['machine']['load_end']}; "
          f"bare decode {r['decode_s']:.2f} s ({i['video_seconds'] / r['decode_s']:.0f}x realtime)\n")
    rows = []
    for s in two:
        lp = loops.get(s, {}).get("seconds")
        rows.append((s, [lp, one[s]["seconds"], two[s]["seconds"], st["cli_local_2p"][s]["seconds"],
                         st["remote_2p"][s]["seconds"], ratio(one[s]["seconds"], lp),
                         None if lp is None else one[s]["seconds"] - lp, ratio(two[s]["seconds"], one[s]["seconds"]),
                         st["noop_rerun_2p"][s]["seconds"]]))
    rows.append(("total", [sec["row_loops_sum"], sec["pipeline_1p"], sec["pipeline_2p"], sec["facevid_run_local_2p"],
                           sec["facevid_run_remote_2p"], ratios["pipeline_1p / row_loops_sum"],
                           sec["pipeline_1p"] - sec["row_loops_sum"], ratios["pipeline_2p / pipeline_1p"],
                           sec["noop_rerun_2p"]]))
    table("wall s", ["loop", "1p", "2p", "run", "remote", "1p/loop", "1p-loop", "2p/1p", "no-op"], rows)
    print("loop: the row function in a plain Python loop (total: the per-row stages); 1p, 2p: run_pipeline in this "
          "process, embedded Sail, 1 or 2 partitions; run: `facevid run` as a fresh process (embedded, 2p); remote: "
          "`facevid run` against a Sail server process (2p); totals of run/remote: the subprocess's wall; no-op: "
          "the 2p lake run again, nothing pending\n")
    rows = []
    for s in two:
        q, lp = runs["embedded_2p"]["requests"].get(s, {}), loops.get(s, {}).get("cpu_s")
        rows.append((s, [lp, cpu1.get(s), cpu2.get(s), ratio(cpu1.get(s), lp), two[s]["chunks"], two[s]["commits"],
                         two[s]["delta_versions"], f"{q.get('query', 0)}/{q.get('write', 0)}/{q.get('sql', 0)}"]))
    c = ratios["cpu_s"]
    rows.append(("total", [c["row_loops_sum"], c["pipeline_1p"], c["pipeline_2p"], c["pipeline_1p / row_loops_sum"],
                           sum(v["chunks"] for v in two.values()), sum(v["commits"] for v in two.values()),
                           sum(v["delta_versions"] for v in two.values()), None]))
    table("CPU s", ["loop", "1p", "2p", "1p/loop", "chunks", "commits", "versions", "q/w/sql"], rows)
    print(f"CPU: this process's, every thread (facevid run: {c['cli_local_2p']:.2f}; remote, driver + server: "
          f"{c['remote_2p (driver + server)']:.2f}); chunks, commits (meta.runs), Delta versions and requests "
          "(query/write/sql) of the 2p run\n")
    for key in ("model_loops_sum / bare_decode", "row_loops_sum / bare_decode", "pipeline_1p / bare_decode",
                "pipeline_2p / bare_decode", "facevid_run_local_2p / pipeline_2p",
                "facevid_run_remote_2p / facevid_run_local_2p"):
        print(f"  {key:<46} {ratios[key]:6.2f}")
    m, mq = st["faces_2p_merge"]["faces"], runs["faces_2p_merge"]["requests"].get("faces", {})
    print(f"  faces: 1p {sec['faces_1p']:.2f} s, 2p {sec['faces_2p']:.2f} s, 1p + processes: 2 "
          f"{sec['faces_1p_2proc']:.2f} s ({ratios['faces_1p_2proc / faces_2p']:.2f}x 2p); 2p again into the "
          f"table in {m['chunks']} chunks {sec['faces_2p_4chunks_merge']:.2f} s ({m['commits']} MERGE commits, "
          f"{m['delta_versions'] - two['faces']['delta_versions']} versions, requests "
          f"{mq.get('query', 0)}/{mq.get('write', 0)}/{mq.get('sql', 0)})")
    print("  peak RSS MB: " + ", ".join(f"{k} {v:.0f}" for k, v in ratios["peak_rss_mb"].items() if v is not None))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--videos", default=str(REPO.parent / "shared" / "data" / "videos"))
    ap.add_argument("--config", default=str(REPO / "pipeline.yml"))
    ap.add_argument("--out", default=str(REPO / "bench" / "out" / "bench.json"))
    ap.add_argument("--keep", action="store_true", help="keep the temporary lakes (their path is printed)")
    args = ap.parse_args()
    videos = str(Path(args.videos).resolve())
    paths = sorted(str(p) for p in Path(videos).glob("*.mp4"))
    if not paths:
        print(f"no .mp4 files in {videos}", file=sys.stderr)
        return 2
    tmp = Path(tempfile.mkdtemp(prefix="facevid-bench-"))
    lake2 = tmp / "lake_2p"
    r: dict[str, Any] = {"machine": {"cores": os.cpu_count() or 1, "load_start": round(os.getloadavg()[0], 2)},
                         "notes": NOTES, "runs": {}}
    two, one = resources(args.config, partitions=2), resources(args.config, partitions=1)
    try:
        print("== bare decode", flush=True)
        r["decode_s"], frames = timed(lambda: bare_decode(paths))
        print("== warm-up: the pipeline on the smallest video (imports, first engine start; not reported)", flush=True)
        (tmp / "warm").mkdir()
        shutil.copy(min(paths, key=os.path.getsize), tmp / "warm")
        r["warmup_s"] = run_embedded(args.config, tmp / "lake_warm", str(tmp / "warm"), two)["wall_s"]
        print("== pipeline, embedded engine, 2 partitions", flush=True)
        r["runs"]["embedded_2p"] = run_embedded(args.config, lake2, videos, two)
        print("== the same again: nothing pending", flush=True)
        r["runs"]["noop_rerun_2p"] = run_embedded(args.config, lake2, videos, two)
        print("== plain loops over the row functions", flush=True)
        r["loops"] = run_loops(config(args.config, lake2, videos, two), str(lake2), tmp / "loops")
        print("== pipeline, embedded engine, 1 partition", flush=True)
        r["runs"]["embedded_1p"] = run_embedded(args.config, tmp / "lake_1p", videos, one)
        print("== faces, 1 partition, processes: 2", flush=True)
        for table in ("bronze", "silver/clips"):
            shutil.copytree(lake2 / table, tmp / "lake_proc" / table)
        r["runs"]["faces_1p_2proc"] = run_embedded(args.config, tmp / "lake_proc", videos,
                                                   [*one, "stages.faces.resources.processes=2"], names=["faces"])
        from facevid.jobs.sandbox import shutdown

        shutdown()  # its workers would idle through the next runs
        clips = read_table(str(lake2), "silver.clips")
        n_clips = int(clips["error"].isna().sum())
        print("== faces, 2 partitions, version bumped: 4 chunks, each a MERGE", flush=True)
        merge = [*two, "stages.faces.version=2", f"stages.faces.resources.commit_rows={max(1, -(-n_clips // 4))}"]
        r["runs"]["faces_2p_merge"] = run_embedded(args.config, lake2, videos, merge, names=["faces"])
        print("== facevid run (a fresh process), embedded engine, 2 partitions", flush=True)
        r["runs"]["cli_local_2p"] = run_cli(args.config, tmp / "lake_cli", videos, two, remote=False)
        print("== facevid run against a Sail server in its own process, 2 partitions", flush=True)
        r["runs"]["remote_2p"] = run_cli(args.config, tmp / "lake_remote", videos, two, remote=True)
        seconds = float(read_table(str(lake2), "bronze.videos")["duration_s"].sum())
        r["inputs"] = {"videos": len(paths), "frames": frames, "clips": n_clips, "video_seconds": round(seconds, 1)}
    finally:
        if args.keep:
            print(f"lakes kept in {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    r["machine"]["load_end"] = round(os.getloadavg()[0], 2)
    r["ratios"] = summarise(r)
    r["mismatches"] = mismatches(r["runs"])
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(r, indent=2, default=str))
    report(r)
    for line in r["mismatches"]:
        print(f"CHECK FAILED: {line}", file=sys.stderr)
    return 1 if r["mismatches"] else 0


if __name__ == "__main__":
    sys.exit(main())
