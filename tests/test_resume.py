"""Kill a run mid-stage (SIGKILL) and re-run it: same keys as a clean run, no duplicates."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import REPO, write_config
from deltalake import DeltaTable

pytestmark = [pytest.mark.spark, pytest.mark.e2e]

VIDEOS = ["lp_d18.mp4", "carphone_pristine.mp4", "hamilton_short.mp4", "sadtalker_aoc.mp4"]
TABLES = {"bronze/files": "uri", "bronze/videos": "video_id", "silver/clips": "clip_id", "silver/faces": "clip_id"}


def facevid(config: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "facevid.jobs.cli", "run", "--config", str(config), *args],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def keys(lake: Path) -> dict[str, list[str]]:
    out = {}
    for table, key in TABLES.items():
        out[table] = sorted(DeltaTable(str(lake / table)).to_pandas(columns=[key])[key].tolist())
    return out


def test_sigkill_mid_stage_then_resume_matches_clean_run(shared_videos: Path, tmp_path: Path) -> None:
    src = tmp_path / "videos"
    src.mkdir()
    for name in VIDEOS:
        shutil.copy(shared_videos / name, src / name)
    small = {"faces": {"resources": {"commit_rows": 1, "partitions": 1}}, "split": {"resources": {"commit_rows": 1}}}
    clean_cfg = write_config(tmp_path, tmp_path / "clean", small, "clean.yml")
    killed_cfg = write_config(tmp_path, tmp_path / "killed", small, "killed.yml")

    clean = facevid(clean_cfg, "--source", str(src))
    out, _ = clean.communicate(timeout=600)
    assert clean.returncode == 0, out

    victim = facevid(killed_cfg, "--source", str(src))
    seen = []
    deadline = time.monotonic() + 600
    assert victim.stdout is not None
    for line in victim.stdout:  # wait until faces has committed its first chunk, then kill -9
        seen.append(line)
        if "faces: chunk 1/" in line or time.monotonic() > deadline:
            break
    os.kill(victim.pid, signal.SIGKILL)
    victim.wait(timeout=60)
    assert victim.returncode == -signal.SIGKILL, "".join(seen)
    partial = keys(tmp_path / "killed")
    expected = keys(tmp_path / "clean")
    assert 0 < len(partial["silver/faces"]) < len(expected["silver/faces"])

    resumed = facevid(killed_cfg, "--source", str(src))
    out, _ = resumed.communicate(timeout=600)
    assert resumed.returncode == 0, out
    got = keys(tmp_path / "killed")
    assert got == expected
    for table, ids in got.items():
        assert len(ids) == len(set(ids)), f"duplicate keys in {table}"
