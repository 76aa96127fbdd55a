"""Curation end to end on the 18 shared videos: quality, crops, identities, gold, quarantine, gate."""

from __future__ import annotations

import json
from pathlib import Path

import av
import pytest
from conftest import copy_lake, rows

from facevid.jobs.runner import run_pipeline
from facevid.jobs.stages.base import GateError

pytestmark = [pytest.mark.e2e, pytest.mark.spark]

MULTI = {"facenet_crowd_1080p.mp4"}
FACELESS = {"neg_cat.mp4", "neg_paragliding.mp4"}
SAME_PERSON = ("retalking_face3_aoc.mp4", "sadtalker_aoc.mp4")


def file_of(uri: str) -> str:
    return uri.rsplit("/", 1)[-1]


def clips_by_file(ctx) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for r in rows(ctx, "SELECT clip_id, video_uri FROM silver_clips"):
        out.setdefault(file_of(r["video_uri"]), []).append(r["clip_id"])
    return out


def rules_by_file(ctx) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for r in rows(ctx, "SELECT q.rule, c.video_uri FROM quarantine q JOIN silver_clips c ON q.clip_id = c.clip_id"):
        out.setdefault(file_of(r["video_uri"]), set()).add(r["rule"])
    return out


def gold_files(ctx) -> set[str]:
    return {file_of(r["video_uri"]) for r in rows(ctx, "SELECT video_uri FROM gold_clips")}


def test_multi_person_and_faceless_videos_are_quarantined_with_the_right_rule(full_run) -> None:
    ctx, _ = full_run
    rules = rules_by_file(ctx)
    gold = gold_files(ctx)
    for name in MULTI:
        assert name not in gold and "gold.single_face" in rules[name], rules.get(name)
    for name in FACELESS:
        assert name not in gold and "gold.face_present" in rules[name], rules.get(name)
    # hamilton: the 4-person shot is rejected for its faces, whatever else it fails
    ham = rows(ctx, "SELECT q.rule FROM quarantine q JOIN silver_faces f ON q.clip_id = f.clip_id "
                    "WHERE f.n_tracks >= 2")
    assert {"gold.single_face"} <= {r["rule"] for r in ham}


def test_single_person_talking_heads_reach_gold(full_run) -> None:
    ctx, _ = full_run
    gold = gold_files(ctx)
    assert {"lp_d18.mp4", "lp_d19.mp4", "sadtalker_aoc.mp4", "retalking_face1.mp4", "retalking_face5.mp4"} <= gold
    assert not gold & (MULTI | FACELESS | {"lp_s13.mp4", "carphone_pristine.mp4", "carphone_distorted.mp4"})


def test_every_clip_outside_gold_says_why(full_run) -> None:
    ctx, _ = full_run
    outside = rows(ctx, "SELECT c.clip_id FROM silver_clips c LEFT ANTI JOIN gold_clips g ON g.clip_id = c.clip_id")
    explained = {r["clip_id"] for r in rows(ctx, "SELECT DISTINCT clip_id FROM quarantine WHERE clip_id IS NOT NULL")}
    assert outside and {r["clip_id"] for r in outside} <= explained
    gold_ids = {r["clip_id"] for r in rows(ctx, "SELECT clip_id FROM gold_clips")}
    assert not gold_ids & explained  # and nothing in gold is quarantined
    for r in rows(ctx, "SELECT rule, value, threshold FROM quarantine WHERE rule LIKE 'gold.%'"):
        assert r["value"] is not None and r["threshold"], r


def test_small_faces_are_not_upscaled_into_the_dataset(full_run) -> None:
    ctx, _ = full_run
    rules = rules_by_file(ctx)
    for name in ("lp_s13.mp4", "carphone_pristine.mp4"):
        assert "crops.min_crop_px" in rules[name], rules.get(name)
    crops = rows(ctx, "SELECT crop_side, crop_size FROM silver_crops WHERE error IS NULL")
    min_px = ctx.cfg.stages["crops"].params.min_crop_px
    assert crops and all(c["crop_side"] >= min_px for c in crops)


