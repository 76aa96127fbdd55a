"""The pipeline with both its source and its lake on a real S3 server (SeaweedFS)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from conftest import make_context, rows, write_config

from facevid.jobs.runner import run_pipeline

pytestmark = [pytest.mark.s3, pytest.mark.spark]


def test_s3_source_to_s3_lake(engine, s3_server, shared_videos: Path, tmp_path: Path) -> None:
    bucket = s3_server.bucket("facevid-e2e")
    client = s3_server.client()
    for name in ("lp_d18.mp4", "neg_cat.mp4"):
        client.upload_file(str(shared_videos / name), "facevid-e2e", f"raw/{name}")
    client.put_object(Bucket="facevid-e2e", Key="raw/broken.mp4", Body=b"not a video")
    ctx = make_context(engine, write_config(tmp_path, f"{bucket}/lake"), [f"{bucket}/raw"])
    assert ctx.cfg.lake == "s3://facevid-e2e/lake"
    reports = run_pipeline(ctx, log=lambda m: None)
    assert [r.pending for r in reports][:2] == [3, 3]
    videos = {r["uri"].rsplit("/", 1)[1]: r for r in rows(ctx, "SELECT * FROM bronze_videos")}
    assert videos["broken.mp4"]["error"].startswith("not_video")
    assert abs(videos["lp_d18.mp4"]["duration_s"] - 7.2) < 0.05
    faces = rows(ctx, "SELECT f.clip_id, f.faces_max, f.n_tracks, c.video_uri FROM silver_faces f "
                      "JOIN silver_clips c ON c.clip_id = f.clip_id")
    by_video = {r["video_uri"].rsplit("/", 1)[1]: r for r in faces}
    assert by_video["lp_d18.mp4"]["n_tracks"] == 1 and by_video["neg_cat.mp4"]["faces_max"] == 0
    keys = client.list_objects_v2(Bucket="facevid-e2e", Prefix="lake/silver/faces/_delta_log/")["KeyCount"]
    assert keys >= 1  # the Delta log really is in the bucket
    assert ctx.lake.version("silver.faces") >= 0 and ctx.lake.history("silver.faces")
    gold = rows(ctx, "SELECT crop_uri FROM gold_clips")
    assert len(gold) == 1 and re.fullmatch(  # immutable: <root>/<clip_id>/<digest>.mp4
        rf"s3://facevid-e2e/lake/crops/{by_video['lp_d18.mp4']['clip_id']}/[0-9a-f]{{20}}\.mp4", gold[0]["crop_uri"])
    head = client.head_object(Bucket="facevid-e2e", Key=gold[0]["crop_uri"].split("/", 3)[3])
    assert head["ContentLength"] > 10_000  # the crop is in the bucket
    results = client.list_objects_v2(Bucket="facevid-e2e", Prefix="lake/_validation/gold.clips/")["Contents"]
    assert any(o["Key"].endswith("latest.json") for o in results)  # the gate wrote its result to S3
    again = {r.stage: r for r in run_pipeline(ctx, log=lambda m: None)}
    assert all(again[s].pending == 0 for s in ("ingest", "probe", "split", "faces", "quality", "crops", "embed"))
    assert all(r.chunks == 0 for r in again.values())  # nothing committed on a re-run


def test_s3_sources_declare_identities_like_local_ones(engine, s3_server, tmp_path: Path) -> None:
    import yaml

    from facevid.jobs.config import load_config
    from facevid.jobs.lake import Lake
    from facevid.jobs.runner import Context

    bucket = s3_server.bucket("facevid-ids")
    client = s3_server.client()
    keys = ["vox/id10001/abc/00001.mp4", "vox/id10001/def/00001.mp4", "vox/id10002/abc/00001.mp4", "vox/00001.mp4"]
    for key in keys:
        client.put_object(Bucket="facevid-ids", Key=key, Body=key.encode())
    client.put_object(Bucket="facevid-ids", Key="ids.csv", Body=b"path,identity\nid10001/abc/00001.mp4,alice\n"
                      b"./id10002/abc/00001.mp4,bob\n00001.mp4,root_file\n../ids.csv,eve\n")
    got = {}
    for identity in ("folder", f"{bucket}/ids.csv"):
        cfg = write_config(tmp_path, tmp_path / "lake")
        doc = yaml.safe_load(cfg.read_text())
        doc["sources"] = [{"name": "vox", "uri": f"{bucket}/vox", "identity": identity}]
        cfg.write_text(yaml.safe_dump(doc))
        loaded = load_config(cfg, lake=str(tmp_path / f"lake_{len(got)}"))
        ctx = Context(cfg=loaded, engine=engine, lake=Lake(engine.spark, loaded.lake))
        run_pipeline(ctx, ["ingest"], log=lambda m: None)
        got[identity] = {r["uri"].split("/vox/", 1)[-1]: (r["identity"], (r["error"] or "").split(":")[0])
                         for r in rows(ctx, "SELECT uri, identity, error FROM bronze_files")}
    assert got["folder"] == {"id10001/abc/00001.mp4": ("id10001", ""), "id10001/def/00001.mp4": ("id10001", ""),
                             "id10002/abc/00001.mp4": ("id10002", ""), "00001.mp4": (None, "")}
    assert got[f"{bucket}/ids.csv"] == {
        "id10001/abc/00001.mp4": ("alice", ""), "id10001/def/00001.mp4": (None, ""),
        "id10002/abc/00001.mp4": ("bob", ""), "00001.mp4": ("root_file", ""),
        f"{bucket}/ids.csv#../ids.csv": (None, "manifest_path")}
