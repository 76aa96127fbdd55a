"""Gold at a pinned Delta version, and clips decoded into the training sample dict.

A training run reads ONE table version, recorded by the caller: ``latest_version`` resolves "now"
explicitly (the job layer records it); ``load_snapshot(uri, version, split)`` reads exactly that
version with delta-rs, so later gold changes never move a run's data. Table URIs are local paths or
``s3://`` (``storage_options``: delta-rs options, e.g. what ``facevid.jobs.lake.storage_options``
builds from the ``AWS_*`` environment).

``ClipSpec`` declares what a sample is: ``frames`` T at ``stride`` s (T frames taken every s-th
decoded frame), resized to ``height`` x ``width`` (scaled to cover, then centre-cropped: a square
crop into a square size is a plain resize), the temporal offset (``"start"``: frame 0;
``"random"``: a uniform start in ``[0, n - ((T-1)*s + 1)]`` drawn from ``(seed, epoch, clip_id)``,
so it is reproducible and differs per epoch), and what happens to a clip with fewer frames than
needed (``short="pad"`` repeats its last sampled frame, ``short="skip"`` drops the sample and counts it).

``decode_clip`` opens only what it needs through ``facevid.udfs.media.video.VideoSpan``: it seeks to
the offset and stops after the last needed frame; frames are converted (RGB, downscaled by
libswscale) only when kept. ``to_sample`` gives the batch contract of ``facevid.udfs.train.backend``
and ``collate`` stacks samples into a batch.
"""

from __future__ import annotations

import hashlib
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
import pandas as pd
import pyarrow.compute as pc

from facevid.udfs.base import validate
from facevid.udfs.media.storage import local_path
from facevid.udfs.media.video import VideoSpan, to_array

REQUIRED_COLUMNS = ("clip_id", "crop_uri", "caption")
OFFSETS = ("start", "random")
SHORT = ("pad", "skip")


def _open_table(table_uri: str, version: int | None, storage_options: dict[str, str] | None) -> Any:
    from deltalake import DeltaTable
    from deltalake.exceptions import TableNotFoundError

    try:
        return DeltaTable(table_uri, version=version, storage_options=storage_options or None)
    except TableNotFoundError as exc:
        raise FileNotFoundError(f"no Delta table at {table_uri}: {exc}") from exc


def latest_version(table_uri: str, storage_options: dict[str, str] | None = None) -> int:
    """The table's current version (resolve it once, record it, then read that version)."""
    return int(_open_table(table_uri, None, storage_options).version())


@dataclass(frozen=True)
class GoldSnapshot:
    """The rows of one table version (and split), sorted by ``clip_id`` with a fresh 0..n-1 index."""

    table_uri: str
    version: int
    split: str | None
    rows: pd.DataFrame

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def clip_ids(self) -> list[str]:
        return self.rows["clip_id"].tolist()

    @property
    def table_name(self) -> str:
        """``<layer>_<name>`` from the URI's last two parts (``.../gold/clips`` -> ``gold_clips``)."""
        parts = [p for p in self.table_uri.rstrip("/").split("/") if p]
        return "_".join(parts[-2:]) if len(parts) >= 2 else parts[-1]

    def digest(self) -> str:
        """SHA-256 of the sorted clip ids (one per line): names the sample set independently of order."""
        return hashlib.sha256("\n".join(self.clip_ids).encode()).hexdigest()

    def lineage(self) -> dict[str, Any]:
        """What a run or an export records about the data it read."""
        return {"table_uri": self.table_uri, "version": self.version, "split": self.split,
                "rows": len(self), "clip_ids_sha256": self.digest()}


def load_snapshot(table_uri: str, version: int, split: str | None = None,
                  storage_options: dict[str, str] | None = None,
                  columns: Sequence[str] | None = None) -> GoldSnapshot:
    """Read ``table_uri`` at exactly ``version`` (an int: never "latest" implicitly), keeping ``split``
    (all rows when None). ``columns`` limits what is read (the required ones are always kept).

    Raises ``FileNotFoundError`` (no table), ``ValueError`` (a version that does not exist or can no
    longer be read, missing required columns, no rows for the split)."""
    from deltalake.exceptions import DeltaError

    if isinstance(version, bool) or not isinstance(version, int) or version < 0:
        raise ValueError(f"version must be a table version (int >= 0), got {version!r}")
    try:
        table = _open_table(table_uri, version, storage_options)
    except DeltaError as exc:
        latest = latest_version(table_uri, storage_options)
        raise ValueError(f"{table_uri}: version {version} cannot be read (latest is {latest}): {exc}") from exc
    present = [f.name for f in table.schema().fields]
    required = [*REQUIRED_COLUMNS, *(["split"] if split is not None else [])]
    missing = [c for c in required if c not in present]
    if missing:
        raise ValueError(f"{table_uri}@v{version}: required columns {missing} are missing (has {present})")
    wanted = None if columns is None else list(dict.fromkeys([*required, *columns]))
    if wanted is not None and (unknown := [c for c in wanted if c not in present]):
        raise ValueError(f"{table_uri}@v{version}: no columns {unknown}")
    data = table.to_pyarrow_table(columns=wanted)
    if split is not None:
        # filtered after the scan: a filter pushed into it fails on files delta-rs rewrote (a DELETE):
        # they store strings as string_view ("Function 'equal' has no kernel ... (string, string_view)")
        data = data.filter(pc.equal(data["split"], split))
    rows = data.to_pandas()
    if rows.empty:
        what = f"split {split!r}" if split is not None else "any split"
        raise ValueError(f"{table_uri}@v{version}: no rows for {what}")
    if rows["clip_id"].duplicated().any():
        raise ValueError(f"{table_uri}@v{version}: duplicate clip_id values")
    rows = rows.sort_values("clip_id", kind="stable").reset_index(drop=True)
    return GoldSnapshot(table_uri=table_uri, version=version, split=split, rows=rows)


