"""The execution core as users run it: real ``facevid run`` processes on one lake at once, a row
that crashes its process, and a scale run whose driver never holds the rows."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import REPO
from deltalake import DeltaTable

from facevid.jobs.engine import start_sail_server

pytestmark = [pytest.mark.spark]

TESTS = Path(__file__).resolve().parent


def synthetic_config(tmp: Path, rows: int, commit_rows: int, extra: dict | None = None, samples: int = 30) -> Path:
    doc = {
        "lake": str(tmp / "lake"), "plugins": ["ops_for_tests"],
        "stages": {
            "rows": {"udf": "test.rows", "params": {"rows": rows, "samples": samples},
                     "resources": {"commit_rows": commit_rows}},
            "summary": {"udf": "test.summarise", "input": "test.tracks", "resources": {"commit_rows": commit_rows}},
            **(extra or {}),
        },
    }
    path = tmp / "pipeline.yml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def env(**extra: str) -> dict[str, str]:
    out = {k: v for k, v in os.environ.items() if not k.startswith("FACEVID_")}
    out["PYTHONPATH"] = os.pathsep.join([str(TESTS), str(REPO), out.get("PYTHONPATH", "")])
    return {**out, **extra}


def facevid(config: Path, *args: str, **extra: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "facevid.jobs.cli", "run", "--config", str(config), *args], cwd=REPO,
                            env=env(**extra), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def table(lake: Path, name: str, columns: list[str] | None = None):
    layer, _, rest = name.partition(".")
    return DeltaTable(str(lake / layer / rest)).to_pandas(columns=columns)


def exactly_once(lake: Path, name: str, key: str, n: int) -> None:
    keys = table(lake, name, [key])[key]
    assert len(keys) == n and keys.nunique() == n, (name, len(keys), keys.nunique())


def test_two_runs_at_once_never_duplicate_a_key(tmp_path: Path) -> None:
    cfg = synthetic_config(tmp_path, rows=3000, commit_rows=500)
    a = facevid(cfg, "--wait", "300")
    b = facevid(cfg, "--wait", "300")
    out_a, _ = a.communicate(timeout=600)
    out_b, _ = b.communicate(timeout=600)
    assert a.returncode == 0 and b.returncode == 0, out_a + out_b
    for name in ("test.tracks", "test.summary"):
        exactly_once(tmp_path / "lake", name, "clip_id", 3000)
    # whichever ran second found nothing to do
    pending = sorted(int(line.split()[1]) for out in (out_a, out_b) for line in out.splitlines()
                     if line.startswith("summary "))
    assert pending == [0, 3000]


def test_a_second_run_without_wait_exits_4_naming_the_holder(tmp_path: Path) -> None:
    cfg = synthetic_config(tmp_path, rows=4000, commit_rows=400)
    first = facevid(cfg)
    assert first.stdout is not None
    for line in first.stdout:  # the first run holds test.summary's lease now
        if line.startswith("stage summary"):
            break
    second = subprocess.run([sys.executable, "-m", "facevid.jobs.cli", "run", "--config", str(cfg), "--stages", "summary"],
                            cwd=REPO, env=env(), capture_output=True, text=True, timeout=300)
    rest, _ = first.communicate(timeout=600)
    assert first.returncode == 0, rest
    assert second.returncode == 4, second.stdout + second.stderr
    message = second.stderr.strip().splitlines()[-1]
    assert message.startswith("facevid: busy: test_summary is being written by run ") and "pid" in message
    exactly_once(tmp_path / "lake", "test.summary", "clip_id", 4000)


@pytest.mark.parametrize("processes", [0, 1])
def test_a_row_that_kills_its_process_ends_quarantined_as_crashed(tmp_path: Path, processes: int) -> None:
    poison = {"poison": {"udf": "test.poison", "input": "test.tracks",
                         "resources": {"commit_rows": 40, "processes": processes, "max_attempts": 2}}}
    cfg = synthetic_config(tmp_path, rows=120, commit_rows=40, extra=poison)
    victim = "clip0000042"
    first = facevid(cfg, FACEVID_TEST_POISON=victim)
    out, _ = first.communicate(timeout=600)
    if processes == 0:  # the row crashes the engine's own process: the run dies with it
        assert first.returncode == 139, out
        second = facevid(cfg, FACEVID_TEST_POISON=victim)
        out, _ = second.communicate(timeout=600)
        assert second.returncode == 0, out
        assert "re-running them crash-isolated" in out
    else:  # in a worker process: the same run completes
        assert first.returncode == 0, out
    rows = table(tmp_path / "lake", "test.poisoned").set_index("clip_id")
    assert len(rows) == 120 and rows.index.is_unique
    bad = rows.loc[victim]
    assert bad["error"].startswith("crashed: the row killed its worker 2 times") and bad["error_kind"] == "permanent"
    assert rows.drop(index=victim)["ok"].all() and rows.drop(index=victim)["error"].isna().all()
    third = facevid(cfg, FACEVID_TEST_POISON=victim)  # a permanent error is not retried
    out, _ = third.communicate(timeout=600)
    assert third.returncode == 0 and any(line.split()[:2] == ["poison", "0"] for line in out.splitlines()), out


@pytest.fixture(scope="module")
def remote_engine() -> str:
    """A Sail server in its own process: the driver's memory is then only the driver's."""
    proc, url = start_sail_server(env(RUST_LOG="error"))
    yield url
    proc.terminate()
    proc.wait(timeout=30)


def test_scale_driver_memory_commits_and_keys(tmp_path: Path, remote_engine: str) -> None:
    """20,000 clip rows with 60-sample face tracks (~7 KB each, ~140 MB in all) through two stages:
    the driver's peak RSS grows by less than a quarter of the data, each stage commits at most
    ceil(pending / commit_rows) times, and every key is there exactly once."""
    peaks, per_row = {}, 60 * 15 * 8
    for n in (2000, 20000):
        tmp = tmp_path / str(n)
        tmp.mkdir()
        cfg = synthetic_config(tmp, rows=n, commit_rows=5000, samples=60)
        proc = facevid(cfg, "--engine", remote_engine)
        out, _ = proc.communicate(timeout=900)
        assert proc.returncode == 0, out
        runs = table(tmp / "lake", "meta.runs")
        for _, r in runs.iterrows():
            assert r["commits"] <= math.ceil(r["pending"] / 5000), r.to_dict()
        exactly_once(tmp / "lake", "test.tracks", "clip_id", n)
        exactly_once(tmp / "lake", "test.summary", "clip_id", n)
        peaks[n] = runs["driver_peak_mb"].max()
    growth_mb = (20000 - 2000) * per_row / 2**20
    print(f"driver peak RSS MiB: {peaks}, data growth {growth_mb:.0f} MiB")
    assert peaks[20000] - peaks[2000] < 0.25 * growth_mb, (peaks, growth_mb)


def test_a_few_hundred_tiny_videos_through_the_real_ops(tmp_path: Path, remote_engine: str) -> None:
    """200 generated videos (distinct content) through ingest, probe, split and faces on an engine
    in its own process, in chunks of 64: every key once, commits within the bound."""
    from conftest import write_config
    from synth_video import make_test_video

    src = tmp_path / "videos"
    src.mkdir()
    for i in range(200):
        size = (160, 120) if i % 2 else (128, 96)
        make_test_video(src / f"v{i:03d}.mp4", seconds=1.0 + (i // 2 % 50) * 0.1, fps=10, size=size,
                        cuts=(0.5,) if i // 100 else ())
    chunks = {"resources": {"commit_rows": 64}}
    cfg = write_config(tmp_path, tmp_path / "lake", {s: chunks for s in ("ingest", "probe", "split", "faces")})
    proc = subprocess.Popen([sys.executable, "-m", "facevid.jobs.cli", "run", "--config", str(cfg), "--engine", remote_engine,
                             "--source", str(src), "--stages", "ingest,probe,split,faces"], cwd=REPO, env=env(),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    out, _ = proc.communicate(timeout=900)
    assert proc.returncode == 0, out
    lake = tmp_path / "lake"
    exactly_once(lake, "bronze.files", "uri", 200)
    exactly_once(lake, "bronze.videos", "video_id", 200)
    clips = table(lake, "silver.clips", ["clip_id", "error"])
    assert clips["clip_id"].is_unique and len(clips) >= 200
    exactly_once(lake, "silver.faces", "clip_id", int(clips["error"].isna().sum()))
    runs = table(lake, "meta.runs")
    assert set(runs["stage"]) == {"ingest", "probe", "split", "faces"}
    for _, r in runs.iterrows():
        assert 1 <= r["commits"] <= math.ceil(r["pending"] / 64), r.to_dict()
