"""End to end on the real shared videos: ingest -> probe -> split -> faces on the embedded engine."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import cv2
import pytest
from conftest import copy_lake, rows

from facevid.jobs.runner import run_pipeline

pytestmark = [pytest.mark.e2e, pytest.mark.spark]

SINGLE = ["retalking_face1", "retalking_face2", "retalking_face3_aoc", "retalking_face4", "retalking_face5",
          "sadtalker_aoc", "lp_d11", "lp_d18", "lp_d19", "lp_d20", "lp_s32", "carphone_pristine"]


@pytest.fixture(scope="module")
def lake_run(full_run):
    return full_run


def per_file(ctx, sql: str) -> dict[str, dict]:
    return {r["file"]: r for r in rows(ctx, sql)}


def test_every_video_has_a_probe_row_matching_the_container(lake_run, shared_videos: Path) -> None:
    ctx, _ = lake_run
    manifest = {m["file"]: m for m in json.loads((shared_videos / "manifest.json").read_text())}
    got = per_file(ctx, "SELECT regexp_extract(uri, '[^/]+$', 0) AS file, * FROM bronze_videos")
    assert set(got) == set(manifest)
    for name, r in got.items():
        assert r["error"] is None, (name, r["error"])
        assert r["sha256"] == manifest[name]["sha256"]
        assert r["video_id"] == r["sha256"][:16]
        cap = cv2.VideoCapture(str(shared_videos / name))
        container_s = cap.get(cv2.CAP_PROP_FRAME_COUNT) / cap.get(cv2.CAP_PROP_FPS)
        cap.release()
        assert abs(r["duration_s"] - container_s) < 0.1, (name, r["duration_s"], container_s)
    assert got["lp_s13.mp4"]["width"] == 720 and got["lp_s13.mp4"]["height"] == 1080
    assert abs(got["retalking_face1.mp4"]["fps"] - 22.1) < 0.2


def test_bronze_files_hash_is_the_content_hash(lake_run, shared_videos: Path) -> None:
    ctx, _ = lake_run
    r = rows(ctx, "SELECT uri, sha256 FROM bronze_files WHERE uri LIKE '%lp_d18.mp4'")[0]
    assert r["sha256"] == hashlib.sha256(Path(r["uri"]).read_bytes()).hexdigest()


def test_clips_cover_videos_within_length_bounds(lake_run) -> None:
    ctx, _ = lake_run
    p = ctx.cfg.stages["split"].params
    clips = rows(ctx, "SELECT c.*, v.duration_s AS video_s FROM silver_clips c JOIN bronze_videos v USING (video_id)")
    good = [c for c in clips if c["error"] is None]
    assert good, "no clips"
    for c in good:
        assert p.min_clip_s - 1e-6 <= c["duration_s"] <= p.max_clip_s + 1e-6
        assert 0 <= c["start_s"] < c["end_s"] <= c["video_s"] + 0.05
    assert len({c["clip_id"] for c in clips}) == len(clips)
    hamilton = [c for c in clips if c["video_uri"].endswith("hamilton_short.mp4")]
    assert max(c["n_shots"] for c in hamilton) > 1


def test_face_facts_per_video(lake_run) -> None:
    ctx, _ = lake_run
    got = per_file(ctx, """
        SELECT regexp_extract(c.video_uri, '[^/]+$', 0) AS file, max(f.faces_max) AS faces_max,
               min(f.n_tracks) AS min_tracks, max(f.n_tracks) AS max_tracks, min(f.face_frac) AS face_frac,
               count(*) AS clips, count(f.error) AS errors
        FROM silver_faces f JOIN silver_clips c USING (clip_id)
        GROUP BY c.video_uri""")
    for name in SINGLE:
        r = got[f"{name}.mp4"]
        assert r["errors"] == 0
        assert r["min_tracks"] == 1 and r["max_tracks"] == 1, (name, r)
        assert r["face_frac"] >= 0.9, (name, r)
    assert got["hamilton_short.mp4"]["faces_max"] >= 2
    assert got["facenet_crowd_1080p.mp4"]["faces_max"] >= 4
    for neg in ("neg_cat.mp4", "neg_paragliding.mp4"):
        if neg in got:  # a too-short video has no clip to look at
            assert got[neg]["faces_max"] == 0, (neg, got[neg])


def test_main_track_geometry_in_source_pixels(lake_run) -> None:
    ctx, _ = lake_run
    r = rows(ctx, """SELECT f.*, v.width AS vw, v.height AS vh FROM silver_faces f
                     JOIN bronze_videos v USING (video_id) WHERE v.uri LIKE '%lp_d18.mp4'""")[0]
    assert len(r["track_boxes"]) == len(r["track_t"]) == r["n_samples"] > 0
    for x, y, w, h in r["track_boxes"]:
        assert x >= -5 and y >= -5 and x + w <= r["vw"] + 5 and y + h <= r["vh"] + 5
    assert 60 <= r["face_px"] <= 480
    assert all(len(lm) == 10 for lm in r["track_landmarks"])


def test_rerun_is_a_no_op(lake_run) -> None:
    ctx, first = lake_run
    before = {s.output: ctx.lake.version(s.output) for s in ctx.cfg.ordered()}
    runs_before = rows(ctx, "SELECT count(*) AS n FROM meta_runs")[0]["n"]
    again = run_pipeline(ctx, log=lambda m: None)
    row_stages = [s.name for s in ctx.cfg.ordered() if s.op not in ("gold.select", "identity.cluster", "review.tasks")]
    assert {r.stage: r.pending for r in again if r.stage in row_stages} == dict.fromkeys(row_stages, 0)
    assert {s.output: ctx.lake.version(s.output) for s in ctx.cfg.ordered()} == before  # nothing committed
    runs = rows(ctx, "SELECT stage, pending, input_version, output_version, inputs FROM meta_runs")
    assert len(runs) == runs_before + len(first) and {r["stage"] for r in runs} == set(first)
    gold = [r for r in runs if r["stage"] == "gold"][-1]
    assert set(json.loads(gold["inputs"])) == {*ctx.cfg.stages["gold"].inputs, "review.verdicts"}  # every input


def test_quarantine_mirrors_every_error_row(lake_run) -> None:
    ctx, _ = lake_run
    errs = rows(ctx, "SELECT clip_id, error FROM silver_clips WHERE error IS NOT NULL")
    q = rows(ctx, "SELECT * FROM quarantine WHERE stage = 'split'")
    assert {e["clip_id"] for e in errs} == {r["clip_id"] for r in q}
    for r in q:
        if r["rule"] == "split.min_clip_s":
            assert float(r["value"]) < float(r["threshold"])


def test_version_bump_reprocesses_and_drops_old_rows(lake_run, tmp_path: Path) -> None:
    ctx, _ = lake_run
    n = rows(ctx, "SELECT count(*) AS n FROM bronze_videos")[0]["n"]
    bumped = copy_lake(ctx, tmp_path, {"probe": {"version": 2}})
    reports = run_pipeline(bumped, ["probe", "split"], log=lambda m: None)
    assert [r.pending for r in reports] == [n, 0]  # same keys downstream: nothing to redo
    assert rows(bumped, "SELECT collect_set(stage_version) AS v, count(*) AS n FROM bronze_videos")[0] == \
        {"v": [2], "n": n}


def test_readme_sql_examples_run(lake_run) -> None:
    ctx, _ = lake_run
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    block = readme.split("```sql", 1)[1].split("```", 1)[0]
    queries = ["\n".join(line for line in chunk.splitlines() if not line.strip().startswith("--")).strip()
               for chunk in block.split(";")]
    queries = [q for q in queries if q]
    assert len(queries) >= 4
    for q in queries:
        assert isinstance(rows(ctx, q), list)
    hours = rows(ctx, queries[0])[0]
    assert hours["videos"] == 18 and 0.02 < hours["hours"] < 0.04


def test_cli_sql_status_and_history(lake_run, capsys) -> None:
    from facevid.jobs.cli import main

    ctx, _ = lake_run
    common = ["--config", str(ctx.cfg.path), "--lake", ctx.cfg.lake]
    assert main(["sql", *common, "--format", "json",
                 "SELECT count(*) AS n FROM bronze_videos WHERE error IS NULL"]) == 0
    assert json.loads(capsys.readouterr().out) == [{"n": 18}]
    assert main(["sql", *common, "--format", "csv", "SELECT rule, count(*) AS n FROM quarantine GROUP BY rule"]) == 0
    assert capsys.readouterr().out.startswith("rule,n\n")
    assert main(["sql", *common, "SELECT * FROM no_such_view"]) == 2
    assert "SQL failed" in capsys.readouterr().err
    assert main(["status", *common, "--source", ctx.cfg.sources[0].uri]) == 0
    status = capsys.readouterr().out
    assert "bronze.videos" in status and "silver.faces" in status
    assert main(["history", *common, "silver.faces", "--limit", "1"]) == 0
    assert json.loads(capsys.readouterr().out.splitlines()[0])["operation"] in ("WRITE", "MERGE")


def test_maintain_compacts_and_vacuums_without_changing_data(lake_run, capsys) -> None:
    from deltalake import DeltaTable

    from facevid.jobs.cli import main

    ctx, _ = lake_run
    path = ctx.lake.location("silver.faces")
    before_files = len(DeltaTable(path).file_uris())
    before = sorted(r["clip_id"] for r in rows(ctx, "SELECT clip_id FROM silver_faces"))
    assert before_files >= 2  # one file per chunk commit at least
    common = ["--config", str(ctx.cfg.path), "--lake", ctx.cfg.lake]
    orphan = Path(ctx.cfg.file_uri("restored")) / "gone_clip" / "0123.mp4"  # a restored file no table references
    orphan.parent.mkdir(parents=True, exist_ok=True)
    orphan.write_bytes(b"x")
    published = [r["crop_uri"] for r in rows(ctx, "SELECT crop_uri FROM gold_clips")]
    assert any("/restored/" in u for u in published)  # gold publishes restored crops too
    assert main(["maintain", *common, "--retain-hours", "0"]) == 2  # under 168 h needs --force
    assert "--force" in capsys.readouterr().err
    assert main(["maintain", *common, "--retain-hours", "0", "--force"]) == 0
    assert "silver.faces" in capsys.readouterr().out
    assert len(DeltaTable(path).file_uris()) == 1
    assert sorted(r["clip_id"] for r in rows(ctx, "SELECT clip_id FROM silver_faces")) == before
    assert len(list(Path(path).glob("*.parquet"))) == 1  # vacuum removed the compacted-away files
    assert ctx.lake.history("silver.faces", 1)[0]["operation"] in ("VACUUM END", "OPTIMIZE")
    assert not orphan.exists() and all(Path(u).is_file() for u in published)  # swept; what gold publishes stays
