"""Small generated media (a few KB each, written with PyAV): synthetic scenes and hostile files.

Plain functions (``make_test_video``, ``make_hostile_set``) work outside pytest too; the
session fixture ``hostile_videos`` wraps ``make_hostile_set``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import av
import numpy as np
import pytest
from synth_video import scene_frame

AUDIO_RATE = 16000


def make_test_video(path: Path, seconds: float = 4.0, fps: int = 25, size: tuple[int, int] = (160, 120),
                    cuts: Sequence[float] = (), *, rotation: int = 0, codec: str = "libx264",
                    pix_fmt: str = "yuv420p", audio: bool = False) -> Path:
    """A synthetic video of ``round(seconds * fps)`` frames of ``size`` (width, height) with hard
    scene cuts at ``cuts`` seconds: each scene has its own colour and texture plus a moving
    square. Optional display ``rotation`` (counter-clockwise degrees) and a 440 Hz AAC track."""
    n = max(1, round(seconds * fps))
    cut_frames = [round(c * fps) for c in cuts]
    with av.open(str(path), "w") as out:
        video = out.add_stream(codec, rate=fps)
        video.width, video.height = size
        video.pix_fmt = pix_fmt
        if codec == "libx264":
            video.options = {"crf": "28", "preset": "veryfast"}
        if rotation:
            video.set_display_rotation(rotation)
        sound = out.add_stream("aac", rate=AUDIO_RATE, layout="mono") if audio else None
        for i in range(n):
            scene = sum(i >= c for c in cut_frames)
            out.mux(video.encode(av.VideoFrame.from_ndarray(scene_frame(scene, i, size), format="bgr24")))
        out.mux(video.encode())
        if sound is not None:
            _write_tone(out, sound, n / fps)
    return path


def make_audio_only(path: Path, seconds: float = 1.0) -> Path:
    """An AAC-only MP4 (an ``.m4a`` whatever its name says)."""
    with av.open(str(path), "w", format="mp4") as out:
        _write_tone(out, out.add_stream("aac", rate=AUDIO_RATE, layout="mono"), seconds)
    return path


def _write_tone(out: av.container.OutputContainer, stream: av.AudioStream, seconds: float) -> None:
    t = np.arange(int(AUDIO_RATE * seconds)) / AUDIO_RATE
    tone = (0.3 * np.sin(2 * math.pi * 440 * t)).astype(np.float32)
    for start in range(0, len(tone), 1024):
        frame = av.AudioFrame.from_ndarray(tone[None, start:start + 1024], format="fltp", layout="mono")
        frame.sample_rate = AUDIO_RATE
        frame.pts = start
        out.mux(stream.encode(frame))
    out.mux(stream.encode())


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