@dataclass(frozen=True)
class ClipSpec:
    """What one training sample is (module docstring)."""

    frames: int = 9
    stride: int = 1
    height: int = 64
    width: int = 64
    offset: str = "start"  # "start" | "random"
    short: str = "pad"  # "pad" (repeat the last frame) | "skip" (drop the sample, counted)

    def __post_init__(self) -> None:
        validate("clip_spec", [
            (self.frames >= 1, f"frames must be >= 1, got {self.frames}"),
            (self.stride >= 1, f"stride must be >= 1, got {self.stride}"),
            (self.height >= 1 and self.width >= 1, f"size must be positive, got {self.height}x{self.width}"),
            (self.offset in OFFSETS, f"offset must be one of {OFFSETS}, got {self.offset!r}"),
            (self.short in SHORT, f"short must be one of {SHORT}, got {self.short!r}"),
        ])

    @property
    def span_frames(self) -> int:
        """Decoded frames one sample covers: ``(T - 1) * s + 1``."""
        return (self.frames - 1) * self.stride + 1

    def start_frame(self, available: int, seed: int, epoch: int, clip_id: str) -> int:
        """The first frame index: 0 for ``"start"``, else uniform in ``[0, available - span_frames]``
        from ``(seed, epoch, crc32(clip_id))`` (0 when the clip is too short)."""
        room = available - self.span_frames
        if self.offset == "start" or room <= 0:
            return 0
        rng = np.random.default_rng([seed, epoch, zlib.crc32(clip_id.encode())])
        return int(rng.integers(0, room + 1))


class ShortClip(Exception):
    """A clip with fewer frames than the spec needs, under ``short="skip"``."""


def _fit(img: np.ndarray, height: int, width: int) -> np.ndarray:
    """Scale to cover ``height`` x ``width`` and centre-crop (no-op when already that size)."""
    ih, iw = img.shape[:2]
    if (ih, iw) == (height, width):
        return img
    scale = max(height / ih, width / iw)
    size = (max(width, round(iw * scale)), max(height, round(ih * scale)))
    img = cv2.resize(img, size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    top, left = (img.shape[0] - height) // 2, (img.shape[1] - width) // 2
    return img[top:top + height, left:left + width]


def _cover_side(frame: Any, height: int, width: int) -> int:
    """The max side after cover-scaling (so libswscale shrinks during the RGB conversion)."""
    scale = max(height / frame.height, width / frame.width)
    return max(1, round(max(frame.height, frame.width) * scale))


def decode_clip(path: str, spec: ClipSpec, seed: int = 0, epoch: int = 0, clip_id: str = "") -> np.ndarray:
    """``(T, H, W, 3)`` uint8 RGB frames of the local file ``path`` per ``spec``.

    Raises ``StageError("decode")`` for an unreadable file and ``ShortClip`` for a short clip under
    ``short="skip"`` (a clip with no frame at all always raises ``ShortClip``)."""
    with VideoSpan(path) as probe:
        available = int(probe.stream.frames or 0)
        fps = float(probe.fps)
        if not available and probe.stream.duration and probe.time_base is not None:
            available = int(float(probe.stream.duration * probe.time_base) * fps)
    first = spec.start_frame(available, seed, epoch, clip_id)
    kept: list[np.ndarray] = []
    with VideoSpan(path, start_s=first / fps if first else 0.0) as span:
        for k, (_, frame) in enumerate(span.frames()):
            if k % spec.stride:
                continue
            rgb = to_array(frame, "rgb24", _cover_side(frame, spec.height, spec.width))
            kept.append(_fit(rgb, spec.height, spec.width))
            if len(kept) == spec.frames:
                break  # decode only what is needed
    if not kept or (len(kept) < spec.frames and spec.short == "skip"):
        raise ShortClip(f"{path}: {len(kept)} of {spec.frames} frames (stride {spec.stride}, start {first})")
    kept.extend([kept[-1]] * (spec.frames - len(kept)))
    return np.stack(kept)


def load_clip(uri: str, spec: ClipSpec, seed: int = 0, epoch: int = 0, clip_id: str = "") -> np.ndarray:
    """``decode_clip`` of a local or ``s3://`` URI (downloaded through ``storage.local_path``)."""
    with local_path(uri) as path:
        return decode_clip(path, spec, seed, epoch, clip_id)


def to_sample(frames: np.ndarray, caption: str, clip_id: str, index: int) -> dict[str, Any]:
    """The sample dict of the batch contract: ``video`` float ``(T, C, H, W)`` in ``[-1, 1]``,
    ``first_frame`` ``(C, H, W)``, ``caption``, ``clip_id``, ``index``."""
    import torch

    video = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float().div_(127.5).sub_(1.0)
    return {"video": video, "first_frame": video[0].clone(), "caption": str(caption), "clip_id": clip_id,
            "index": int(index)}


def collate(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """Stack samples into a batch: ``video`` ``(B, T, C, H, W)``, ``first_frame`` ``(B, C, H, W)``,
    ``caption``/``clip_id`` lists, ``index`` long ``(B,)``."""
    import torch

    if not samples:
        raise ValueError("collate: empty batch")
    return {"video": torch.stack([s["video"] for s in samples]),
            "first_frame": torch.stack([s["first_frame"] for s in samples]),
            "caption": [s["caption"] for s in samples], "clip_id": [s["clip_id"] for s in samples],
            "index": torch.tensor([s["index"] for s in samples], dtype=torch.long)}
