"""Annotations end to end on the 18 shared videos (the shared ``full_run`` lake): ``silver.av`` and
``silver.captions`` (signals backend) for every cropped clip, gold carrying attributes and
captions, the gate's vocabulary checks, and the README's annotation SQL."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from conftest import REPO, rows

from facevid.udfs.annotate.vocabulary import load_vocabulary

pytestmark = [pytest.mark.e2e, pytest.mark.spark]


def readme_sql(marker: str) -> list[str]:
    """The statements of the README's SQL block that follows ``<!-- marker -->``."""
    text = (REPO / "README.md").read_text()
    block = re.search(rf"<!-- {marker} -->\s*```sql\n(.*?)```", text, re.S)
    assert block, f"README has no SQL block after <!-- {marker} -->"
    body = "\n".join(line for line in block.group(1).splitlines() if not line.strip().startswith("--"))
    return [s.strip() for s in body.split(";") if s.strip()]


def test_every_cropped_clip_is_captioned_by_the_signals_backend(full_run) -> None:
    ctx, reports = full_run
    crops = {r["clip_id"] for r in rows(ctx, "SELECT clip_id FROM silver_crops WHERE error IS NULL")}
    caps = {r["clip_id"]: r for r in rows(ctx, "SELECT * FROM silver_captions")}
    assert crops and crops <= set(caps)
    vocab = load_vocabulary()
    for r in caps.values():
        assert r["error"] is None, r["error"]
        assert r["backend"] == "signals" and r["model"].startswith("signals") and r["parse_method"] == "signals"
        assert r["ethnicity"] is None and list(r["appearance"]) == []  # never guessed
        assert set(r["action"]) <= set(vocab.attributes["action"].options)
        assert len(r["lighting"]) == 1 and r["lighting"][0] in {"Dark", "Dim", "Normal", "Bright"}
        assert r["caption"] and r["caption"][0].isupper() and r["caption"].endswith(".")
        assert r["vocabulary_version"] == vocab.version and r["oov"] == []
    assert reports["caption"].errors == 0


# Talking heads whose audio is speech (WebRTC VAD: speech_frac 0.6-0.99), and LivePortrait driving
# clips whose mouths move (lp_d18 exaggeratedly) over digitally silent audio tracks.
TALKING = ("retalking_face3_aoc.mp4", "retalking_face4.mp4", "retalking_face5.mp4", "sadtalker_aoc.mp4")
SILENT_TRACK = ("lp_d18.mp4", "lp_d19.mp4", "lp_s32.mp4")


def by_file(ctx) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for r in rows(ctx, "SELECT c.video_uri, a.*, cap.action FROM silver_av a JOIN silver_clips c ON c.clip_id = a.clip_id "
                       "JOIN silver_captions cap ON cap.clip_id = a.clip_id"):
        out.setdefault(r["video_uri"].rsplit("/", 1)[-1], []).append(r)
    return out


def test_signals_mark_talk_only_where_there_is_speech_and_count_blinks_and_head_turns(full_run) -> None:
    ctx, _ = full_run
    av = by_file(ctx)
    for name in TALKING:
        assert all(r["has_speech"] and "Talk" in r["action"] for r in av[name]), (name, av[name])
    for name in SILENT_TRACK:  # mouths move, nothing is heard
        assert all(r["has_speech"] is False and r["speech_frac"] == 0 and "Talk" not in r["action"]
                   for r in av[name]), name
    assert max(r["mouth_open_var"] for r in av["lp_d18.mp4"]) > 2e-4  # the mouth alone would have said Talk
    assert sum(r["blink_count"] for r in av["sadtalker_aoc.mp4"]) >= 5  # blinks seen on the frames
    assert sum(r["blink_count"] for r in av["retalking_face3_aoc.mp4"]) >= 3
    assert sum(r["shake_count"] for r in av["retalking_face1.mp4"]) >= 1  # two head turns
    assert "Shake Head" in av["retalking_face1.mp4"][0]["action"]
    mute = rows(ctx, "SELECT a.* FROM silver_av a JOIN silver_clips c ON c.clip_id = a.clip_id "
                     "WHERE c.video_uri LIKE '%carphone_pristine.mp4'")  # no audio stream (and no crop)
    assert mute and all(r["has_audio"] is False and r["av_offset_ms"] is None and r["av_note"] == "no audio"
                        for r in mute)


def test_gold_carries_attributes_captions_and_lip_sync(full_run) -> None:
    ctx, _ = full_run
    gold = rows(ctx, "SELECT g.*, c.caption AS silver_caption FROM gold_clips g "
                     "JOIN silver_captions c ON c.clip_id = g.clip_id")
    assert gold and len(gold) == rows(ctx, "SELECT count(*) AS n FROM gold_clips")[0]["n"]
    for g in gold:
        assert g["caption"] == g["silver_caption"] and g["caption_backend"] == "signals"
        assert isinstance(g["action"], list) and isinstance(g["lighting"], list)  # arrays stay arrays
        if g["av_sync_reliable"]:  # the lip-sync rule judged it
            assert g["has_speech"] and abs(g["av_offset_ms"]) <= 200
    talking = [g for g in gold if "Talk" in g["action"]]
    assert talking and all(g["has_speech"] for g in talking)
    # the gate checked the vocabulary on the candidate
    latest = json.loads((Path(ctx.cfg.file_uri("_validation")) / "gold.clips" / "latest.json").read_text())
    checked = {(x["expectation"], x["kwargs"].get("column")) for s in latest["suites"] for x in s["results"]}
    assert ("expect_column_values_to_be_in_set", "emotion") in checked
    assert ("expect_column_values_to_be_between", "gate_action_outside") in checked
    assert ("expect_column_values_to_be_between", "gate_rule_lip_sync") in checked


def test_readme_annotation_queries_run(full_run) -> None:
    ctx, _ = full_run
    statements = readme_sql("annotation-sql")
    assert len(statements) >= 5
    results = [rows(ctx, s) for s in statements]
    per_ethnicity, nod_dim, off_sync, actions, oov = results[:5]
    assert sum(r["clips"] for r in per_ethnicity) == rows(ctx, "SELECT count(*) AS n FROM gold_clips")[0]["n"]
    gold = rows(ctx, "SELECT clip_id, action, lighting FROM gold_clips")
    assert {r["clip_id"] for r in nod_dim} == {g["clip_id"] for g in gold
                                               if "Nod" in g["action"] and "Dim" in g["lighting"]}
    # talking clips whose offset reads > 100 ms (retalking_face1/_2 near +270-290, _4 at the edge)
    assert off_sync and all(abs(r["av_offset_ms"]) > 100 for r in off_sync)
    counts = {r["action"]: r["clips"] for r in actions}
    assert counts["Talk"] == sum("Talk" in g["action"] for g in gold) >= 5
    assert oov == []  # the signals backend answers in vocabulary terms only
