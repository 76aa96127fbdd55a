"""Ingest: content-hash ids, duplicates under two URIs, new files picked up by the next run."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from conftest import make_context, rows, write_config

from facevid.jobs.config import ConfigError
from facevid.jobs.runner import run_pipeline

pytestmark = [pytest.mark.spark]


def test_duplicates_and_incremental_ingest(engine, shared_videos: Path, tmp_path: Path) -> None:
    src = tmp_path / "videos"
    (src / "copy").mkdir(parents=True)
    shutil.copy(shared_videos / "lp_d18.mp4", src / "a.mp4")
    shutil.copy(shared_videos / "lp_d18.mp4", src / "copy" / "a_again.mp4")
    ctx = make_context(engine, write_config(tmp_path, tmp_path / "lake"), [str(src)])
    first = run_pipeline(ctx, ["ingest", "probe"], log=lambda m: None)
    assert [r.pending for r in first] == [2, 1]
    files = rows(ctx, "SELECT uri, video_id FROM bronze_files")
    assert len(files) == 2 and len({f["video_id"] for f in files}) == 1
    videos = rows(ctx, "SELECT uri FROM bronze_videos")
    assert [Path(v["uri"]).name for v in videos] == ["a.mp4"]  # the first URI wins

    shutil.copy(shared_videos / "neg_cat.mp4", src / "new.mp4")
    second = run_pipeline(ctx, ["ingest", "probe"], log=lambda m: None)
    assert [r.pending for r in second] == [1, 1]
    assert rows(ctx, "SELECT count(*) AS n FROM bronze_videos")[0]["n"] == 2


def test_missing_source_is_a_config_error(engine, tmp_path: Path) -> None:
    ctx = make_context(engine, write_config(tmp_path, tmp_path / "lake"), [str(tmp_path / "nowhere")])
    with pytest.raises(ConfigError, match="no such folder"):
        run_pipeline(ctx, ["ingest"], log=lambda m: None)


def test_stage_whose_input_does_not_exist_yet_fails_before_work(engine, shared_videos: Path, tmp_path: Path) -> None:
    ctx = make_context(engine, write_config(tmp_path, tmp_path / "lake"), [str(shared_videos)])
    with pytest.raises(ConfigError, match="input table silver.clips does not exist .* run stage split first"):
        run_pipeline(ctx, ["faces"], log=lambda m: None)
    assert not ctx.lake.exists("silver.faces") and not ctx.lake.exists("bronze.files")


def test_cli_run_with_a_missing_source_exits_2(tmp_path: Path, capsys) -> None:
    from facevid.jobs.cli import main

    cfg = write_config(tmp_path, tmp_path / "lake")
    assert main(["run", "--config", str(cfg), "--source", str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("facevid: error: source nowhere: no such folder") and err.count("\n") == 1


def _identity_config(tmp_path: Path, src: Path, identity: str) -> Path:
    import yaml

    cfg = write_config(tmp_path, tmp_path / "lake")
    doc = yaml.safe_load(cfg.read_text())
    doc["sources"] = [{"name": "talks", "uri": str(src), "license": "CC-BY", "identity": identity}]
    cfg.write_text(yaml.safe_dump(doc))
    return cfg


def test_sources_declare_identities_by_folder_or_manifest(engine, shared_videos: Path, tmp_path: Path) -> None:
    from facevid.jobs.config import load_config
    from facevid.jobs.lake import Lake
    from facevid.jobs.runner import Context

    src = tmp_path / "videos"
    (src / "id00017").mkdir(parents=True)
    shutil.copy(shared_videos / "lp_d18.mp4", src / "id00017" / "a.mp4")
    shutil.copy(shared_videos / "neg_cat.mp4", src / "loose.mp4")
    for identity, expected in [("folder", {"a.mp4": "id00017", "loose.mp4": None}),
                               ("ids.csv", {"a.mp4": None, "loose.mp4": "cat_42"})]:
        (tmp_path / "ids.csv").write_text("path,identity\nloose.mp4,cat_42\n")
        cfg = load_config(_identity_config(tmp_path, src, identity), lake=str(tmp_path / f"lake_{identity}"))
        ctx = Context(cfg=cfg, engine=engine, lake=Lake(engine.spark, cfg.lake))
        run_pipeline(ctx, ["ingest"], log=lambda m: None)
        got = {Path(r["uri"]).name: r["identity"] for r in rows(ctx, "SELECT uri, identity FROM bronze_files")}
        assert got == expected, identity


def _ingest_identities(engine, tmp_path: Path, src: Path, identity: str, lake: str) -> dict[str, dict]:
    from facevid.jobs.config import load_config
    from facevid.jobs.lake import Lake
    from facevid.jobs.runner import Context

    cfg = load_config(_identity_config(tmp_path, src, identity), lake=str(tmp_path / lake))
    ctx = Context(cfg=cfg, engine=engine, lake=Lake(engine.spark, cfg.lake))
    run_pipeline(ctx, ["ingest"], log=lambda m: None)
    return {r["uri"]: r for r in rows(ctx, "SELECT uri, identity, error, sha256 FROM bronze_files")}


def _voxceleb_tree(shared_videos: Path, tmp_path: Path) -> Path:
    src = tmp_path / "vox"
    for rel, clip in [("id10001/abc/00001.mp4", "lp_d18.mp4"), ("id10001/def/00001.mp4", "lp_d19.mp4"),
                      ("id10002/abc/00001.mp4", "lp_d20.mp4"), ("id10003/00001.mp4", "lp_s13.mp4"),
                      ("00001.mp4", "neg_cat.mp4")]:
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(shared_videos / clip, src / rel)
    return src


def test_folder_identity_is_the_first_folder_under_the_root(engine, shared_videos: Path, tmp_path: Path) -> None:
    src = _voxceleb_tree(shared_videos, tmp_path)
    got = _ingest_identities(engine, tmp_path, src, "folder", "lake_folder")
    assert {Path(u).relative_to(src).as_posix(): r["identity"] for u, r in got.items()} == {
        "id10001/abc/00001.mp4": "id10001", "id10001/def/00001.mp4": "id10001",
        "id10002/abc/00001.mp4": "id10002", "id10003/00001.mp4": "id10003", "00001.mp4": None}


def test_manifest_matches_relative_paths_only_and_rejects_escapes(engine, shared_videos: Path,
                                                                  tmp_path: Path) -> None:
    src = _voxceleb_tree(shared_videos, tmp_path)
    (tmp_path / "vox_outside.mp4").write_bytes(b"outside")
    manifest = tmp_path / "ids.csv"
    manifest.write_text("path,identity\n"
                        "id10001/abc/00001.mp4,alice\n"           # exact relative path
                        "./id10002//abc/00001.mp4,bob\n"          # ./ and // normalised
                        "id10003/x/../00001.mp4,carol\n"          # .. that stays inside the root
                        "00001.mp4,root_file\n"                   # the file in the root, not every 00001.mp4
                        "../vox_outside.mp4,eve\n"                # leaves the root: rejected
                        f"{src}/id10001/def/00001.mp4,mallory\n"  # absolute: rejected
                        "id10001/abc/../../../etc/passwd,eve\n"   # leaves the root after normalising
                        ",nobody\n")
    got = _ingest_identities(engine, tmp_path, src, str(manifest), "lake_manifest")
    files = {Path(u).relative_to(src).as_posix(): r for u, r in got.items() if not u.startswith(str(manifest))}
    assert {rel: r["identity"] for rel, r in files.items()} == {
        "id10001/abc/00001.mp4": "alice", "id10001/def/00001.mp4": None, "id10002/abc/00001.mp4": "bob",
        "id10003/00001.mp4": "carol", "00001.mp4": "root_file"}
    assert all(r["error"] is None and r["sha256"] for r in files.values())  # the run stays green
    rejected = {u: r for u, r in got.items() if u.startswith(str(manifest))}
    assert len(rejected) == 3 and all(r["sha256"] is None for r in rejected.values())
    assert sorted(r["error"].split(" line ")[1].split(":")[0] for r in rejected.values()) == ["6", "7", "8"]
    assert all(r["error"].startswith(f"manifest_path: {manifest} line ") for r in rejected.values())


def test_missing_identity_manifest_is_a_config_error(tmp_path: Path) -> None:
    from facevid.jobs.config import load_config

    with pytest.raises(ConfigError, match="identity: manifest .*nope.csv not found"):
        load_config(_identity_config(tmp_path, tmp_path, "nope.csv"))
