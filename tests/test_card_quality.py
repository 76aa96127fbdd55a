"""The dataset card's "Image quality per source" section (facevid.jobs.report_quality): on a copy of the
shared lake with tiny random ONNX aesthetic/IQA scorers, re-run through the runner, the section's
numbers equal a pandas computation over gold; without models it says "not configured"."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import copy_lake
from test_quality import tiny_onnx

from facevid.jobs.report import pyplot
from facevid.jobs.report_html import build_report
from facevid.jobs.report_quality import QUANTILES, SCORES, quality_frame, quality_sections, score_quantiles
from facevid.jobs.runner import run_pipeline

pytestmark = [pytest.mark.spark, pytest.mark.e2e]


def pandas_quantiles(gold: pd.DataFrame, score: str) -> pd.DataFrame:
    """The same numbers from the gold rows, with pandas."""
    rows = []
    for source, g in gold.groupby("source"):
        v = g[score].dropna()
        rows.append({"source": source, "clips": len(g), "scored": len(v), "mean": v.mean(),
                     **{k: v.quantile(q) for k, q in QUANTILES.items()}})
    return pd.DataFrame(rows)


def test_without_models_the_section_says_not_configured(full_run, tmp_path: Path) -> None:
    ctx, _ = full_run
    stats = score_quantiles(quality_frame(ctx), "aesthetic")
    assert stats["clips"].sum() > 0 and stats["scored"].sum() == 0 and stats["median"].isna().all()
    page = "".join(quality_sections(ctx, tmp_path, pyplot()))
    for score in SCORES:
        assert f"{score}: not configured (set stages.quality.params.{score}_path" in page
    assert "<img" not in page


def test_the_section_matches_pandas_over_gold_with_tiny_scorers(full_run, tmp_path: Path) -> None:
    from deltalake import DeltaTable

    ctx, _ = full_run
    models = {"aesthetic_path": tiny_onnx(tmp_path / "aesthetic.onnx", "S", 0.5),
              "iqa_path": tiny_onnx(tmp_path / "iqa.onnx", 32, -0.3)}
    copy = copy_lake(ctx, tmp_path, {"quality": {"params": models}})
    reports = {r.stage: r for r in run_pipeline(copy, ["quality", "gold"], log=lambda m: None)}
    assert reports["quality"].pending > 0  # the new params reprocess every clip
    raw = DeltaTable(copy.lake.location("gold.clips")).to_pandas()
    # split the one shared source in two by identity, so the section has several boxes
    ids = sorted(raw["identity_id"].unique())
    gold = raw.assign(source=raw["identity_id"].map({i: ("half_a" if n < len(ids) / 2 else "half_b")
                                                     for n, i in enumerate(ids)}))
    assert gold["aesthetic"].notna().all() and gold["iqa"].notna().all() and gold["fiqa"].isna().all()
    frame = copy.spark.createDataFrame(gold[["source", *SCORES]])
    for score in ("aesthetic", "iqa"):
        got = score_quantiles(frame, score)
        want = pandas_quantiles(gold, score)
        assert got["source"].tolist() == ["half_a", "half_b"]
        pd.testing.assert_frame_equal(got, want[got.columns], check_dtype=False, rtol=1e-9)
    assert gold["aesthetic"].nunique() > 1  # random weights still score clips differently

    page = build_report(copy, tmp_path / "card", n_examples=0)
    text = page.read_text()
    section = text[text.index("<h2>Image quality per source</h2>"):text.index("<h2>Identities</h2>")]
    assert "fiqa: not configured" in section and "aesthetic: not configured" not in section
    for score in ("aesthetic", "iqa"):
        assert f'src="quality_{score}.png"' in section and (page.parent / f"quality_{score}.png").stat().st_size > 0
        row = pandas_quantiles(raw, score).iloc[0]  # the lake's one source
        cells = re.findall(r"<td>([^<]*)</td>", section.split(f"<code>{score}</code>")[1].split("<h3>")[0])
        assert cells[:3] == [row["source"], str(row["clips"]), str(row["scored"])]
        assert np.allclose([float(c) for c in cells[3:]], [row[c] for c in ["mean", *QUANTILES]], rtol=1e-3)

    # an older gold without the score columns: the section joins them from silver.quality
    before = {s: score_quantiles(quality_frame(copy), s) for s in ("aesthetic", "iqa")}
    copy.lake.overwrite("gold.clips", copy.spark.createDataFrame(raw[["clip_id", "source", "identity_id"]]))
    assert not {*SCORES} & set(copy.current("gold.clips").columns)
    for score, stats in before.items():
        pd.testing.assert_frame_equal(score_quantiles(quality_frame(copy), score), stats)
