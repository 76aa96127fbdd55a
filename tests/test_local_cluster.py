"""The curation pipeline on Sail's cluster mode (``--engine local-cluster``: a driver and worker
tasks, a cluster's execution model on this machine) gives the same tables as the local engine."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from conftest import make_context, rows, write_config

from facevid.jobs.engine import start_engine
from facevid.jobs.runner import run_pipeline

pytestmark = [pytest.mark.e2e, pytest.mark.spark]

VIDEOS = ["lp_d18.mp4", "neg_cat.mp4", "sadtalker_aoc.mp4", "hamilton_short.mp4"]
COLUMNS = {
    "bronze_videos": "video_id, duration_s, frame_count, width, height, error",
    "silver_clips": "clip_id, start_s, end_s, error",
    "silver_faces": "clip_id, n_tracks, faces_max, face_frac, error",
    "silver_crops": "clip_id, crop_side, n_frames, error",
    "silver_quality": "clip_id, n_samples, round(brightness_mean, 3) AS brightness, ocr_chars, error",
    "quarantine": "key, rule",
}


def snapshot(ctx, video_ids: set[str]) -> dict[str, list[tuple]]:
    out = {}
    for view, cols in COLUMNS.items():
        got = rows(ctx, f"SELECT {cols} FROM {view}")
        out[view] = sorted(tuple(r.values()) for r in got
                           if str(r.get("video_id") or r.get("clip_id") or r.get("key"))[:16] in video_ids)
    out["gold"] = sorted(r["clip_id"] for r in rows(ctx, "SELECT clip_id FROM gold_clips")
                         if r["clip_id"][:16] in video_ids)
    return out


def test_local_cluster_mode_matches_local_mode(full_run, shared_videos: Path, tmp_path: Path) -> None:
    local, _ = full_run
    src = tmp_path / "videos"
    src.mkdir()
    for name in VIDEOS:
        shutil.copy(shared_videos / name, src / name)
    engine = start_engine("local-cluster")
    try:
        assert engine.kind == "local-cluster"
        ctx = make_context(engine, write_config(tmp_path, tmp_path / "lake"), [str(src)])
        reports = {r.stage: r for r in run_pipeline(ctx, log=lambda m: None)}
        assert reports["faces"].pending > 0 and reports["gold"].rows > 0
        ids = {r["video_id"] for r in rows(ctx, "SELECT video_id FROM bronze_videos")}
        assert len(ids) == len(VIDEOS)
        assert snapshot(ctx, ids) == snapshot(local, ids)
    finally:
        engine.stop()
