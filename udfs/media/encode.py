"""Encoding mp4 files: a clip's face crop (``encode_crop``), a video re-encoded through a frame
function (``transcode``, e.g. face restoration), and raw frames (``write_frames``).

One demux pass (``_encode_span``) feeds every video frame to a writer and collects the audio of
the same time range. Crops are cut on their YUV 4:2:0 planes (no full-frame colour conversion;
other pixel formats are converted to yuv420p first) and resized with OpenCV straight into the
output frame's buffer; ``transcode`` converts frames to RGB and back with swscale's accurate
rounding (a round trip moves no level). Both encode with libx264 keeping the source timestamps.
The audio is decoded, resampled, trimmed to the video's span (silence where the source has none)
and re-encoded with FFmpeg's native AAC encoder; video and audio both start at the first frame.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import av
import cv2
import numpy as np
from av.video.reformatter import Interpolation

from facevid.udfs.base import StageError
from facevid.udfs.media.video import VideoSpan, upright

_FAST_FORMATS = ("yuv420p", "yuvj420p")  # planes used as they are
_AAC_RATES = (96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000, 7350)
_AAC_FRAME = 1024
X264_PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow")
# YUV <-> RGB without a level shift: swscale's default rounding moves luma ~1 level per round trip
_EXACT = Interpolation.BICUBIC | Interpolation.ACCURATE_RND | Interpolation.FULL_CHR_H_INT


def rotate_box(x: int, y: int, side: int, degrees: int, w: int, h: int) -> tuple[int, int]:
    """Top-left corner of square ``(x, y, side)`` of a ``w x h`` image once the image is rotated
    by ``degrees`` counter-clockwise (multiples of 90; others leave it unchanged, like ``upright``)."""
    d = int(degrees) % 360
    if d == 90:
        return y, w - x - side
    if d == 180:
        return w - x - side, h - y - side
    if d == 270:
        return h - y - side, x
    return x, y


def coded_square(box: tuple[int, int, int], rotation: int, coded_w: int, coded_h: int
                 ) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
    """The upright square ``box`` in coded (stored) pixels, its corner moved to even coordinates
    (4:2:0 chroma alignment); returns ``(coded_box, upright_box)`` of the square actually cut."""
    x, y, side = box
    swap = int(rotation) % 180 == 90
    up_w, up_h = (coded_h, coded_w) if swap else (coded_w, coded_h)
    cx, cy = rotate_box(x, y, side, -rotation, up_w, up_h)
    cx, cy = cx - cx % 2, cy - cy % 2
    ux, uy = rotate_box(cx, cy, side, rotation, coded_w, coded_h)
    return (cx, cy, side), (ux, uy, side)


@dataclass
class _Audio:
    """Collects the decoded audio of ``[a0, a1)`` (absolute seconds) as resampled float planes."""

    stream: Any
    rate: int
    layout: str
    resampler: Any = None
    chunks: list[tuple[int, np.ndarray]] = field(default_factory=list)  # (absolute sample, planes)
    next_pos: int | None = None
    done: bool = False

    @classmethod
    def of(cls, stream: Any) -> _Audio:
        rate = int(stream.rate) if int(stream.rate or 0) in _AAC_RATES else 48000
        layout = "mono" if stream.channels == 1 else "stereo"
        return cls(stream, rate, layout, av.AudioResampler(format="fltp", layout=layout, rate=rate))

    def add(self, frame: Any, a0: float | None, a1: float | None) -> None:
        """Resample ``frame`` (``None`` flushes) and keep what falls in ``[a0, a1)``."""
        for out in self.resampler.resample(frame):
            if out.pts is not None:
                self.next_pos = round(float(out.pts * out.time_base) * self.rate)
            pos = self.next_pos or 0
            self.next_pos = pos + out.samples
            if a0 is not None and self.next_pos <= round(a0 * self.rate):
                continue  # before the clip
            if a1 is not None and pos >= round(a1 * self.rate):
                self.done = True
                continue
            self.chunks.append((pos, out.to_ndarray()))

    def encode(self, out: Any, ostream: Any, a0: float, a1: float) -> None:
        """Mux the samples of ``[a0, a1)`` (zeros where the source has none) from pts 0."""
        self.add(None, None, None)  # flush the resampler
        first, n = round(a0 * self.rate), round((a1 - a0) * self.rate)
        buf = np.zeros((1 if self.layout == "mono" else 2, n), np.float32)
        for pos, planes in self.chunks:
            lo, hi = max(pos, first), min(pos + planes.shape[1], first + n)
            if hi > lo:
                buf[:, lo - first:hi - first] = planes[:, lo - pos:hi - pos]
        for start in range(0, n, _AAC_FRAME):
            frame = av.AudioFrame.from_ndarray(buf[:, start:start + _AAC_FRAME], format="fltp", layout=self.layout)
            frame.sample_rate, frame.pts, frame.time_base = self.rate, start, Fraction(1, self.rate)
            out.mux(ostream.encode(frame))
        out.mux(ostream.encode())


class _Output:
    """An mp4 being written: libx264 video (strictly increasing pts from 0, the source time base)
    and, when ``audio`` is given, an AAC stream muxed at ``close``."""

    def __init__(self, out_path: str, width: int, height: int, fps: Fraction, time_base: Fraction | None,
                 full_range: bool, audio: _Audio | None, crf: int, preset: str, audio_kbps: int) -> None:
        self.full_range = full_range
        self.out = av.open(out_path, "w", format="mp4")
        self.video = self.out.add_stream("libx264", rate=fps)
        self.video.width, self.video.height = width, height
        self.video.pix_fmt = "yuv420p"
        if time_base is not None:
            self.video.codec_context.time_base = time_base
        if full_range:
            self.video.codec_context.color_range = 2
        self.video.options = {"crf": str(crf), "preset": preset}
        self.audio = self.out.add_stream("aac", rate=audio.rate, layout=audio.layout) if audio else None
        if self.audio is not None:
            self.audio.bit_rate = audio_kbps * 1000
        self.closed = False
        self.first_pts: int | None = None
        self.last_pts = -1
        self.n = 0

    def put(self, out: av.VideoFrame, pts: int | None, time_base: Fraction | None) -> None:
        """Encode ``out`` at source timestamp ``pts`` (None: the next one), shifted to start at 0."""
        if self.full_range:
            out.color_range = 2
        pts = pts if pts is not None else self.last_pts + 1
        if self.first_pts is None:
            self.first_pts = pts
        out.pts = max(pts - self.first_pts, self.last_pts + 1)  # strictly increasing for the muxer
        out.time_base = time_base
        self.last_pts = out.pts
        try:
            self.out.mux(self.video.encode(out))
        except av.FFmpegError as exc:
            raise StageError("encode", str(exc)) from exc
        self.n += 1

    def close(self, audio: _Audio | None, a0: float, a1: float) -> None:
        try:
            self.out.mux(self.video.encode())
            if audio is not None and self.audio is not None:
                audio.encode(self.out, self.audio, a0, a1)
            self.out.close()
        except av.FFmpegError as exc:
            raise StageError("encode", str(exc)) from exc
        self.closed = True

    def abort(self) -> None:
        """Close the output after a failure (the caller deletes the partial file)."""
        if not self.closed:
            self.closed = True
            with contextlib.suppress(Exception):
                self.out.close()


def _full_range(frame: Any) -> bool:
    return frame.format.name == "yuvj420p" or int(frame.color_range or 0) == 2


class _Writer(_Output):
    """Crops decoded frames into ``size x size`` yuv420p frames and encodes them."""

    def __init__(self, out_path: str, frame: Any, box: tuple[int, int, int], size: int, fps: Fraction,
                 audio: _Audio | None, crf: int, preset: str, audio_kbps: int) -> None:
        self.rotation = int(frame.rotation or 0)
        self.coded_box, self.box = coded_square(box, self.rotation, frame.width, frame.height)
        cx, cy, side = self.coded_box
        if min(cx, cy) < 0 or cx + side > frame.width or cy + side > frame.height:
            raise StageError("decode", f"crop {box} does not fit the decoded frame "
                                       f"({frame.width}x{frame.height}, rotation {self.rotation})")
        self.frame_size = (frame.width, frame.height)
        self.size = size
        self.interp = cv2.INTER_AREA if side > size else cv2.INTER_CUBIC
        self.buf = np.empty(size * size * 3 // 2, np.uint8)
        q = size * size // 4
        self.planes = [self.buf[:size * size].reshape(size, size),
                       self.buf[size * size:size * size + q].reshape(size // 2, size // 2),
                       self.buf[size * size + q:].reshape(size // 2, size // 2)]
        super().__init__(out_path, size, size, fps, frame.time_base, _full_range(frame), audio, crf, preset,
                         audio_kbps)

    def write(self, frame: Any) -> None:
        if (frame.width, frame.height) != self.frame_size:
            raise StageError("decode", f"frame size changes mid-clip: {self.frame_size} -> "
                                       f"{(frame.width, frame.height)}")
        if frame.format.name not in _FAST_FORMATS:
            frame = frame.reformat(format="yuv420p")
        x, y, side = self.coded_box
        for i, dst in enumerate(self.planes):
            k = 1 if i == 0 else 2
            plane = frame.planes[i]
            arr = np.frombuffer(plane, np.uint8).reshape(-1, plane.line_size)
            crop = upright(arr[y // k:(y + side) // k, x // k:(x + side) // k], self.rotation)
            if side == self.size:
                dst[...] = crop
            else:
                cv2.resize(crop, dst.shape[::-1], dst=dst, interpolation=self.interp)
        self.put(av.VideoFrame.from_ndarray(self.buf.reshape(self.size * 3 // 2, self.size), format="yuv420p"),
                 frame.pts, frame.time_base)


class _Frames(_Output):
    """Encodes processed RGB frames: ``process(indices, frames)`` on ``batch`` decoded frames at a
    time, each re-encoded at its source timestamp."""

    def __init__(self, out_path: str, frame: Any, fps: Fraction, audio: _Audio | None, crf: int, preset: str,
                 audio_kbps: int, process: Callable[[list[int], list[np.ndarray]], list[np.ndarray]],
                 batch: int) -> None:
        self.process, self.batch = process, max(1, int(batch))
        self.pending: list[tuple[int, int | None, np.ndarray]] = []  # (index, pts, RGB)
        self.index = 0
        self.time_base = frame.time_base
        self.range = 2 if _full_range(frame) else 1
        swap = int(frame.rotation or 0) % 180 == 90
        w, h = (frame.height, frame.width) if swap else (frame.width, frame.height)
        super().__init__(out_path, w, h, fps, frame.time_base, _full_range(frame), audio, crf, preset, audio_kbps)

    def write(self, frame: Any) -> None:
        rgb = upright(frame.reformat(format="rgb24", src_color_range=self.range, interpolation=_EXACT).to_ndarray(),
                      frame.rotation)
        self.pending.append((self.index, frame.pts, rgb))
        self.index += 1
        if len(self.pending) >= self.batch:
            self.flush()

    def flush(self) -> None:
        if not self.pending:
            return
        indices, pts, frames = zip(*self.pending, strict=True)
        self.pending = []
        done = self.process(list(indices), list(frames))
        if len(done) != len(frames):
            raise StageError("bug", f"frame processing returned {len(done)} frames for {len(frames)}")
        for p, src, rgb in zip(pts, frames, done, strict=True):
            if rgb.shape != src.shape:
                raise StageError("bug", f"frame processing changed a frame's shape {src.shape} -> {rgb.shape}")
            out = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
            self.put(out.reformat(format="yuv420p", dst_color_range=self.range, interpolation=_EXACT), p,
                     self.time_base)

    def close(self, audio: _Audio | None, a0: float, a1: float) -> None:
        self.flush()
        super().close(audio, a0, a1)


def _encode_span(path: str, start_s: float, end_s: float | None,
                 writer_for: Callable[[Any, Fraction, _Audio | None], _Output]) -> dict[str, Any]:
    """One demux pass of ``[start_s, end_s)``: every video frame to the writer ``writer_for``
    builds on the first one, the audio of the same range collected and encoded at the end."""
    writer: Any = None
    t_first = t_last = -math.inf
    with VideoSpan(path, start_s, end_s, audio=True) as span:
        v0, fps = span.origin_s, span.fps  # v0: container time of the video's t = 0
        audio = _Audio.of(span.audio) if span.audio is not None else None
        a1 = None if end_s is None else v0 + end_s
        try:
            for t, frame in span.frames(audio=True):
                if isinstance(frame, av.AudioFrame):
                    if audio is not None and not audio.done:
                        audio.add(frame, v0 + start_s, a1)
                    elif span.video_done:
                        break  # audio past the clip and every video frame written
                    continue
                if writer is None:
                    t_first = t
                    writer = writer_for(frame, fps, audio)
                t_last = t
                writer.write(frame)
            if writer is None:
                raise StageError("decode", f"no frames in [{start_s}, {end_s}) of {path}")
            writer.close(audio, v0 + t_first, v0 + t_last + 1 / float(fps))
        except av.FFmpegError as exc:
            raise StageError("decode", f"{path}: {exc}") from exc
        finally:
            if writer is not None:
                writer.abort()
    return {"writer": writer, "t_first": t_first, "t_last": t_last, "n_frames": writer.n, "fps": float(fps),
            "has_audio": audio is not None}


def encode_crop(path: str, start_s: float, end_s: float | None, box: tuple[int, int, int], size: int,
                out_path: str, crf: int = 18, preset: str = "veryfast", audio_kbps: int = 128) -> dict[str, Any]:
    """Crop upright square ``box`` (x, y, side in upright source pixels) out of every frame of the
    span ``[start_s, end_s)`` (``facevid.udfs.media.video``'s clock and span rule) into an mp4 at ``out_path``.

    Returns ``box`` (the square cut, corner on even coded pixels), ``t_first``/``t_last`` (pts
    times of the first and last written frame), ``n_frames``, ``fps``, ``has_audio``.
    Raises ``StageError("decode")`` (or ``"encode"``)."""
    done = _encode_span(path, start_s, end_s, lambda frame, fps, audio: _Writer(
        out_path, frame, box, size, fps, audio, crf, preset, audio_kbps))
    return {**{k: v for k, v in done.items() if k != "writer"}, "box": done["writer"].box}


def transcode(path: str, out_path: str, process: Callable[[list[int], list[np.ndarray]], list[np.ndarray]],
              batch: int = 16, crf: int = 18, preset: str = "veryfast", audio_kbps: int = 128) -> dict[str, Any]:
    """Re-encode every frame of the video at ``path`` through ``process``: upright RGB frames,
    ``batch`` at a time with their indices (0 = the first frame), returned as frames of the same
    shape; each is encoded (libx264 yuv420p, the source's colour range) at its source timestamp and
    rate, and the audio of the same span is kept (decoded, trimmed to the video like a crop's, and
    re-encoded as AAC). Returns ``t_first``/``t_last``, ``n_frames``, ``fps``, ``has_audio``.
    Raises ``StageError("decode")`` (or ``"encode"``)."""
    done = _encode_span(path, 0.0, None, lambda frame, fps, audio: _Frames(
        out_path, frame, fps, audio, crf, preset, audio_kbps, process, batch))
    return {k: v for k, v in done.items() if k != "writer"}


def write_frames(out_path: str, frames: np.ndarray, fps: float = 8.0, crf: int = 18) -> None:
    """Encode RGB frames ``(T, H, W, 3)`` uint8 as an H.264 mp4 (even sizes: libx264's yuv420p needs them)."""
    t, h, w, c = frames.shape
    if c != 3 or h % 2 or w % 2:
        raise ValueError(f"frames must be (T, H, W, 3) with even H and W, got {frames.shape}")
    with av.open(out_path, "w", format="mp4") as out:
        stream = out.add_stream("libx264", rate=Fraction(fps).limit_denominator(1000))
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        stream.options = {"crf": str(crf)}
        for frame in frames:
            out.mux(stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")))
        out.mux(stream.encode())