def test_gold_crops_are_512_mp4s_with_the_face_in_every_sampled_frame_and_audio_kept(full_run) -> None:
    from facevid.udfs.models.detectors import get_detector

    ctx, _ = full_run
    det = get_detector("mtcnn", None, 0.9, "cpu")
    gold = rows(ctx, "SELECT g.crop_uri, g.has_audio, v.has_audio AS source_audio, g.duration_s "
                     "FROM gold_clips g JOIN bronze_videos v ON v.video_id = g.video_id")
    assert gold
    for g in gold:
        with av.open(g["crop_uri"]) as c:
            vs = c.streams.video[0]
            assert (vs.codec_context.name, vs.width, vs.height) == ("h264", 512, 512)
            assert bool(c.streams.audio) == bool(g["source_audio"]) == bool(g["has_audio"])
            frames = [f.to_ndarray(format="bgr24") for f in c.decode(vs)]
        assert abs(len(frames) / float(vs.average_rate) - g["duration_s"]) < 0.2
        for frame in frames[:: max(1, len(frames) // 5)][:5]:
            boxes, _, _ = det.detect(frame)
            assert len(boxes) == 1, (g["crop_uri"], len(boxes))
            x, y, w, h = boxes[0]
            assert x >= 0 and y >= 0 and x + w <= 512 and y + h <= 512


def test_identities_merge_the_same_person_and_separate_the_rest(full_run) -> None:
    ctx, _ = full_run
    ident = {file_of(r["video_uri"]): r["identity_id"] for r in rows(
        ctx, "SELECT i.identity_id, c.video_uri FROM silver_identities i JOIN silver_clips c ON c.clip_id = i.clip_id "
             "JOIN silver_faces f ON f.clip_id = i.clip_id WHERE f.n_tracks = 1 AND c.start_s = 0")}
    a, b = SAME_PERSON
    assert ident[a] == ident[b]
    others = {n: i for n, i in ident.items() if n not in SAME_PERSON and not n.startswith("carphone")}
    assert len(set(others.values())) == len(others), others  # all different people
    assert ident[a] not in others.values()
    for pair in [("lp_d20.mp4", "lp_d11.mp4"), ("lp_d20.mp4", "retalking_face1.mp4"), ("lp_d11.mp4", "retalking_face1.mp4")]:
        assert ident[pair[0]] != ident[pair[1]], pair


def test_split_is_identity_disjoint_and_the_gate_passed(full_run) -> None:
    ctx, _ = full_run
    per = rows(ctx, "SELECT identity_id, count(DISTINCT split) AS n FROM gold_clips GROUP BY identity_id")
    assert per and all(p["n"] == 1 for p in per)
    latest = json.loads((Path(ctx.cfg.lake) / "_validation" / "gold.clips" / "latest.json").read_text())
    assert latest["success"] is True
    assert {s["table"] for s in latest["suites"]} == {"bronze.videos", "silver.clips", "silver.faces", "silver.quality",
                                                      "silver.identities", "gold.clips"}


def test_changing_a_threshold_rebuilds_gold_without_any_model_stage(full_run, tmp_path: Path) -> None:
    ctx, _ = full_run
    gold_before = {r["clip_id"]: r["split"] for r in rows(ctx, "SELECT clip_id, split FROM gold_clips")}
    sharp = sorted(r["sharpness_face"] for r in rows(
        ctx, "SELECT q.sharpness_face FROM silver_quality q JOIN gold_clips g ON g.clip_id = q.clip_id"))
    cut = (sharp[1] + sharp[2]) / 2  # drops the two least sharp gold clips
    strict = copy_lake(ctx, tmp_path, {"gold": {"params": {"rules": {
        **{n: {k: v for k, v in vars(r).items() if k != "name" and v is not None}
           for n, r in ctx.cfg.stages["gold"].params.rules.items()},
        "min_sharpness": {"column": "sharpness_face", "min": cut}}}}})
    version = strict.lake.version("gold.clips")
    with pytest.raises(GateError, match=f"gold.shrink: the candidate drops 2 of the {len(gold_before)} published clips"):
        run_pipeline(strict, log=lambda m: None)  # 20% of gold at once: not without --allow-shrink
    assert strict.lake.version("gold.clips") == version
    strict.allow_shrink = True
    reports = {r.stage: r for r in run_pipeline(strict, log=lambda m: None)}
    models = [s.name for s in strict.cfg.ordered() if s.name not in ("identities", "gold", "review_tasks")]
    assert all(reports[m].pending == 0 and reports[m].chunks == 0 for m in models), reports
    assert strict.lake.version("gold.clips") == version + 1
    gold_after = {r["clip_id"]: r["split"] for r in rows(strict, "SELECT clip_id, split FROM gold_clips")}
    assert len(gold_after) == len(gold_before) - 2 and set(gold_after) < set(gold_before)
    assert all(gold_before[c] == s for c, s in gold_after.items())  # nobody moved split
    dropped = rows(strict, "SELECT count(*) AS n FROM quarantine WHERE rule = 'gold.min_sharpness'")[0]["n"]
    assert dropped >= 2
