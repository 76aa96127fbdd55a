"""Hostile inputs end as error rows (and quarantine rows) or correct rows; the run succeeds."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import make_context, rows, write_config

from jobs.runner import run_pipeline

pytestmark = [pytest.mark.spark]


@pytest.fixture(scope="module")
def hostile_run(engine, hostile_videos: dict[str, Path], tmp_path_factory):
    tmp = tmp_path_factory.mktemp("hostile")
    src = next(iter(hostile_videos.values())).parent
    cfg = write_config(tmp, tmp / "lake", {"split": {"params": {"min_clip_s": 0.5}}})
    ctx = make_context(engine, cfg, [str(src)])
    run_pipeline(ctx, log=lambda m: None)
    return ctx


def by_file(ctx, table: str) -> dict[str, dict]:
    return {r["file"]: r for r in rows(ctx, f"SELECT regexp_extract(uri, '[^/]+$', 0) AS file, * FROM {table}")}


def test_bad_files_are_error_rows_with_quarantine(hostile_run) -> None:
    videos = by_file(hostile_run, "bronze_videos")
    expect = {"zero.mp4": "empty", "text.mp4": "not_video", "truncated.mp4": ("truncated", "decode")}
    for name, category in expect.items():
        assert videos[name]["error"] is not None, name
        assert videos[name]["error"].split(":")[0] in (category if isinstance(category, tuple) else (category,))
    q = {r["key"]: r for r in rows(hostile_run, "SELECT * FROM quarantine WHERE stage = 'probe'")}
    for name in expect:
        assert q[videos[name]["video_id"]]["rule"].startswith("probe.")


def test_odd_rotated_and_one_frame_videos_are_correct_rows(hostile_run) -> None:
    videos = by_file(hostile_run, "bronze_videos")
    assert videos["rotated.mp4"]["error"] is None
    assert (videos["rotated.mp4"]["rotation"], videos["rotated.mp4"]["width"], videos["rotated.mp4"]["height"]) \
        == (90, 96, 160)
    assert (videos["odd.mp4"]["width"], videos["odd.mp4"]["height"]) == (161, 97)
    assert videos["one_frame.mp4"]["frame_count"] == 1


def test_every_file_is_accounted_for(hostile_run, hostile_videos: dict[str, Path]) -> None:
    files = by_file(hostile_run, "bronze_files")
    assert set(files) == {p.name for p in hostile_videos.values()}
    videos = by_file(hostile_run, "bronze_videos")
    clips = rows(hostile_run, "SELECT video_id, error FROM silver_clips")
    faces = rows(hostile_run, "SELECT clip_id, error FROM silver_faces")
    good = {v["video_id"] for v in videos.values() if v["error"] is None}
    assert good <= {c["video_id"] for c in clips}  # every probed video reached split
    assert len(faces) == sum(1 for c in clips if c["error"] is None)
