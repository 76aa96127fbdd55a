"""Shared pytest fixtures: media fixtures, the S3 server and the Spark (Sail) session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

pytest_plugins = ["fixtures_media", "fixtures_s3"]

REPO = Path(__file__).resolve().parents[1]
SHARED_VIDEOS = Path(os.environ.get("FACEVID_SHARED", REPO.parent / "shared")) / "data" / "videos"


@pytest.fixture(scope="session")
def shared_videos() -> Path:
    """The real talking-face clips in ../shared/data/videos (skip with a reason when absent)."""
    if not (SHARED_VIDEOS / "manifest.json").exists():
        pytest.skip(f"shared videos not found at {SHARED_VIDEOS}")
    return SHARED_VIDEOS
