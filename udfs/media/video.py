"""Frame decoding shared by every stage: the ONLY place that opens, seeks and decodes a time span.

Clock: ``t = (pts - stream.start_time) * time_base`` seconds of the first video stream, so the
first frame is at ~0.0 whatever the container's edit list or audio lead says. A frame without a
pts continues the previous timestamp (+ ``EPS``).

Span rule (one rule for every stage): a frame belongs to ``[start_s, end_s)`` when
``start_s - EPS <= t < end_s - EPS`` (``EPS`` = 1 us; ``end_s=None`` = to the end). A frame whose
time is exactly ``end_s`` belongs to the next clip; decoding stops at the first frame at or past
``end_s - EPS``.

Seek: to the keyframe at or before ``start_s``. If the first frame decoded after the seek is
later than ``start_s`` (a demuxer that seeks by dts, an imprecise index, a gap in a VFR stream),
the seek is retried 1, 2, 4, ... s earlier and finally from the start of the file, so a span
starting mid-GOP never loses its first frames.

``VideoSpan`` yields the raw ``av.VideoFrame`` objects (and, on request, the audio frames demuxed
in the same pass); ``iter_frames`` converts them to sampled, downscaled, upright arrays.
Frames are returned upright: a display-matrix rotation (phone videos) is applied to the array.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from fractions import Fraction
from typing import Any

import av
import cv2
import numpy as np

from facevid.udfs.base import StageError
from facevid.udfs.errors import check_deadline

# Display rotation (counter-clockwise degrees, as PyAV's ``VideoFrame.rotation``) -> cv2 rotate code.
_ROTATE = {
    90: cv2.ROTATE_90_COUNTERCLOCKWISE,
    -90: cv2.ROTATE_90_CLOCKWISE,
    270: cv2.ROTATE_90_CLOCKWISE,
    -270: cv2.ROTATE_90_COUNTERCLOCKWISE,
    180: cv2.ROTATE_180,
    -180: cv2.ROTATE_180,
}
EPS = 1e-6  # seconds: the span rule's tolerance


def in_span(t: float, start_s: float, end_s: float | None) -> bool:
    """The span rule: ``start_s - EPS <= t < end_s - EPS``."""
    return start_s - EPS <= t and (end_s is None or t < end_s - EPS)


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


def to_array(frame: av.VideoFrame, fmt: str = "bgr24", max_side: int | None = None) -> np.ndarray:
    """The frame as an upright array in ``fmt`` (``bgr24``, ``rgb24``, ``gray``), downscaled (area)
    by libswscale during the pixel-format conversion when ``max_side`` asks for it: no
    full-resolution copy is made only to be shrunk."""
    w, h = frame.width, frame.height
    if not max_side or max(w, h) <= max_side:
        arr = frame.to_ndarray(format=fmt)
    else:
        scale = max_side / max(w, h)
        arr = frame.to_ndarray(format=fmt, width=max(1, round(w * scale)), height=max(1, round(h * scale)),
                               interpolation="AREA")
    return upright(arr, frame.rotation)


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


class VideoSpan:
    """The span ``[start_s, end_s)`` of a video file's first video stream (a context manager).

    ``stream`` and ``audio`` (the first audio stream, only when asked for and present) are the
    PyAV streams; ``origin_s`` is the container time of ``t = 0``; ``fps`` the nominal rate.
    Raises ``StageError("decode")`` when the file cannot be opened, has no video or fails to decode.
    """

    def __init__(self, path: str, start_s: float = 0.0, end_s: float | None = None, audio: bool = False) -> None:
        self.path, self.start_s, self.end_s, self._want_audio = str(path), float(start_s or 0.0), end_s, audio
        self.video_done = False  # set once the span's last video frame has been yielded
        self._open()

    def _open(self) -> None:
        self.container, self.stream = _open(self.path)
        streams = self.container.streams
        self.audio: Any = streams.audio[0] if self._want_audio and streams.audio else None
        self.time_base: Fraction | None = self.stream.time_base
        self.origin: int = self.stream.start_time or 0

    @property
    def origin_s(self) -> float:
        return float(self.origin * self.time_base) if self.time_base is not None else 0.0

    @property
    def fps(self) -> Fraction:
        return self.stream.average_rate or self.stream.guessed_rate or Fraction(25)

    def close(self) -> None:
        self.container.close()

    def __enter__(self) -> VideoSpan:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def frames(self, audio: bool = False) -> Iterator[tuple[float, Any]]:
        """``(t, av.VideoFrame)`` for every frame of the span, in presentation order.

        With ``audio`` (and an audio stream opened), also ``(t, av.AudioFrame)`` for every audio
        frame demuxed in the same pass (``t`` its start on the same clock, NaN without a pts;
        untrimmed: the consumer cuts it). After the span's last video frame ``video_done`` is
        True and only audio frames follow until the file ends or the consumer stops iterating.
        A bad audio packet is skipped (a gap)."""
        with_audio = audio and self.audio is not None
        back = 0.0
        try:
            while True:
                target = self.start_s - back
                seeked = target > 0 and self.time_base is not None
                if seeked:
                    self.container.seek(self.origin + math.floor(target / self.time_base), stream=self.stream,
                                        backward=True, any_frame=False)
                elif back > 0:
                    self.close()  # last resort: decode from the first packet
                    self._open()
                if (yield from self._attempt(with_audio, checked=not seeked)):
                    return
                back = max(1.0, 2 * back)
        except av.FFmpegError as exc:
            raise StageError("decode", f"{self.path}: {exc}") from exc

    def _attempt(self, with_audio: bool, checked: bool) -> Iterator[tuple[float, Any]]:
        """One decoding pass from the current position; returns False (nothing yielded) when the
        first decoded frame is later than ``start_s`` and the seek must be retried earlier."""
        held: list[tuple[float, Any]] = []  # audio decoded before the seek is known good
        self.video_done = False
        last_t = -math.inf
        for frame in self._demux(with_audio):
            if isinstance(frame, av.AudioFrame):
                item = (float(frame.pts * frame.time_base) - self.origin_s if frame.pts is not None else math.nan,
                        frame)
                if checked:
                    yield item
                else:
                    held.append(item)
                continue
            t = float((frame.pts - self.origin) * self.time_base) if frame.pts is not None else last_t + EPS
            last_t = t
            if not checked:
                if frame.pts is not None and t > self.start_s + EPS:
                    return False  # frames before this one may belong to the span
                checked = True
                yield from held
            if t < self.start_s - EPS:
                continue
            if self.end_s is not None and t >= self.end_s - EPS:
                self.video_done = True
                if not with_audio:
                    return True
                continue
            yield t, frame
        return checked  # nothing decoded after a seek: retry earlier

    def _demux(self, with_audio: bool) -> Iterator[Any]:
        for packet in self.container.demux(*([self.stream, self.audio] if with_audio else [self.stream])):
            check_deadline()  # resources.timeout_s bounds a pathological decode
            if packet.stream is self.stream:
                if not self.video_done:
                    yield from packet.decode()
                continue
            try:
                decoded = packet.decode()
            except av.FFmpegError:
                continue  # a bad audio packet is a gap of silence
            yield from decoded


def iter_frames(
    path: str,
    start_s: float = 0.0,
    end_s: float | None = None,
    every_s: float | None = None,
    max_side: int | None = None,
    gray: bool = False,
) -> Iterator[tuple[float, np.ndarray]]:
    """Yield ``(t_seconds, frame)`` for the frames of the span ``[start_s, end_s)`` (module
    docstring) as upright BGR uint8 arrays, or 2-D gray when ``gray``.

    ``every_s`` keeps the first frame at/after each ``start_s + k * every_s`` (all frames when
    None). ``max_side`` downscales with INTER_AREA; only kept frames are converted to arrays.
    Raises ``StageError("decode")``.
    """
    if every_s is not None and every_s <= 0:
        raise ValueError(f"every_s must be > 0, got {every_s}")
    fmt = "gray" if gray else "bgr24"
    next_t = start_s
    with VideoSpan(path, start_s, end_s) as span:
        try:
            for t, frame in span.frames():
                if every_s is not None:
                    if t < next_t - EPS:
                        continue
                    next_t = start_s + (math.floor((t - start_s) / every_s + EPS) + 1) * every_s
                yield t, to_array(frame, fmt, max_side)
        except av.FFmpegError as exc:
            raise StageError("decode", f"{path}: {exc}") from exc
