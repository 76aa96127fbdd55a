"""Small generated media fixtures, hostile ones included (a few KB each, written with PyAV)."""

from __future__ import annotations

import math
from pathlib import Path

import av
import numpy as np
import pytest
from synth_video import scene_frame, write_scenes


def write_video(path: Path, frames: int, size: tuple[int, int], fps: int = 25, codec: str = "libx264",
                pix_fmt: str = "yuv420p", audio: bool = False) -> Path:
    """A synthetic video (moving texture), optionally with a 440 Hz AAC track."""
    with av.open(str(path), "w") as out:
        video = out.add_stream(codec, rate=fps)
        video.width, video.height = size
        video.pix_fmt = pix_fmt
        sound = out.add_stream("aac", rate=16000) if audio else None
        for i in range(frames):
            img = np.ascontiguousarray(_fit(scene_frame(0, i), size))
            out.mux(video.encode(av.VideoFrame.from_ndarray(img, format="bgr24")))
        out.mux(video.encode())
        if sound is not None:
            t = np.arange(int(16000 * frames / fps)) / 16000
            tone = (0.3 * np.sin(2 * math.pi * 440 * t)).astype(np.float32)
            for start in range(0, len(tone), 1024):
                frame = av.AudioFrame.from_ndarray(tone[None, start:start + 1024], format="fltp", layout="mono")
                frame.sample_rate = 16000
                out.mux(sound.encode(frame))
            out.mux(sound.encode())
    return path


def _fit(img: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    import cv2

    return cv2.resize(img, size, interpolation=cv2.INTER_AREA)


def make_hostile_set(folder: Path) -> dict[str, Path]:
    """Files every stage must survive: each ends as an error row or a correct row."""
    folder.mkdir(parents=True, exist_ok=True)
    files = {
        "zero": folder / "zero.mp4",
        "text": folder / "text.mp4",
        "truncated": folder / "truncated.mp4",
        "one_frame": write_video(folder / "one_frame.mp4", 1, (160, 120)),
        "rotated": write_scenes(folder / "rotated.mp4", [], 2.0, rotation=90),
        "odd": write_video(folder / "odd.mp4", 25, (161, 97), pix_fmt="yuv444p"),
        "talk": write_video(folder / "tiny_talk.mp4", 75, (160, 120), audio=True),
    }
    files["zero"].write_bytes(b"")
    files["text"].write_text("this is not a video\n" * 20)
    whole_path = write_video(folder / "whole.mp4", 50, (160, 120))
    whole = whole_path.read_bytes()
    whole_path.unlink()
    files["truncated"].write_bytes(whole[: int(len(whole) * 0.4)])
    return files


@pytest.fixture(scope="session")
def hostile_videos(tmp_path_factory) -> dict[str, Path]:
    return make_hostile_set(tmp_path_factory.mktemp("hostile"))
