"""The object store goes away: rows become transient errors, the server comes back, the next run
completes them (issue 7). A private SeaweedFS per test (``seaweedfs`` fixture: stopped and
started again on the same ports and data folder), the source in one of its buckets, the lake on
local disk, every stage through the real engine.

``facevid.udfs.media.storage.local_path`` keeps each thread's last download: before an outage the tests drop
those files (``_cleanup_downloads``), so a cached copy from an earlier run cannot hide it.

Retries: ``facevid.udfs.media.storage.s3_client`` sets its own (5 attempts, standard mode; ``AWS_MAX_ATTEMPTS``
does not override a client's explicit config), and a stopped server refuses connections at once,
so a whole outage run takes seconds (measured ~3 s; asserted under 60 s)."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
from conftest import make_context, rows, write_config
from pyspark.sql import functions as F

from facevid.jobs.quarantine import quarantine_frame
from facevid.jobs.runner import run_pipeline
from facevid.udfs.errors import category_of
from facevid.udfs.media import storage

pytestmark = [pytest.mark.s3, pytest.mark.spark]

VIDEOS = ("lp_d18.mp4", "retalking_face1.mp4", "neg_cat.mp4", "carphone_pristine.mp4")


def quiet(message: str) -> None:
    pass


def s3_source(weed, shared_videos: Path, bucket: str, names=VIDEOS) -> str:
    """Copies of real videos under ``s3://<bucket>/raw``; returns that prefix."""
    uri = weed.server.bucket(bucket)
    client = weed.server.client()
    for name in names:
        client.upload_file(str(shared_videos / name), bucket, f"raw/{name}")
    return f"{uri}/raw"


def by_name(ctx, sql: str) -> dict[str, dict]:
    return {r["uri"].rsplit("/", 1)[1]: r for r in rows(ctx, sql)}


def quarantined(ctx, stage: str) -> list[dict]:
    frame = quarantine_frame(ctx)
    return [] if frame is None else [r.asDict() for r in frame.filter(F.col("stage") == stage).collect()]


def assert_transient(error: str | None, kind: str | None) -> None:
    assert kind == "transient" and category_of(error) in ("s3", "io"), (error, kind)


def test_outage_rows_are_transient_and_the_next_run_completes_them(engine, seaweedfs, shared_videos,
                                                                   tmp_path: Path) -> None:
    source = s3_source(seaweedfs, shared_videos, "facevid-outage")
    ctx = make_context(engine, write_config(tmp_path, tmp_path / "lake"), [source])
    [ingest] = run_pipeline(ctx, ["ingest"], log=quiet)
    assert ingest.pending == 4 and ingest.errors == 0  # hashed from GetObject streams: nothing cached

    storage._cleanup_downloads()
    with seaweedfs.stopped():
        t0 = time.monotonic()
        probe, split = run_pipeline(ctx, ["probe", "split"], log=quiet)  # completes, no crash
        outage_s = time.monotonic() - t0
        assert (probe.pending, probe.rows, probe.errors) == (4, 4, 4)
        assert split.pending == 0 and split.rows == 0  # nothing good to split
        videos = by_name(ctx, "SELECT uri, video_id, error, error_kind, attempts, duration_s FROM bronze_videos")
        assert set(videos) == set(VIDEOS)
        for row in videos.values():
            assert_transient(row["error"], row["error_kind"])
            assert row["attempts"] == 1 and row["duration_s"] is None
        quarantine = quarantined(ctx, "probe")
        assert {q["key"] for q in quarantine} == {r["video_id"] for r in videos.values()}
        assert {q["kind"] for q in quarantine} == {"transient"} and {q["attempts"] for q in quarantine} == {1}
        assert {q["rule"] for q in quarantine} <= {"probe.s3", "probe.io"}
    assert outage_s < 60, f"the outage run took {outage_s:.0f} s (boto3 retries)"

    # the server is back (same endpoint, same objects): the transient rows are pending again
    probe, split = run_pipeline(ctx, ["probe", "split"], log=quiet)
    assert (probe.pending, probe.rows, probe.errors) == (4, 4, 0)
    assert split.pending == 4
    videos = by_name(ctx, "SELECT uri, video_id, error, error_kind, attempts, duration_s FROM bronze_videos")
    assert all(r["error"] is None and r["error_kind"] is None and r["attempts"] == 2 for r in videos.values())
    assert abs(videos["lp_d18.mp4"]["duration_s"] - 7.2) < 0.05
    counts = rows(ctx, "SELECT count(*) AS n, count(DISTINCT video_id) AS k FROM bronze_videos")[0]
    assert counts == {"n": 4, "k": 4}  # every key exactly once
    clips = rows(ctx, "SELECT clip_id, video_id, error_kind FROM silver_clips")
    assert {c["video_id"] for c in clips} == {r["video_id"] for r in videos.values()}
    assert len({c["clip_id"] for c in clips}) == len(clips) and all(c["error_kind"] != "transient" for c in clips)
    assert quarantined(ctx, "probe") == []

    again = run_pipeline(ctx, ["ingest", "probe", "split"], log=quiet)
    assert [(r.stage, r.pending, r.chunks) for r in again] == [("ingest", 0, 0), ("probe", 0, 0), ("split", 0, 0)]


