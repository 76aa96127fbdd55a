"""Per-clip face crops (DH-FaceVid-1K): one fixed square per clip written as an H.264 mp4.

The square is centred on the median centre of the smoothed main-track boxes, moved down by
``shift_down`` x the median box side (shoulders), with side ``expand`` x the largest box side
(the face stays inside while it moves); it is shifted inside the frame and shrunk to the frame's
short side when larger. A square under ``min_crop_px`` source pixels is an error row, never an
upscaled file. Files go to ``<dir>/<clip_id>.mp4``: a local temporary file moved (or uploaded to
S3) into place, so a crash never leaves half a file at the final URI; a re-run overwrites it.
"""

from __future__ import annotations

import contextlib
import math
import os
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av
import numpy as np

from udfs.base import StageError, validate
from udfs.crops_encode import encode_crop
from udfs.storage import is_s3, local_path, put_file, s3_client, split_s3, to_local

CROPS_COLUMNS: dict[str, str] = {
    "crop_uri": "string",
    "crop_x": "int",
    "crop_y": "int",
    "crop_side": "int",
    "crop_size": "int",
    "frame_start": "int",
    "frame_end": "int",
    "n_frames": "int",
    "fps": "double",
    "has_audio": "boolean",
    "crop_bytes": "bigint",
    "upscale": "double",
    "encode_ms": "double",
}
X264_PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow")


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
        raise StageError("min_crop_px", f"{box[2]}")
    return box


def crops_root(lake: str | None, folder: str) -> str:
    """Where crop files go: ``folder`` itself when absolute or a URI, else under the lake root."""
    if folder.startswith("/") or "://" in folder or folder.startswith("dbfs:"):
        return folder.rstrip("/")
    if not lake or lake.startswith("uc:"):
        raise ValueError(f"crops.dir {folder!r} is relative, so it needs a path or URI lake root "
                         f"(got {lake!r}); set an absolute dir (e.g. a /Volumes/... path)")
    return f"{lake.rstrip('/')}/{folder.strip('/')}"


def crop_uri(root: str, clip_id: str) -> str:
    return f"{root}/{clip_id}.mp4"


def _temp_for(uri: str) -> str:
    """A temporary file to encode into: beside the target when local (a rename publishes it
    atomically; the dot name keeps listings away), in the temp folder for S3."""
    if is_s3(uri):
        fd, tmp = tempfile.mkstemp(prefix="facevid-crop-", suffix=".mp4")
        os.close(fd)
        return tmp
    dest = Path(to_local(uri))
    dest.parent.mkdir(parents=True, exist_ok=True)
    return str(dest.parent / f".{dest.name}.{uuid.uuid4().hex[:8]}.part")


def _publish(tmp: str, uri: str) -> None:
    if is_s3(uri):
        put_file(tmp, uri)  # one PUT: the object appears whole or not at all
        os.unlink(tmp)
    else:
        os.replace(tmp, to_local(uri))


def remove_crop(uri: str) -> None:
    """Delete a crop file left by an earlier run (best effort)."""
    with contextlib.suppress(Exception):
        if is_s3(uri):
            bucket, key = split_s3(uri)
            s3_client().delete_object(Bucket=bucket, Key=key)
        else:
            os.unlink(to_local(uri))


def _seconds(value: Any, default: float | None) -> float | None:
    return default if value is None or (isinstance(value, float) and math.isnan(value)) else float(value)


def crops_row(row: dict[str, Any], params: CropParams, root: str) -> dict[str, Any]:
    """Per-row UDF body: a faces row joined with its clip (``clip_id``, ``video_uri``,
    ``start_s``, ``end_s``, ``track_boxes``, ``frame_width``, ``frame_height``) -> the crop file
    and its ``CROPS_COLUMNS``. A clip that fails leaves no file at its URI."""
    uri = crop_uri(root, str(row["clip_id"]))
    tmp = None
    try:
        box = plan_crop(row, params)
        start = _seconds(row.get("start_s"), 0.0) or 0.0
        end = _seconds(row.get("end_s"), None)
        tmp = _temp_for(uri)
        t = time.perf_counter()
        with local_path(str(row["video_uri"])) as path:
            enc = encode_crop(path, start, end, box, params.size, tmp, params.crf, params.preset,
                              params.audio_kbps)
        encode_ms = (time.perf_counter() - t) * 1000.0
        size = os.path.getsize(tmp)
        _publish(tmp, uri)
    except BaseException:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        remove_crop(uri)
        raise
    x, y, side = enc["box"]
    first = round(enc["t_first"] * enc["fps"])
    return {
        "crop_uri": uri, "crop_x": x, "crop_y": y, "crop_side": side, "crop_size": params.size,
        "frame_start": first, "frame_end": first + enc["n_frames"], "n_frames": enc["n_frames"],
        "fps": enc["fps"], "has_audio": enc["has_audio"], "crop_bytes": size,
        "upscale": params.size / side, "encode_ms": encode_ms,
    }
