"""Shared pytest fixtures: media fixtures, the S3 server and the Spark (Sail) session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

pytest_plugins = ["fixtures_media", "fixtures_s3", "tiny_vlm", "tiny_cogvideox", "fixtures_restore"]

REPO = Path(__file__).resolve().parents[1]
SHARED_VIDEOS = Path(os.environ.get("FACEVID_SHARED", REPO.parent / "shared")) / "data" / "videos"


@pytest.fixture(scope="session")
def shared_videos() -> Path:
    """The real talking-face clips in ../shared/data/videos (skip with a reason when absent)."""
    if not (SHARED_VIDEOS / "manifest.json").exists():
        pytest.skip(f"shared videos not found at {SHARED_VIDEOS}")
    return SHARED_VIDEOS


@pytest.fixture(scope="session")
def engine():
    """One embedded Sail engine for the whole test session (a real Spark Connect server)."""
    from facevid.jobs.engine import start_engine

    eng = start_engine("local")
    yield eng
    eng.stop()


@pytest.fixture(scope="session")
def full_run(engine, shared_videos: Path, tmp_path_factory):
    """The whole declared pipeline once on the 18 shared videos; shared by the e2e test modules,
    which must not change its lake (copy it first, see ``copy_lake``). Returns (ctx, reports)."""
    from facevid.jobs.runner import run_pipeline

    tmp = tmp_path_factory.mktemp("e2e")
    chunks = {"resources": {"commit_rows": 8}}  # several chunks (MERGE commits) per stage
    ctx = make_context(engine, write_config(tmp, tmp / "lake", {"split": chunks, "faces": chunks}), [str(shared_videos)])
    reports = run_pipeline(ctx, log=lambda m: None)
    return ctx, {r.stage: r for r in reports}


def copy_lake(ctx, tmp: Path, stages: dict | None = None):
    """A context on a private copy of ``ctx``'s (local) lake, with per-stage config overrides."""
    import shutil

    shutil.copytree(ctx.cfg.lake, tmp / "lake")
    return make_context(ctx.engine, write_config(tmp, tmp / "lake", stages), [s.uri for s in ctx.cfg.sources])


def write_config(tmp: Path, lake: Path | str, stages: dict | None = None, name: str = "pipeline.yml") -> Path:
    """A copy of the repo's pipeline.yml with per-stage overrides merged in (e.g. batch sizes)."""
    import yaml

    doc = yaml.safe_load((REPO / "pipeline.yml").read_text())
    doc["lake"] = str(lake)
    for decl in doc["stages"].values():  # paths relative to the repo's pipeline.yml stay valid
        params = decl.get("params") or {}
        for key, value in params.items():
            if key.endswith("_path") and isinstance(value, str) and not Path(value).is_absolute():
                params[key] = str(REPO / value)
    for stage, decl in (stages or {}).items():
        for key, value in decl.items():
            if isinstance(value, dict):
                doc["stages"][stage].setdefault(key, {}).update(value)
            else:
                doc["stages"][stage][key] = value
    path = tmp / name
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def make_context(engine, config: Path, sources: list[str]):
    """A runner Context on the session engine for ``config`` with ``sources``."""
    from facevid.jobs.config import load_config
    from facevid.jobs.lake import Lake
    from facevid.jobs.runner import Context

    cfg = load_config(config, sources=sources)
    return Context(cfg=cfg, engine=engine, lake=Lake(engine.spark, cfg.lake))


def rows(ctx, sql: str) -> list[dict]:
    """Run SQL over the context's lake views and return plain dicts."""
    from facevid.jobs.quarantine import register_views

    register_views(ctx)
    return [r.asDict() for r in ctx.spark.sql(sql).collect()]
