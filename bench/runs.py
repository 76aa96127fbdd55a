"""The engine side of the benchmark: the pipeline through ``facevid.jobs.runner.run_pipeline`` on a fresh
lake, in this process (embedded Sail: the UDFs run on its threads, inside this process) or as a
``facevid run`` subprocess against a Sail server in a process of its own; then what it left in the
lake: ``meta.runs`` per stage and the Delta versions each table gained."""

from __future__ import annotations

import os
import resource
import socket
import subprocess
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

from deltalake import DeltaTable

REPO = Path(__file__).resolve().parents[1]
RUN_FIELDS = ("seconds", "pending", "rows", "errors", "chunks", "commits", "pruned", "driver_peak_mb", "status")


class RequestCounter:
    """A Spark Connect session hook (``SparkSession.Hook``'s one method; not subclassed: importing
    ``pyspark.sql.connect`` in the main module makes every spawned sandbox worker exit at import,
    as pyspark then takes the half-initialised ``__mp_main__`` for a doctest run).

    Counts the ExecutePlan requests the driver sends the engine, per stage and kind: ``query``
    (a relation: count, collect, toPandas), ``write`` (DataFrameWriter: a table append/overwrite,
    a staging table, an in-flight record) or ``sql`` (a SQL command: MERGE). The stage is the one
    ``run_pipeline`` last announced in its log."""

    KINDS = {"write_operation": "write", "write_operation_v2": "write", "sql_command": "sql"}

    def __init__(self) -> None:
        self.stage = "(setup)"
        self.counts: dict[str, Counter[str]] = defaultdict(Counter)
        self.cpu: dict[str, float] = {}  # CPU seconds of this process (every thread) per stage
        self._mark = cpu_s()

    def on_execute_plan(self, request: Any) -> Any:
        if request.plan.WhichOneof("op_type") == "root":
            kind = "query"
        else:
            command = request.plan.command.WhichOneof("command_type")
            kind = self.KINDS.get(command, command)
        self.counts[self.stage][kind] += 1
        return request

    def log(self, message: str) -> None:
        if message.startswith("stage "):
            self.close()
            self.stage = message.split()[1]

    def close(self) -> None:
        now = cpu_s()
        self.cpu[self.stage] = self.cpu.get(self.stage, 0.0) + now - self._mark
        self._mark = now


def cpu_s(who: int = resource.RUSAGE_SELF) -> float:
    """User + system CPU seconds of this process (all threads) or of its reaped children."""
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


def config(path: str, lake: Path, videos: str, overrides: list[str], engine: str = "local") -> Any:
    from facevid.jobs.config import load_config

    return load_config(path, lake=str(lake), sources=[videos], engine=engine, overrides=overrides)


def resources(cfg_path: str, **values: int) -> list[str]:
    """``--set`` items giving every declared stage these ``resources`` values."""
    from facevid.jobs.config import load_config

    names = load_config(cfg_path, lake="/tmp/unused").stages
    return [f"stages.{s}.resources.{k}={v}" for s in names for k, v in values.items()]


