"""Lineage-correct increments on the shared pipeline lake: an upstream change re-runs exactly the
affected rows downstream, outputs of vanished inputs are removed, gold stays consistent."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import copy_lake, rows

from facevid.jobs.runner import pending_frame, run_pipeline, stale_frame
from facevid.jobs.stages import registry

pytestmark = [pytest.mark.e2e, pytest.mark.spark]

DOWNSTREAM = ("faces", "quality", "crops", "embed")


def keyed(ctx, table: str, key: str = "clip_id") -> dict[str, dict]:
    return {r[key]: r for r in ctx.current(table).drop("track_boxes", "track_landmarks", "track_scores",
                                                        "track_t", "embedding", "frame_hashes").toPandas()
            .to_dict("records")}


def test_resplit_reruns_only_the_clips_whose_span_changed(full_run, tmp_path: Path) -> None:
    base, _ = full_run
    before = {t: keyed(base, t) for t in ("silver.clips", "silver.faces", "silver.quality", "silver.crops")}
    gold_before = keyed(base, "gold.clips")
    long_videos = {c["video_id"] for c in before["silver.clips"].values() if c["duration_s"] > 8}
    assert long_videos, "the shared set has clips longer than 8 s"
    ctx = copy_lake(base, tmp_path, {"split": {"params": {"max_clip_s": 8.0}}})
    ctx.allow_shrink = True  # re-cut clips leave gold: more than gate.max_shrink of it here
    reports = {r.stage: r for r in run_pipeline(ctx, log=lambda m: None)}

    clips = keyed(ctx, "silver.clips")
    new_ids = set(clips) - set(before["silver.clips"])
    gone_ids = set(before["silver.clips"]) - set(clips)
    assert new_ids and gone_ids
    assert {clips[c]["video_id"] for c in new_ids} <= long_videos  # only long clips were cut again
    kept = set(clips) & set(before["silver.clips"])
    assert all(clips[c]["fingerprint"] == before["silver.clips"][c]["fingerprint"] for c in kept)
    assert reports["split"].pending == len({c["video_id"] for c in before["silver.clips"].values()})
    # downstream: exactly the new clips ran (those with faces), vanished clips were removed
    good_new = {c for c in new_ids if clips[c]["error"] is None}
    assert reports["faces"].pending == len(good_new)
    faces = keyed(ctx, "silver.faces")
    assert set(faces) == {c for c, r in clips.items() if r["error"] is None}
    assert reports["faces"].pruned == len([c for c in gone_ids if before["silver.clips"][c]["error"] is None])
    for c in kept & set(faces):  # untouched rows were not rewritten
        assert faces[c]["processed_at"] == before["silver.faces"][c]["processed_at"]
    for stage, table in (("quality", "silver.quality"), ("crops", "silver.crops")):
        out = keyed(ctx, table)
        assert not set(out) & gone_ids, stage
        assert reports[stage].pending <= len(good_new), stage
        assert all(out[c]["processed_at"] == before[table][c]["processed_at"] for c in kept & set(out)), stage
    # gold is consistent with the new clips, and no published clip changed split
    gold = keyed(ctx, "gold.clips")
    assert set(gold) <= set(clips)
    for c in set(gold) & set(gold_before):
        assert gold[c]["split"] == gold_before[c]["split"]
        assert gold[c]["published_at"] == gold_before[c]["published_at"]
    q = rows(ctx, "SELECT key FROM quarantine")
    assert not {r["key"] for r in q} & gone_ids  # the quarantine view follows the tables
    # and nothing is left to do
    for stage in DOWNSTREAM:
        spec = ctx.cfg.stages[stage]
        op = registry[spec.op]()
        inp = op.input_frame(ctx, spec)
        assert pending_frame(ctx, spec, op, inp).count() == 0, stage
        assert stale_frame(ctx, spec, op, inp).count() == 0, stage


def test_a_params_change_reprocesses_and_a_version_bump_may_add_columns(full_run, tmp_path: Path) -> None:
    base, _ = full_run
    ctx = copy_lake(base, tmp_path, {"embed": {"params": {"frames": 3}}})
    reports = {r.stage: r for r in run_pipeline(ctx, ["embed"], log=lambda m: None)}
    n = base.current("silver.embeddings").count()
    assert reports["embed"].pending == n and reports["embed"].chunks == 1 and reports["embed"].commits == 1
    assert ctx.current("silver.embeddings").count() == n
    # a new column on an existing table (schema evolution on MERGE)
    from facevid.jobs.stages.silver.identity import EmbedFaces

    class EmbedMore(EmbedFaces):
        name = "test.embed_more"
        columns = {**EmbedFaces.columns, "extra_col": "double"}

    registry[EmbedMore.name] = EmbedMore
    try:
        ctx2 = copy_lake(base, tmp_path / "more", {"embed": {"udf": "test.embed_more", "version": 2}})
        run_pipeline(ctx2, ["embed"], log=lambda m: None)
        out = ctx2.current("silver.embeddings")
        assert "extra_col" in out.columns and out.count() == n
        assert {r["stage_version"] for r in out.select("stage_version").collect()} == {2}
    finally:
        registry.pop(EmbedMore.name)


def test_a_gold_version_bump_keeps_splits_and_published_at(full_run, tmp_path: Path) -> None:
    base, _ = full_run
    before = keyed(base, "gold.clips")
    ledger = keyed(base, "gold.ledger")
    assert set(ledger) == set(before)  # every published clip is in the ledger
    ctx = copy_lake(base, tmp_path, {"gold": {"version": 2, "params": {"split": {"seed": 99}}}})
    report = run_pipeline(ctx, ["gold"], log=lambda m: None)[0]
    after = keyed(ctx, "gold.clips")
    assert set(after) == set(before) and report.rows == len(before)
    for c, row in after.items():
        assert (row["split"], row["published_at"]) == (before[c]["split"], before[c]["published_at"]), c
        assert row["stage_version"] == 2
    assert keyed(ctx, "gold.ledger") == ledger  # nothing new was published: the ledger is unchanged
