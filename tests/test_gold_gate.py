"""The per-identity cap and the Great Expectations gate, on one real identity split into 13 clips.

sadtalker_aoc.mp4 (8 s, one person) is cut into 0.6 s clips, so silver holds 14 clips of one
identity: more than the paper's 10. Gold keeps the 10 best; a selection misconfigured to keep 12
is stopped by the gate: exit 3, gold stays at its previous version, the JSON names the expectation.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml
from conftest import REPO, make_context, rows, write_config

from facevid.jobs.cli import main
from facevid.jobs.runner import run_pipeline

pytestmark = [pytest.mark.spark, pytest.mark.e2e]

RULES = yaml.safe_load((REPO / "pipeline.yml").read_text())["stages"]["gold"]["params"]["rules"]
SHORT = {"split": {"params": {"max_clip_s": 0.6, "min_clip_s": 0.3}},
         "quality": {"params": {"ocr_frames": 1}},
         "gold": {"params": {"rules": {**RULES, "duration": {"column": "duration_s", "min": 0.3, "max": 15}}}}}


@pytest.fixture(scope="module")
def one_identity(engine, shared_videos: Path, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("gate")
    src = tmp / "videos"
    src.mkdir()
    shutil.copy(shared_videos / "sadtalker_aoc.mp4", src / "aoc.mp4")
    cfg = write_config(tmp, tmp / "lake", SHORT)
    ctx = make_context(engine, cfg, [str(src)])
    run_pipeline(ctx, log=lambda m: None)
    return ctx, cfg, src


def test_silver_breaks_the_cap_and_gold_keeps_the_ten_best(one_identity) -> None:
    ctx, _, _ = one_identity
    ident = rows(ctx, "SELECT identity_id, count(*) AS n FROM silver_identities GROUP BY identity_id")
    assert len(ident) == 1 and ident[0]["n"] == 14  # one person, 14 clips of 0.6 s in silver
    gold = rows(ctx, "SELECT clip_id, quality_rank, identity_clip_count FROM gold_clips")
    assert len(gold) == 10 and {g["identity_clip_count"] for g in gold} == {10}
    assert sorted(g["quality_rank"] for g in gold) == list(range(1, 11))
    capped = rows(ctx, "SELECT q.clip_id, q.value, q.threshold FROM quarantine q WHERE rule = 'gold.per_identity_max_clips'")
    assert len(capped) >= 2 and sorted(int(c["value"]) for c in capped) == list(range(11, 11 + len(capped)))
    # the ones left out are the least sharp of the 13
    sharp = {r["clip_id"]: r["sharpness_face"] for r in rows(ctx, "SELECT clip_id, sharpness_face FROM silver_quality")}
    kept = min(sharp[g["clip_id"]] for g in gold)
    assert all(sharp[c["clip_id"]] <= kept for c in capped)


def test_a_failed_gate_exits_3_and_keeps_the_previous_gold(one_identity, tmp_path: Path, capsys) -> None:
    ctx, _, src = one_identity
    before = ctx.lake.version("gold.clips")
    loose = {**SHORT, "gold": {"params": {**SHORT["gold"]["params"], "per_identity_max_clips": 12}}}
    cfg = write_config(tmp_path, Path(ctx.cfg.lake), loose)
    code = main(["run", "--config", str(cfg), "--source", str(src)])
    err = capsys.readouterr().err
    assert code == 3, err
    assert "gate failed" in err and "gate_identity_clips" in err
    assert ctx.lake.version("gold.clips") == before
    assert len(rows(ctx, "SELECT * FROM gold_clips")) == 10
    latest = json.loads((Path(ctx.cfg.lake) / "_validation" / "gold.clips" / "latest.json").read_text())
    assert latest["success"] is False
    failed = [r for s in latest["suites"] for r in s["results"] if not r["success"] and r["severity"] == "error"]
    assert [(r["expectation"], r["kwargs"]["column"]) for r in failed] == \
        [("expect_column_values_to_be_between", "gate_identity_clips")]
    assert failed[0]["unexpected_count"] == min(12, 10 + len(rows(ctx, "SELECT * FROM quarantine WHERE rule = "
                                                               "'gold.per_identity_max_clips'")))
    # the silver report (>= 95% of clips from identities with <= 10 clips) fails too, as a warning
    warn = [r for s in latest["suites"] for r in s["results"] if s["table"] == "silver.identities"
            and r["kwargs"].get("column") == "identity_clips"]
    assert warn and warn[0]["severity"] == "warn" and warn[0]["success"] is False
    runs = rows(ctx, "SELECT status FROM meta_runs WHERE stage = 'gold' ORDER BY started_at DESC LIMIT 1")
    assert runs[0]["status"] == "gate_failed"