def run_embedded(cfg_path: str, lake: Path, videos: str, overrides: list[str],
                 names: list[str] | None = None) -> dict[str, Any]:
    """One ``run_pipeline`` on the embedded engine, counting the driver's requests per stage."""
    from facevid.jobs.engine import start_engine
    from facevid.jobs.lake import Lake
    from facevid.jobs.runner import Context, run_pipeline
    from facevid.jobs.stages.base import GateError

    cfg = config(cfg_path, lake, videos, overrides)
    counter = RequestCounter()
    status = "ok"
    with start_engine("local") as engine:
        engine.spark._client._session_hooks.append(counter)  # the public Hook API, added late
        ctx = Context(cfg=cfg, engine=engine, lake=Lake(engine.spark, cfg.lake))
        t0 = time.perf_counter()
        try:
            run_pipeline(ctx, names, log=counter.log)
        except GateError as exc:  # meta.runs records it; the stages before gold are complete
            status = f"gate_failed: {exc}"
        wall = time.perf_counter() - t0
        counter.close()
    return {"wall_s": wall, "status": status, **lake_state(lake, cfg), "cpu_s": counter.cpu,
            "requests": {s: dict(c) for s, c in counter.counts.items()}}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def peak_rss_mb(pid: int) -> float | None:
    """VmHWM (peak resident set) of a live process, from /proc (Linux)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def run_cli(cfg_path: str, lake: Path, videos: str, overrides: list[str], remote: bool) -> dict[str, Any]:
    """``python -m facevid.jobs.cli run`` as a fresh process: embedded (``--engine local``: the UDFs run in
    it) or against a ``sail spark server`` process (the driver's peak RSS in ``meta.runs`` is then
    the driver's alone; the server's, which holds the UDFs and models, is read from /proc)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FACEVID_")}
    env.update(PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")])), RUST_LOG="error")
    from facevid.jobs.engine import start_sail_server

    server, engine = start_sail_server(env) if remote else (None, "local")
    try:
        sets = [a for o in overrides for a in ("--set", o)]
        cli = [sys.executable, "-m", "facevid.jobs.cli", "run", "--config", cfg_path, "--lake", str(lake), "--source", videos,
               "--engine", engine, *sets]
        t0, cpu0 = time.perf_counter(), cpu_s(resource.RUSAGE_CHILDREN)
        # the driver reports VmHWM, which exec resets (ru_maxrss would carry this process's peak)
        proc = subprocess.run(cli, cwd=REPO, env=env, capture_output=True, text=True, timeout=3600)
        wall = time.perf_counter() - t0
        server_peak = peak_rss_mb(server.pid) if server else None
    finally:
        if server:
            server.terminate()
            server.wait(timeout=60)
    cpu = cpu_s(resource.RUSAGE_CHILDREN) - cpu0  # the driver, and a server's whole life
    status = {0: "ok", 3: "gate_failed"}.get(proc.returncode, f"exit {proc.returncode}")
    if proc.returncode not in (0, 3):
        raise RuntimeError(f"facevid run --engine {engine} failed ({proc.returncode}):\n{proc.stdout}{proc.stderr}")
    return {"wall_s": wall, "status": status, "server_peak_mb": server_peak, "cpu_s": cpu,
            **lake_state(lake, config(cfg_path, lake, videos, overrides, engine))}


def lake_state(lake: Path, cfg: Any) -> dict[str, Any]:
    """``meta.runs`` per stage (what the runner logged: seconds, chunks, commits, driver peak) and,
    per table, the Delta versions it has (a fresh lake: every one was added by this run)."""
    runs = DeltaTable(str(lake / "meta" / "runs")).to_pandas()
    stages = {r["stage"]: {k: (r[k].item() if hasattr(r[k], "item") else r[k]) for k in RUN_FIELDS}
              for _, r in runs.sort_values("started_at").iterrows()}
    from facevid.jobs.stages import registry

    owners = {s.output: s.name for s in cfg.stages.values()}
    owners.update({registry[s.op].rejections: s.name for s in cfg.stages.values()
                   if getattr(registry[s.op], "rejections", None)})  # gold.rejections: gold's too
    tables: dict[str, Any] = {}
    for log in sorted(lake.glob("*/*/_delta_log")):
        path = log.parent
        if path.parent.name == "_staging":
            continue
        history = DeltaTable(str(path)).history()
        table = f"{path.parent.name}.{path.name}"
        tables[table] = {"versions": len(history), "stage": owners.get(table),
                         "operations": dict(Counter(h.get("operation") for h in history))}
    for name, row in stages.items():
        row["delta_versions"] = sum(t["versions"] for t in tables.values() if t["stage"] == name)
    return {"stages": stages, "tables": tables}
