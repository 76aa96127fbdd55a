"""Mosaic Streaming backend: a ``GoldSnapshot`` written to MDS shards, read back as training samples.

``write_mds(snapshot, out)`` writes one MDS sample per clip (``MDS_COLUMNS``: the crop mp4's bytes,
``clip_id``, ``caption`` and crop metadata; a null text is ``""``, a null number NaN) into the local
folder ``out`` with ``streaming.MDSWriter``, plus ``facevid_snapshot.json`` next to the shards (table
uri, version, split, rows written, the clip ids' digest, the clips whose crop could not be read).
``MosaicVideoDataset(local)`` is a ``streaming.StreamingDataset`` whose samples are the same dicts as
the native reader's (``facevid.udfs.train.reader.to_sample``; ``index`` = the MDS sample id), decoded
from the stored bytes with the same ``ClipSpec`` and the same per-(seed, epoch, clip) offsets.

Sharding and order are Mosaic's own: ranks and workers come from the ``RANK``, ``WORLD_SIZE``,
``LOCAL_WORLD_SIZE`` (and torch DataLoader worker) environment, shuffling from ``shuffle_seed`` and
the epoch, resume from ``StreamingDataLoader.state_dict()``; every iteration starts the next epoch.
Only a local folder is read here (``local=``); a remote copy (``remote="s3://..."`` plus a local cache)
is Mosaic's feature and untested in this project. ``streaming`` imports torchvision, so
``import_torchvision`` runs first. A clip that fails to decode is skipped, counted in ``skipped`` and
logged once, as in the native reader.

On Spark, Mosaic's own ``streaming.base.converters.dataframe_to_mds`` does not run on the embedded
Sail engine (its writer calls ``pyspark.TaskContext.get()``, which is None in Sail's Python workers:
``RuntimeError: TaskContext.get() returns None``); ``write_mds`` reads the snapshot with delta-rs
instead and needs no Spark.
"""

from __future__ import annotations

import json
import logging
import math
import os
import tempfile
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from facevid.udfs.media.storage import local_path
from facevid.udfs.train.reader import ClipSpec, GoldSnapshot, ShortClip, decode_clip, to_sample

log = logging.getLogger("facevid.train.mosaic")
SIDECAR = "facevid_snapshot.json"
MDS_COLUMNS = {"clip_id": "str", "caption": "str", "video": "bytes", "crop_uri": "str", "split": "str",
               "source": "str", "identity_id": "str", "ethnicity": "str", "duration_s": "float64",
               "fps": "float64"}
_TEXT = [k for k, v in MDS_COLUMNS.items() if v == "str"]
_NUMBERS = [k for k, v in MDS_COLUMNS.items() if v == "float64"]


def _streaming() -> Any:
    from facevid.udfs.models.torch_compat import import_torchvision

    import_torchvision()
    import streaming

    return streaming


def _text(value: Any) -> str:
    return "" if value is None or (isinstance(value, float) and math.isnan(value)) else str(value)


def _number(value: Any) -> float:
    try:
        return float(value) if value is not None else math.nan
    except (TypeError, ValueError):
        return math.nan


def write_mds(snapshot: GoldSnapshot, out: str | os.PathLike[str], compression: str | None = None,
              size_limit: int | str = "256mb") -> dict[str, Any]:
    """Write ``snapshot`` as MDS shards into the new or empty local folder ``out``; returns the sidecar
    dict (also written to ``out/facevid_snapshot.json``). A crop that cannot be read is left out and
    listed under ``skipped`` (clip_id -> error)."""
    streaming = _streaming()
    folder = Path(out)
    if folder.exists() and any(folder.iterdir()):
        raise FileExistsError(f"{folder} is not empty: MDS shards go into a new folder")
    skipped: dict[str, str] = {}
    written: list[str] = []
    with streaming.MDSWriter(out=str(folder), columns=MDS_COLUMNS, compression=compression,
                             size_limit=size_limit) as writer:
        for row in snapshot.rows.to_dict("records"):
            try:
                with local_path(row["crop_uri"]) as path:
                    data = Path(path).read_bytes()
            except Exception as exc:  # noqa: BLE001 - a missing crop is recorded, not fatal
                skipped[row["clip_id"]] = f"{type(exc).__name__}: {exc}"
                continue
            sample = {k: _text(row.get(k)) for k in _TEXT} | {k: _number(row.get(k)) for k in _NUMBERS}
            writer.write(sample | {"video": data})
            written.append(row["clip_id"])
    meta = snapshot.lineage() | {"rows": len(written), "skipped": skipped, "columns": MDS_COLUMNS,
                                 "compression": compression, "created_at": datetime.now(UTC).isoformat()}
    (folder / SIDECAR).write_text(json.dumps(meta, indent=2, sort_keys=True))
    return meta