def test_server_stopped_mid_stage(engine, seaweedfs, shared_videos, tmp_path: Path) -> None:
    """The server stops after the first chunk of split is published (one video per chunk): that
    chunk's clips stay, every later video is one transient ``<video_id>_err`` row; the next run
    re-splits only those, and their error rows make way for their clips."""
    source = s3_source(seaweedfs, shared_videos, "facevid-midstage")
    one = {"resources": {"commit_rows": 1}}
    ctx = make_context(engine, write_config(tmp_path, tmp_path / "lake", {"split": one}), [source])
    run_pipeline(ctx, ["ingest", "probe"], log=quiet)

    def stop_after_first_rows(message: str) -> None:
        published = re.search(r"split: chunk \d+/\d+ published \((\d+) rows\)", message)
        if published and int(published[1]) > 0 and seaweedfs.running:
            seaweedfs.stop()

    storage._cleanup_downloads()
    [split] = run_pipeline(ctx, ["split"], log=stop_after_first_rows)
    assert not seaweedfs.running and split.pending == 4 and split.chunks == 4
    clips = rows(ctx, "SELECT clip_id, video_id, error, error_kind, attempts FROM silver_clips")
    failed = {c["video_id"] for c in clips if c["error_kind"] == "transient"}
    kept = {c["video_id"] for c in clips if c["error"] is None}
    assert failed and kept and not failed & kept and len(failed | kept) == 4
    for c in clips:
        if c["video_id"] in failed:
            assert c["clip_id"] == f"{c['video_id']}_err" and c["attempts"] == 1
            assert_transient(c["error"], c["error_kind"])
    assert {q["key"] for q in quarantined(ctx, "split") if q["kind"] == "transient"} == {f"{v}_err" for v in failed}

    seaweedfs.start()  # same ports, same data
    [split] = run_pipeline(ctx, ["split"], log=quiet)
    assert split.pending == len(failed)
    clips = rows(ctx, "SELECT clip_id, video_id, error, error_kind, attempts FROM silver_clips")
    assert not any(c["clip_id"].endswith("_err") for c in clips)  # the error rows made way
    assert {c["video_id"] for c in clips} == failed | kept and len({c["clip_id"] for c in clips}) == len(clips)
    assert {c["attempts"] for c in clips if c["video_id"] in failed} == {2}
    assert {c["attempts"] for c in clips if c["video_id"] in kept} == {1}
    assert all(c["error_kind"] != "transient" for c in clips)
    [split] = run_pipeline(ctx, ["split"], log=quiet)
    assert split.pending == 0


def test_max_attempts_1_is_not_retried_but_retry_errors_s3_requeues(engine, seaweedfs, shared_videos,
                                                                    tmp_path: Path) -> None:
    source = s3_source(seaweedfs, shared_videos, "facevid-once", VIDEOS[:2])
    once = {"resources": {"max_attempts": 1}}
    ctx = make_context(engine, write_config(tmp_path, tmp_path / "lake", {"probe": once}), [source])
    run_pipeline(ctx, ["ingest"], log=quiet)
    storage._cleanup_downloads()
    with seaweedfs.stopped():
        [probe] = run_pipeline(ctx, ["probe"], log=quiet)
        assert (probe.pending, probe.errors) == (2, 2)
    for row in rows(ctx, "SELECT error, error_kind, attempts FROM bronze_videos"):
        assert_transient(row["error"], row["error_kind"])
        assert row["attempts"] == 1

    [probe] = run_pipeline(ctx, ["probe"], log=quiet)  # the server is back, but no attempt is left
    assert (probe.pending, probe.errors) == (0, 2)
    assert {q["kind"] for q in quarantined(ctx, "probe")} == {"transient"}

    ctx.retry = {"s3"}  # facevid run --retry-errors s3
    [probe] = run_pipeline(ctx, ["probe"], log=quiet)
    assert (probe.pending, probe.errors) == (2, 0)
    assert {r["attempts"] for r in rows(ctx, "SELECT attempts FROM bronze_videos")} == {2}
    [probe] = run_pipeline(ctx, ["probe"], log=quiet)
    assert probe.pending == 0 and quarantined(ctx, "probe") == []
