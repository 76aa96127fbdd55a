"""Container facts of one video from a demux pass (packets only) plus one decoded frame.

Duration is measured from the video packets (last pts + duration - first pts), falling back to
the container's. ``is_vfr``: the coefficient of variation of the intervals between consecutive
presentation timestamps exceeds 0.05 (constant-rate video has CV ~0). ``width``/``height`` are
display dimensions, swapped for 90/270 degree rotation. Hostile input raises ``StageError``:
``empty`` (0 bytes), ``not_video`` (unreadable container or no video stream), ``truncated``
(no video packets, e.g. an mp4 cut before its index), ``decode`` (no frame decodes).
"""

from __future__ import annotations

import os
from typing import Any

import av
import numpy as np

from udfs.base import StageError

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


def _open(path: str) -> Any:
    try:
        size = os.path.getsize(path)
    except OSError as exc:
        raise StageError("missing", str(exc)) from exc
    if size == 0:
        raise StageError("empty", "file has 0 bytes")
    try:
        return av.open(path, metadata_errors="ignore")
    except av.error.FFmpegError as exc:
        with open(path, "rb") as fh:
            head = fh.read(16)
        if head[4:8] == b"ftyp":  # an ISO-BMFF (mp4/mov) start whose index never arrived
            raise StageError("truncated", f"mp4 container without a readable index: {exc}") from exc
        raise StageError("not_video", f"cannot open container: {exc}") from exc


def _packet_times(container: Any, stream: Any) -> tuple[np.ndarray, float]:
    """Sorted pts (seconds) of the stream's packets and the end time of the last one."""
    pts, end = [], 0.0
    tb = float(stream.time_base)
    try:
        for packet in container.demux(stream):
            if packet.pts is None or packet.size == 0:
                continue
            t = packet.pts * tb
            pts.append(t)
            end = max(end, t + (packet.duration or 0) * tb)
    except av.error.FFmpegError:
        pass  # a damaged tail: keep what was read; the decode check below decides
    return np.sort(np.asarray(pts, dtype=np.float64)), end


def _rotation_and_check(path: str) -> int:
    """Decode the first frame (proves the stream decodes) and return its display rotation."""
    try:
        with av.open(path, metadata_errors="ignore") as container:
            for frame in container.decode(video=0):
                return int(round(getattr(frame, "rotation", 0) or 0)) % 360
    except av.error.FFmpegError as exc:
        raise StageError("decode", f"first frame does not decode: {exc}") from exc
    raise StageError("decode", "no frame decodes")


def probe_video(path: str) -> dict[str, Any]:
    """Probe ``path``; returns the ``PROBE_COLUMNS`` keys or raises ``StageError``."""
    with _open(path) as container:
        if not container.streams.video:
            kind = "audio-only" if container.streams.audio else "no streams"
            raise StageError("not_video", f"no video stream ({kind})")
        stream = container.streams.video[0]
        ctx = stream.codec_context
        audio = container.streams.audio[0] if container.streams.audio else None
        facts = {
            "codec": ctx.name, "pix_fmt": ctx.pix_fmt, "coded_width": ctx.width, "coded_height": ctx.height,
            "bit_rate": container.bit_rate or None, "has_audio": audio is not None,
            "audio_codec": audio.codec_context.name if audio is not None else None,
            "container": container.format.name,
        }
        nominal = float(stream.average_rate or stream.guessed_rate or 0) or None
        container_s = container.duration / av.time_base if container.duration else None
        pts, end = _packet_times(container, stream)
    if len(pts) == 0:
        raise StageError("truncated", "no video packets (file cut short or index missing)")
    rotation = _rotation_and_check(path)
    duration = end - pts[0] if end > pts[0] else (container_s or 0.0)
    if len(pts) == 1 and nominal:
        duration = max(duration, 1.0 / nominal)
    intervals = np.diff(pts)
    intervals = intervals[intervals > 0]
    cv = float(intervals.std() / intervals.mean()) if len(intervals) > 1 else 0.0
    fps = len(pts) / duration if duration > 0 else nominal
    width, height = facts["coded_width"], facts["coded_height"]
    if rotation in (90, 270):
        width, height = height, width
    return {
        **facts, "duration_s": round(float(duration), 4), "fps": round(float(fps), 4) if fps else None,
        "is_vfr": cv > VFR_CV, "frame_interval_cv": round(cv, 5), "frame_count": len(pts),
        "width": width, "height": height, "rotation": rotation,
    }
