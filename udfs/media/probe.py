"""Container facts of one video from a single demux pass (packets only) plus one decoded frame.

Rules (all measured from the video stream's packets, not from header claims):

- ``frame_count``: number of video packets (discard-flagged ones excluded).
- ``duration_s``: last packet end (pts + duration) minus the first pts; the container's duration
  when packets carry no timestamps; a one-packet video without a packet duration lasts 1/rate.
- ``fps``: frame_count / duration_s (equals the stream's ``average_rate`` for ordinary files).
- ``frame_interval_cv``: coefficient of variation (std / mean) of the intervals between
  consecutive presentation timestamps sorted by pts; ``is_vfr`` is ``frame_interval_cv > 0.05``
  (constant-rate video has CV ~0; a 22 fps clip on a 30 fps grid alternating 1- and 2-tick
  intervals has ~0.35).
- ``rotation``: the display matrix of the first decoded frame as counter-clockwise degrees
  (PyAV's ``VideoFrame.rotation``, the convention of ``VideoStream.set_display_rotation``),
  normalised to 0/90/180/270. A phone clip tagged ``rotate=90`` (clockwise) reads 270.
- ``coded_width``/``coded_height``: the stored frame size; ``width``/``height``: display size,
  swapped for 90/270 rotation (sample aspect ratio is not applied).
- ``bit_rate``: video bits per second from the packet sizes over ``duration_s``.

Hostile input raises ``StageError``: ``missing`` (no such file), ``empty`` (0 bytes),
``not_video`` (not a media container, or no video stream, e.g. audio only), ``truncated`` (a
video container whose index or tail is cut: moov/EBML header without a readable index, fewer
packets than the index lists, a corrupt last packet, or no video packets) and ``decode`` (no
frame decodes).
"""

from __future__ import annotations

import os
from typing import Any

import av
import numpy as np

from facevid.udfs.base import StageError

VFR_CV = 0.05

PROBE_COLUMNS: dict[str, str] = {
    "duration_s": "double",
    "fps": "double",
    "is_vfr": "boolean",
    "frame_interval_cv": "double",
    "frame_count": "long",
    "width": "int",
    "height": "int",
    "coded_width": "int",
    "coded_height": "int",
    "rotation": "int",
    "codec": "string",
    "pix_fmt": "string",
    "bit_rate": "long",
    "has_audio": "boolean",
    "audio_codec": "string",
    "container": "string",
}


def _looks_like_video_container(head: bytes) -> bool:
    """Magic bytes of ISO-BMFF (mp4/mov), Matroska/WebM and AVI."""
    return head[4:8] == b"ftyp" or head[:4] == b"\x1a\x45\xdf\xa3" or (head[:4] == b"RIFF" and head[8:12] == b"AVI ")


def _open(path: str) -> Any:
    if not os.path.isfile(path):
        raise StageError("missing", f"no such file: {path}")
    if os.path.getsize(path) == 0:
        raise StageError("empty", "file has 0 bytes")
    try:
        return av.open(path, metadata_errors="ignore")
    except (av.error.FFmpegError, OSError) as exc:
        with open(path, "rb") as fh:
            head = fh.read(16)
        if _looks_like_video_container(head):  # the header is there, the index never arrived
            raise StageError("truncated", f"video container without a readable index: {exc}") from exc
        raise StageError("not_video", f"cannot open as media: {exc}") from exc


