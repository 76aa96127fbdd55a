"""Per-clip face crops (DH-FaceVid-1K): one fixed square per clip written as an H.264 mp4.

The square is centred on the median centre of the smoothed main-track boxes, moved down by
``shift_down`` x the median box side (shoulders), with side ``expand`` x the largest box side
(the face stays inside while it moves); it is shifted inside the frame and shrunk to the frame's
short side when larger. A square under ``min_crop_px`` source pixels is an error row, never an
upscaled file.

Files are immutable (``facevid.udfs.media.artifacts``): ``<root>/<clip_id>/<digest>.mp4`` where the digest
hashes everything that determines the bytes (video_id, the clip span, the track boxes and the
square, the crop and encoder params, ``CODE_VERSION`` and the PyAV/FFmpeg version). A run encodes
into a temporary file and publishes it in one step, then writes ``<digest>.json`` (the row's
values); a re-run with the same inputs finds the marker and skips the encode. A failing attempt
removes only its temporary file: it never deletes or overwrites a published file. Unreferenced
files are removed by ``facevid.udfs.media.artifacts.sweep`` only.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import asdict, dataclass
from typing import Any

import av
import numpy as np

from facevid.udfs.base import StageError, validate
from facevid.udfs.media.artifacts import content_digest, produce
from facevid.udfs.media.encode import X264_PRESETS, encode_crop
from facevid.udfs.media.storage import local_path

CROPS_COLUMNS: dict[str, str] = {
    "crop_uri": "string",
    "crop_x": "int",
    "crop_y": "int",
    "crop_side": "int",
    "crop_size": "int",
    # times (seconds, the clip's start_s clock: pts from the video stream's start) of the first
    # and last frame written; they identify the frames exactly, also for VFR and offset streams.
    # No frame index: a true one means decoding/demuxing the video from its start for every clip.
    "t_first": "double",
    "t_last": "double",
    "n_frames": "int",
    "fps": "double",
    "has_audio": "boolean",
    "crop_bytes": "bigint",
    "upscale": "double",
    "encode_ms": "double",
}
CODE_VERSION = 2  # bump when the cutting/encoding code changes the bytes it writes


@dataclass
class CropParams:
    """The crop rule, the output size and encoding, and where the files go."""

    dir: str = "crops"  # relative to the lake root; an absolute path or URI is used as is
    size: int = 512
    expand: float = 2.0
    shift_down: float = 0.1
    min_crop_px: int = 256
    crf: int = 18
    preset: str = "veryfast"
    audio_kbps: int = 128

    def __post_init__(self) -> None:
        validate("crops", [
            (bool(self.dir) and not self.dir.endswith(".mp4"), f"dir must name a folder, got {self.dir!r}"),
            (self.size >= 16 and self.size % 2 == 0, f"size must be an even number >= 16, got {self.size}"),
            (self.expand >= 1, f"expand must be >= 1, got {self.expand}"),
            (-0.5 <= self.shift_down <= 0.5, f"shift_down must be in [-0.5, 0.5], got {self.shift_down}"),
            (self.min_crop_px >= 2, f"min_crop_px must be >= 2, got {self.min_crop_px}"),
            (0 <= self.crf <= 51, f"crf must be in [0, 51], got {self.crf}"),
            (self.preset in X264_PRESETS, f"preset must be one of {X264_PRESETS}, got {self.preset!r}"),
            (8 <= self.audio_kbps <= 512, f"audio_kbps must be in [8, 512], got {self.audio_kbps}"),
            ("libx264" in av.codecs_available, "this PyAV build has no libx264 encoder"),
        ])


def _boxes(track_boxes: Any) -> np.ndarray:
    """``track_boxes`` (list, or Arrow's array of arrays) as an ``N x 4`` float array of valid boxes."""
    if track_boxes is None or len(track_boxes) == 0:
        return np.zeros((0, 4))
    b = np.array([np.asarray(v, np.float64).reshape(-1)[:4] for v in track_boxes if v is not None and len(v) >= 4])
    if not len(b):
        return np.zeros((0, 4))
    return b[np.isfinite(b).all(axis=1) & (b[:, 2] > 0) & (b[:, 3] > 0)]


def crop_square(track_boxes: Any, frame_w: int, frame_h: int, expand: float = 2.0,
                shift_down: float = 0.1) -> tuple[int, int, int]:
    """The clip's fixed square ``(x, y, side)`` in upright source pixels (side even, inside the
    frame). Raises ``StageError("no_face")`` when there is no track box."""
    b = _boxes(track_boxes)
    if not len(b):
        raise StageError("no_face", "the clip has no face track")
    if frame_w < 2 or frame_h < 2:
        raise StageError("no_face", f"frame size {frame_w}x{frame_h}")
    sides = b[:, 2:].max(axis=1)
    cx = float(np.median(b[:, 0] + b[:, 2] / 2))
    cy = float(np.median(b[:, 1] + b[:, 3] / 2)) + shift_down * float(np.median(sides))
    side = int(min(expand * float(sides.max()), frame_w, frame_h)) // 2 * 2
    x = min(max(round(cx - side / 2), 0), frame_w - side)
    y = min(max(round(cy - side / 2), 0), frame_h - side)
    return int(x), int(y), side


def plan_crop(row: dict[str, Any], params: CropParams) -> tuple[int, int, int]:
    """``crop_square`` of a faces row; ``StageError("min_crop_px", "<side>")`` when too small."""
    box = crop_square(row.get("track_boxes"), int(row["frame_width"]), int(row["frame_height"]),
                      params.expand, params.shift_down)
    if box[2] < params.min_crop_px:
        raise StageError("min_crop_px", f"{box[2]}", value=box[2], threshold=params.min_crop_px)
    return box


def crop_digest(row: dict[str, Any], params: CropParams, box: tuple[int, int, int]) -> str:
    """Digest of everything that determines a crop file's bytes (``dir`` and ``min_crop_px`` do not)."""
    fields = {k: v for k, v in asdict(params).items() if k not in ("dir", "min_crop_px")}
    return content_digest({
        "code": CODE_VERSION, "av": av.__version__, "video": str(row.get("video_id") or row["video_uri"]),
        "span": [None if v is None else round(v, 6) for v in (_seconds(row.get("start_s"), 0.0),
                                                              _seconds(row.get("end_s"), None))],
        "boxes": np.round(_boxes(row.get("track_boxes")), 3).tolist(), "square": list(box),
        "frame": [int(row["frame_width"]), int(row["frame_height"])], "params": fields,
    })


def crop_uri(root: str, clip_id: str, digest: str) -> str:
    return f"{root}/{clip_id}/{digest}.mp4"


def _seconds(value: Any, default: float | None) -> float | None:
    return default if value is None or (isinstance(value, float) and math.isnan(value)) else float(value)


def _encode(row: dict[str, Any], params: CropParams, box: tuple[int, int, int], tmp: str) -> dict[str, Any]:
    start = _seconds(row.get("start_s"), 0.0) or 0.0
    t = time.perf_counter()
    with local_path(str(row["video_uri"])) as path:
        enc = encode_crop(path, start, _seconds(row.get("end_s"), None), box, params.size, tmp, params.crf,
                          params.preset, params.audio_kbps)
    x, y, side = enc["box"]
    return {
        "crop_x": int(x), "crop_y": int(y), "crop_side": int(side), "crop_size": params.size,
        "t_first": float(enc["t_first"]), "t_last": float(enc["t_last"]), "n_frames": int(enc["n_frames"]),
        "fps": float(enc["fps"]), "has_audio": bool(enc["has_audio"]), "crop_bytes": os.path.getsize(tmp),
        "upscale": params.size / side,
        "encode_ms": (time.perf_counter() - t) * 1000.0,
    }


def crops_row(row: dict[str, Any], params: CropParams, root: str) -> dict[str, Any]:
    """Per-row UDF body: a faces row joined with its clip (``clip_id``, ``video_id``, ``video_uri``,
    ``start_s``, ``end_s``, ``track_boxes``, ``frame_width``, ``frame_height``) -> the crop file
    and its ``CROPS_COLUMNS``. Reuses a complete file of the same digest; a clip that fails
    leaves every published file as it was."""
    box = plan_crop(row, params)
    uri = crop_uri(root, str(row["clip_id"]), crop_digest(row, params, box))
    # in the root: a failed attempt leaves no folder behind
    values, _ = produce(uri, root, CROPS_COLUMNS, lambda tmp: {"crop_uri": uri, **_encode(row, params, box, tmp)},
                        "crop_bytes")
    return {**values, "crop_uri": uri}
