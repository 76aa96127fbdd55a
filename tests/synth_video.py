"""Synthetic test videos written with PyAV (a few KB each): scenes with hard cuts at known times,
rotation, odd sizes, audio, damaged files. Plain functions, usable outside pytest too."""

from __future__ import annotations

import math
from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np

SIZE = (160, 120)  # width, height
FPS = 25


def scene_frame(scene: int, i: int, size: tuple[int, int] = SIZE) -> np.ndarray:
    """Frame ``i`` of scene ``scene``: a textured background in the scene's own colour, panning
    one pixel per frame, with a small moving square (so frames within a scene differ a little)."""
    w, h = size
    rng = np.random.default_rng(scene)
    texture = rng.integers(0, 256, (h // 8 + 2, w // 8 + 2), dtype=np.uint8)
    texture = cv2.resize(texture, ((w // 8 + 2) * 8, (h // 8 + 2) * 8), interpolation=cv2.INTER_LINEAR)
    hue = (scene * 60) % 180
    hsv = np.dstack([np.full_like(texture, hue), np.full_like(texture, 200), texture // 2 + 64])
    img = cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)
    shift = i % 8
    img = np.ascontiguousarray(img[shift : shift + h, shift : shift + w])
    x = 10 + (i * 2) % (w - 30)
    cv2.rectangle(img, (x, 40), (x + 20, 60), (255, 255, 255), -1)
    return img


AUDIO_RATE = 16000


def make_test_video(path: Path, seconds: float = 4.0, fps: int = 25, size: tuple[int, int] = (160, 120),
                    cuts: Sequence[float] = (), *, rotation: int = 0, codec: str = "libx264",
                    pix_fmt: str = "yuv420p", audio: bool = False,
                    container_options: dict[str, str] | None = None) -> Path:
    """A synthetic video of ``round(seconds * fps)`` frames of ``size`` (width, height) with hard
    scene cuts at ``cuts`` seconds: each scene has its own colour and texture plus a moving
    square. Optional display ``rotation`` (counter-clockwise degrees), a 440 Hz AAC track and
    muxer ``container_options`` (e.g. ``{"movflags": "faststart"}``)."""
    n = max(1, round(seconds * fps))
    cut_frames = [round(c * fps) for c in cuts]
    with av.open(str(path), "w", options=container_options or {}) as out:
        video = out.add_stream(codec, rate=fps)
        video.width, video.height = size
        video.pix_fmt = pix_fmt
        if codec == "libx264":
            video.options = {"crf": "28", "preset": "veryfast"}
        if rotation:
            video.set_display_rotation(rotation)
        sound = _aac(out) if audio else None
        for i in range(n):
            scene = sum(i >= c for c in cut_frames)
            out.mux(video.encode(av.VideoFrame.from_ndarray(scene_frame(scene, i, size), format="bgr24")))
        out.mux(video.encode())
        if sound is not None:
            _write_tone(out, sound, n / fps)
    return path


def make_timed_video(path: Path, times: Sequence[float], *, gop: int = 12, audio: bool = False,
                     size: tuple[int, int] = SIZE) -> Path:
    """A video whose frames have exactly the presentation ``times`` (seconds, on a 1/90000 time
    base): irregular steps make a variable-frame-rate file, a first time > 0 a stream whose
    ``start_time`` is not 0 (the optional tone starts at 0, before the video, as in phone files).
    libx264 with B-frames and a keyframe every ``gop`` frames, so spans start mid-GOP."""
    tb = Fraction(1, 90000)
    with av.open(str(path), "w", format="mp4") as out:
        video = out.add_stream("libx264", rate=25)
        video.width, video.height = size
        video.pix_fmt = "yuv420p"
        video.codec_context.time_base = tb
        video.options = {"crf": "28", "preset": "veryfast", "g": str(gop), "bf": "3"}
        sound = _aac(out) if audio else None
        for i, t in enumerate(times):
            frame = av.VideoFrame.from_ndarray(scene_frame(i // gop, i, size), format="bgr24")
            frame.pts, frame.time_base = round(t / tb), tb
            out.mux(video.encode(frame))
        out.mux(video.encode())
        if sound is not None:
            _write_tone(out, sound, float(times[-1]) + 0.04)
    return path


def make_audio_only(path: Path, seconds: float = 1.0) -> Path:
    """An AAC-only MP4 (an ``.m4a`` whatever its name says)."""
    with av.open(str(path), "w", format="mp4") as out:
        _write_tone(out, _aac(out), seconds)
    return path


def _aac(out: av.container.OutputContainer) -> av.AudioStream:
    stream = out.add_stream("aac", rate=AUDIO_RATE, layout="mono")
    stream.bit_rate = 16000  # keeps a second of tone at ~2 KB
    return stream


def _write_tone(out: av.container.OutputContainer, stream: av.AudioStream, seconds: float) -> None:
    t = np.arange(int(AUDIO_RATE * seconds)) / AUDIO_RATE
    tone = (0.3 * np.sin(2 * math.pi * 440 * t)).astype(np.float32)
    for start in range(0, len(tone), 1024):
        frame = av.AudioFrame.from_ndarray(tone[None, start:start + 1024], format="fltp", layout="mono")
        frame.sample_rate = AUDIO_RATE
        frame.pts = start
        out.mux(stream.encode(frame))
    out.mux(stream.encode())


def make_garbled_video(path: Path) -> Path:
    """An mp4 with an intact index (moov first) whose frame data is all 0xFF: it opens and
    demuxes, but no frame decodes."""
    make_test_video(path, seconds=1.0, container_options={"movflags": "faststart"})
    data = bytearray(path.read_bytes())
    start = data.index(b"mdat") + 4
    data[start:] = b"\xff" * (len(data) - start)
    path.write_bytes(bytes(data))
    return path
