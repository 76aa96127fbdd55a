"""The dataset card on the full e2e lake and on a lake where only the first stages ran."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from conftest import make_context, rows, write_config

from facevid.jobs.report import funnel, load_tables, rule_lines, split_summary
from facevid.jobs.report_html import build_report
from facevid.jobs.runner import run_pipeline

pytestmark = [pytest.mark.spark, pytest.mark.e2e]


def test_card_on_the_full_lake(full_run, tmp_path: Path) -> None:
    ctx, _ = full_run
    page = build_report(ctx, tmp_path / "card", n_examples=2)
    text = page.read_text()
    images = re.findall(r'src="([^"]+)"', text)
    assert "identities.png" in images and "funnel.png" in images and any(i.startswith("ex_") for i in images)
    for name in images:
        head = (tmp_path / "card" / name).read_bytes()[:4]
        assert head in (b"\x89PNG", b"\xff\xd8\xff\xe0", b"\xff\xd8\xff\xdb", b"\xff\xd8\xff\xe1"), name
    tables = load_tables(ctx)
    summary = split_summary(tables)
    gold = rows(ctx, "SELECT split, count(*) AS n FROM gold_clips GROUP BY split")
    assert {r.split: r.clips for r in summary.itertuples()} == {g["split"]: g["n"] for g in gold}
    _, per_rule = funnel(tables)
    sql = rows(ctx, "SELECT rule, count(DISTINCT key) AS n FROM quarantine GROUP BY rule")
    assert dict(zip(per_rule["rule"], per_rule["clips"], strict=True)) == {r["rule"]: r["n"] for r in sql}
    lines = {r["rule"]: r for r in rule_lines(ctx, tables)}
    assert lines["min_sharpness"]["min"] == ctx.cfg.stages["gold"].params.rules["min_sharpness"].min
    assert 0 < lines["min_sharpness"]["fail_share"] < 1 and "rule_min_sharpness.png" in images


def test_card_on_a_lake_with_only_bronze(engine, shared_videos: Path, tmp_path: Path, capsys) -> None:
    from facevid.jobs.cli import main

    cfg = write_config(tmp_path, tmp_path / "lake")
    ctx = make_context(engine, cfg, [str(shared_videos / "lp_d18.mp4")])
    run_pipeline(ctx, ["ingest", "probe"], log=lambda m: None)
    assert main(["report", "--config", str(cfg), "--out", str(tmp_path / "card")]) == 0
    assert "dataset card:" in capsys.readouterr().out
    text = (tmp_path / "card" / "index.html").read_text()
    assert "not available" in text and "resolution.png" in text
    assert main(["report", "--config", str(cfg), "--files", str(tmp_path / "files")]) == 0  # default: <files>/_report
    assert (tmp_path / "files" / "_report" / "index.html").is_file()
    assert main(["report", "--config", str(cfg), "--lake", "uc:main.facevid"]) == 2  # a uc: lake needs --files


def test_an_s3_card_is_built_locally_then_uploaded(tmp_path: Path, monkeypatch) -> None:
    import facevid.jobs.report_html
    import facevid.udfs.media.storage
    from facevid.jobs.cli import write_report

    def fake_build(ctx, out, n):
        Path(out).mkdir(parents=True, exist_ok=True)
        (Path(out) / "index.html").write_text("<html>")
        (Path(out) / "funnel.png").write_bytes(b"png")
        return Path(out) / "index.html"

    uploaded = {}
    monkeypatch.setattr(facevid.jobs.report_html, "build_report", fake_build)
    monkeypatch.setattr(facevid.udfs.media.storage, "put_file", lambda local, uri: uploaded.setdefault(uri, Path(local).read_bytes()))
    assert write_report(None, "s3://b/files/_report/", 2) == "s3://b/files/_report/index.html"
    assert uploaded == {"s3://b/files/_report/funnel.png": b"png", "s3://b/files/_report/index.html": b"<html>"}
    assert write_report(None, str(tmp_path / "card"), 2) == str(tmp_path / "card" / "index.html")
