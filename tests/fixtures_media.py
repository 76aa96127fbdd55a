"""Hostile media fixtures: ``make_hostile_set`` (a plain function) and the session fixture
``hostile_videos`` wrapping it. The generators live in ``synth_video``."""

from __future__ import annotations

from pathlib import Path

import pytest
from synth_video import make_audio_only, make_test_video


def make_hostile_set(folder: Path) -> dict[str, Path]:
    """Files every stage must survive, keyed by file stem; each ends as an error row
    (zero, text, truncated, audio) or a correct row (one_frame, rotated, odd, tiny_talk)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    files = {
        "one_frame": make_test_video(folder / "one_frame.mp4", seconds=1 / 25),
        "rotated": make_test_video(folder / "rotated.mp4", seconds=1.0, size=(160, 96), rotation=90),
        "odd": make_test_video(folder / "odd.mp4", seconds=1.0, size=(161, 97), pix_fmt="yuv444p"),
        "audio": make_audio_only(folder / "audio.mp4"),
        "tiny_talk": make_test_video(folder / "tiny_talk.mp4", seconds=2.0, audio=True),
        "zero": folder / "zero.mp4",
        "text": folder / "text.mp4",
        "truncated": folder / "truncated.mp4",
    }
    files["zero"].write_bytes(b"")
    files["text"].write_text("this is not a video\n" * 20)
    whole = make_test_video(folder / "truncated.mp4", seconds=2.0).read_bytes()
    files["truncated"].write_bytes(whole[: int(len(whole) * 0.4)])
    return files


@pytest.fixture(scope="session")
def hostile_videos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The hostile set in a session temp folder that holds nothing else."""
    return make_hostile_set(tmp_path_factory.mktemp("hostile"))
