"""Synthetic test videos written with PyAV: scenes with hard cuts at known times."""

from __future__ import annotations

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


def write_scenes(path: Path, cuts_s: list[float], duration_s: float, rotation: int = 0) -> Path:
    """An H.264 video of ``len(cuts_s) + 1`` scenes cut at ``cuts_s`` (25 fps, 160x120)."""
    n = round(duration_s * FPS)
    cut_frames = [round(c * FPS) for c in cuts_s]
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=FPS)
        stream.width, stream.height = SIZE
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": "18", "g": "50"}
        if rotation:
            stream.set_display_rotation(rotation)
        for i in range(n):
            scene = sum(i >= c for c in cut_frames)
            frame = av.VideoFrame.from_ndarray(scene_frame(scene, i), format="bgr24")
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return path