def read_sidecar(folder: str | os.PathLike[str]) -> dict[str, Any]:
    """The ``facevid_snapshot.json`` written next to the shards (table uri, version, split, ...)."""
    path = Path(folder) / SIDECAR
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: not a folder written by write_mds")
    return json.loads(path.read_text())


def decode_bytes(data: bytes, spec: ClipSpec, seed: int = 0, epoch: int = 0, clip_id: str = "") -> Any:
    """``decode_clip`` of mp4 bytes (through a temporary file: the decoder seeks in a file)."""
    folder = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None
    with tempfile.NamedTemporaryFile(suffix=".mp4", dir=folder) as tmp:
        tmp.write(data)
        tmp.flush()
        return decode_clip(tmp.name, spec, seed, epoch, clip_id)


def mosaic_dataset_class() -> type:
    """``MosaicVideoDataset`` (built lazily: ``streaming`` needs ``import_torchvision`` first)."""
    global _CLASS
    if _CLASS is None:
        _CLASS = _build_class(_streaming().StreamingDataset)
    return _CLASS


_CLASS: type | None = None


def _build_class(base: type) -> type:
    class MosaicVideoDataset(base):  # type: ignore[misc,valid-type]
        """MDS shards of ``write_mds`` as training samples (module docstring)."""

        def __init__(self, local: str | os.PathLike[str], spec: ClipSpec | None = None, *, seed: int = 0,
                     shuffle: bool = True, batch_size: int = 1, **kwargs: Any) -> None:
            self.lineage = read_sidecar(local)
            self.spec, self.seed = spec or ClipSpec(), seed
            self.skipped: Counter[str] = Counter()
            super().__init__(local=str(local), shuffle=shuffle, shuffle_seed=seed, batch_size=batch_size,
                             **kwargs)

        def sample(self, idx: int, epoch: int = 0) -> dict[str, Any] | None:
            """Sample ``idx`` decoded for ``epoch`` (``None``, counted and logged once, on failure)."""
            raw = base.__getitem__(self, idx)
            clip_id = raw["clip_id"]
            try:
                frames = decode_bytes(raw["video"], self.spec, self.seed, epoch, clip_id)
            except Exception as exc:  # noqa: BLE001 - one bad clip never stops training
                if not self.skipped[clip_id]:
                    kind = "short" if isinstance(exc, ShortClip) else "decode"
                    log.warning("skipping clip %s (%s): %s", clip_id, kind, exc)
                self.skipped[clip_id] += 1
                return None
            return to_sample(frames, raw["caption"], clip_id, int(idx))

        def __getitem__(self, idx: int) -> dict[str, Any] | None:
            # during an iteration Mosaic has pre-incremented next_epoch: this is epoch next_epoch - 1
            return self.sample(idx, max(0, self.next_epoch - 1))

        def __iter__(self) -> Iterator[dict[str, Any]]:
            return (s for s in base.__iter__(self) if s is not None)

    return MosaicVideoDataset


def MosaicVideoDataset(local: str | os.PathLike[str], spec: ClipSpec | None = None, **kwargs: Any) -> Any:  # noqa: N802
    """A ``StreamingDataset`` over ``write_mds`` shards in ``local`` yielding the reader's sample dicts
    (kwargs: ``seed``, ``shuffle``, ``batch_size`` and any ``StreamingDataset`` argument)."""
    return mosaic_dataset_class()(local, spec, **kwargs)
