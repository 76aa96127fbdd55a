"""Frame decoding shared by every stage: PyAV with threaded decoding, seek, sampling, downscale.

Timestamps are seconds from the video stream's first presentation time (``start_time``), so the
first frame is at ~0.0 whatever the container's edit list says. Frames are returned upright:
a display-matrix rotation (phone videos) is applied to the array.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import av
import cv2
import numpy as np

from udfs.base import StageError

# Display rotation (counter-clockwise degrees, as PyAV's ``VideoFrame.rotation``) -> cv2 rotate code.
_ROTATE = {
    90: cv2.ROTATE_90_COUNTERCLOCKWISE,
    -90: cv2.ROTATE_90_CLOCKWISE,
    270: cv2.ROTATE_90_CLOCKWISE,
    -270: cv2.ROTATE_90_COUNTERCLOCKWISE,
    180: cv2.ROTATE_180,
    -180: cv2.ROTATE_180,
}
_EPS = 1e-6


def fit_max_side(img: np.ndarray, max_side: int | None) -> tuple[np.ndarray, float]:
    """Downscale (INTER_AREA) so ``max(h, w) <= max_side``; returns ``(image, scale)``, scale <= 1."""
    h, w = img.shape[:2]
    if not max_side or max(h, w) <= max_side:
        return img, 1.0
    scale = max_side / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return cv2.resize(img, size, interpolation=cv2.INTER_AREA), scale


def upright(img: np.ndarray, rotation: int) -> np.ndarray:
    """Apply a display rotation (counter-clockwise degrees) so the array is shown upright."""
    code = _ROTATE.get(int(rotation))
    return img if code is None else cv2.rotate(img, code)


def _to_array(frame: av.VideoFrame, fmt: str, max_side: int | None) -> np.ndarray:
    """The frame as an array, downscaled (area) by libswscale during the pixel-format conversion
    when ``max_side`` asks for it: no full-resolution BGR copy is made only to be shrunk."""
    w, h = frame.width, frame.height
    if not max_side or max(w, h) <= max_side:
        return frame.to_ndarray(format=fmt)
    scale = max_side / max(w, h)
    return frame.to_ndarray(format=fmt, width=max(1, round(w * scale)), height=max(1, round(h * scale)),
                            interpolation="AREA")


def _open(path: str) -> tuple[av.container.InputContainer, av.video.stream.VideoStream]:
    try:
        container = av.open(str(path))
    except (av.FFmpegError, OSError) as exc:
        raise StageError("decode", f"cannot open {path}: {exc}") from exc
    if not container.streams.video:
        container.close()
        raise StageError("decode", f"no video stream in {path}")
    stream = container.streams.video[0]
    stream.thread_type = "AUTO"
    return container, stream


def iter_frames(
    path: str,
    start_s: float = 0.0,
    end_s: float | None = None,
    every_s: float | None = None,
    max_side: int | None = None,
    gray: bool = False,
) -> Iterator[tuple[float, np.ndarray]]:
    """Yield ``(t_seconds, frame)`` for frames with ``start_s <= t < end_s`` (upright BGR uint8,
    or 2-D gray when ``gray``).

    ``every_s`` keeps the first frame at/after each ``start_s + k * every_s`` (all frames when
    None). ``max_side`` downscales with INTER_AREA. Seeks to the keyframe before ``start_s`` and
    decodes forward; only kept frames are converted to arrays. Raises ``StageError("decode")``.
    """
    if every_s is not None and every_s <= 0:
        raise ValueError(f"every_s must be > 0, got {every_s}")
    container, stream = _open(path)
    fmt = "gray" if gray else "bgr24"
    tb = stream.time_base
    origin = stream.start_time or 0
    next_t = start_s
    last_t = -math.inf
    try:
        if start_s > 0 and tb is not None:
            container.seek(origin + int(start_s / tb), stream=stream, backward=True, any_frame=False)
        for frame in container.decode(stream):
            # frames without a pts (rare, broken muxers) continue the previous timestamp
            t = float((frame.pts - origin) * tb) if frame.pts is not None else last_t + _EPS
            last_t = t
            if t < next_t - _EPS:
                continue
            if end_s is not None and t >= end_s - _EPS:
                break
            if every_s is not None:
                next_t = start_s + (math.floor((t - start_s) / every_s + _EPS) + 1) * every_s
            yield t, upright(_to_array(frame, fmt, max_side), frame.rotation)
    except av.FFmpegError as exc:
        raise StageError("decode", f"{path}: {exc}") from exc
    finally:
        container.close()