class _Scan:
    """What one demux pass over the video stream learns, decoding only the first frame."""

    def __init__(self, stream: Any) -> None:
        self.stream = stream
        self.pts: list[int] = []
        self.end = -(2**62)
        self.count = self.bytes = 0
        self.corrupt_tail = False
        self.first_frame: Any = None
        self.decode_error: Exception | None = None

    def add(self, packet: Any) -> None:
        if packet.size == 0 or packet.is_discard:
            return
        self.count += 1
        self.bytes += packet.size
        self.corrupt_tail = packet.is_corrupt
        ts = packet.pts if packet.pts is not None else packet.dts
        if ts is not None:
            self.pts.append(ts)
            self.end = max(self.end, ts + (packet.duration or 0))
        if self.first_frame is None:
            self._decode(packet)

    def _decode(self, packet: Any) -> None:
        try:
            frames = self.stream.codec_context.decode(packet)
        except av.error.FFmpegError as exc:
            self.decode_error = exc
            return
        if frames:
            self.first_frame = frames[0]

    def finish(self) -> None:
        if self.first_frame is None and self.count:
            self._decode(None)  # flush: decoders with a reorder delay emit the first frame late


def _timing(scan: _Scan, nominal: float | None, container_s: float | None) -> tuple[float, float]:
    """(duration seconds, interval CV) from the packet timestamps."""
    tb = float(scan.stream.time_base or 0)
    pts = np.sort(np.asarray(scan.pts, dtype=np.float64)) * tb
    duration = scan.end * tb - pts[0] if len(pts) and tb else container_s or 0.0
    if duration <= 0 and nominal:
        duration = scan.count / nominal
    intervals = np.diff(pts)
    intervals = intervals[intervals > 0]
    cv = float(intervals.std() / intervals.mean()) if len(intervals) > 1 else 0.0
    return float(duration), cv


def probe_video(path: str) -> dict[str, Any]:
    """Probe a local video file; returns the ``PROBE_COLUMNS`` keys or raises ``StageError``."""
    with _open(path) as container:
        if not container.streams.video:
            kind = "audio only" if container.streams.audio else "no audio/video streams"
            raise StageError("not_video", f"no video stream ({kind})")
        stream = container.streams.video[0]
        audio = container.streams.audio[0] if container.streams.audio else None
        scan = _Scan(stream)
        try:
            for packet in container.demux(stream):
                scan.add(packet)
        except av.error.FFmpegError as exc:
            if not scan.count:
                raise StageError("truncated", f"no video packets: {exc}") from exc
            raise StageError("truncated", f"demux failed after {scan.count} packets: {exc}") from exc
        scan.finish()
        indexed = stream.frames or 0
        nominal = float(stream.average_rate or stream.guessed_rate or 0) or None
        container_s = container.duration / av.time_base if container.duration else None
        facts = {
            "codec": stream.codec_context.name, "pix_fmt": stream.codec_context.pix_fmt,
            "coded_width": stream.codec_context.width, "coded_height": stream.codec_context.height,
            "has_audio": audio is not None, "audio_codec": audio.codec_context.name if audio else None,
            "container": container.format.name,
        }
    if scan.count == 0:
        raise StageError("truncated", "no video packets (file cut short or index missing)")
    if indexed > scan.count:
        raise StageError("truncated", f"only {scan.count} of the {indexed} indexed video packets readable")
    if scan.corrupt_tail:
        raise StageError("truncated", f"last of {scan.count} video packets is cut short")
    if scan.first_frame is None:
        raise StageError("decode", f"first frame does not decode: {scan.decode_error or 'no frame output'}")
    rotation = round((scan.first_frame.rotation or 0) / 90) * 90 % 360
    duration, cv = _timing(scan, nominal, container_s)
    width, height = facts["coded_width"], facts["coded_height"]
    if rotation in (90, 270):
        width, height = height, width
    facts["pix_fmt"] = facts["pix_fmt"] or scan.first_frame.format.name
    row = {
        **facts,
        "duration_s": round(duration, 4),
        "fps": round(scan.count / duration, 4) if duration > 0 else nominal,
        "is_vfr": cv > VFR_CV,
        "frame_interval_cv": round(cv, 5),
        "frame_count": scan.count,
        "width": width,
        "height": height,
        "rotation": rotation,
        "bit_rate": round(scan.bytes * 8 / duration) if duration > 0 else None,
    }
    return {name: row[name] for name in PROBE_COLUMNS}
