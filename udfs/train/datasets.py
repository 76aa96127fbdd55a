"""The native torch reader (the default backend): a ``GoldSnapshot`` as an ``IterableDataset``.

Order. Epoch ``e`` permutes the snapshot's rows (sorted by ``clip_id``) with
``numpy.random.default_rng([seed, e])`` (``shuffle=False``: the sorted order), so the order is
reproducible for a seed and differs per epoch.

Sharding. Every rank gets the same number of samples per epoch: ``tail="wrap"`` (default) pads the
epoch's order with its own first samples up to a multiple of ``world_size`` (every sample is seen; a
few twice), ``tail="drop"`` cuts it down to a multiple (no sample twice; a few, different each epoch,
not at all). Rank ``r`` takes positions ``r, r + W, r + 2W, ...`` of that order: ranks are disjoint
and together cover it.

Stream and resume. A rank's samples form one stream across epochs; ``index`` in a sample is its
position in that stream. ``start_offset`` = the number of samples this rank already consumed
(``last index + 1``): iteration resumes at exactly the next position, in the same epoch and order.
``epochs`` bounds the stream (``None``: endless).

DataLoader workers (``get_worker_info``): worker ``w`` of ``n`` takes the positions ``start + w,
start + w + n, ...``; each sample is yielded once. With several workers the DataLoader interleaves
their batches, so batches are not in stream order; resume from ``max(index) + 1`` of what was
consumed then loses nothing only when the loop tracks every consumed index (use ``num_workers=0`` or 1
when exact resume matters).

Failures. A clip that fails to open or decode (missing/broken crop, S3 error) or is too short under
``short="skip"`` is skipped, counted in ``skipped`` (clip_id -> count, per process: each DataLoader
worker counts its own) and logged once per clip per process; it never stops the iteration.
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from collections.abc import Iterator
from typing import Any

import numpy as np
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from facevid.udfs.base import validate
from facevid.udfs.train.reader import ClipSpec, GoldSnapshot, ShortClip, collate, load_clip, to_sample

log = logging.getLogger("facevid.train.reader")
TAILS = ("wrap", "drop")


def epoch_order(n: int, epoch: int, seed: int, shuffle: bool = True) -> np.ndarray:
    """Row indices of one epoch (all ranks): a permutation from ``(seed, epoch)``, or 0..n-1."""
    return np.random.default_rng([seed, epoch]).permutation(n) if shuffle else np.arange(n)


def shard(order: np.ndarray, rank: int, world_size: int, tail: str = "wrap") -> np.ndarray:
    """This rank's rows of one epoch's order, equal counts per rank (module docstring)."""
    n = len(order)
    if tail == "wrap":
        per = math.ceil(n / world_size)
        order = np.concatenate([order, np.resize(order, per * world_size - n)]) if per * world_size > n else order
    else:
        per = n // world_size
        order = order[: per * world_size]
    return order[rank::world_size]


class GoldVideoDataset(IterableDataset):
    """Samples of a snapshot for one rank (module docstring for order, sharding, resume, failures)."""

    def __init__(self, snapshot: GoldSnapshot, spec: ClipSpec | None = None, *, seed: int = 0,
                 shuffle: bool = True, rank: int = 0, world_size: int = 1, epochs: int | None = 1,
                 start_offset: int = 0, tail: str = "wrap") -> None:
        super().__init__()
        validate("reader", [
            (world_size >= 1 and 0 <= rank < world_size, f"rank {rank} not in a world of {world_size}"),
            (epochs is None or epochs >= 1, f"epochs must be >= 1 or None, got {epochs}"),
            (start_offset >= 0, f"start_offset must be >= 0, got {start_offset}"),
            (tail in TAILS, f"tail must be one of {TAILS}, got {tail!r}"),
            (tail == "wrap" or len(snapshot) >= world_size,
             f"tail='drop' leaves nothing: {len(snapshot)} samples for {world_size} ranks"),
        ])
        self.snapshot, self.spec = snapshot, spec or ClipSpec()
        self.seed, self.shuffle, self.rank, self.world_size = seed, shuffle, rank, world_size
        self.epochs, self.start_offset, self.tail = epochs, start_offset, tail
        self.skipped: Counter[str] = Counter()
        self._logged: set[str] = set()
        rows = snapshot.rows
        self._clip_ids: list[str] = rows["clip_id"].tolist()
        self._uris: list[str] = rows["crop_uri"].tolist()
        self._captions: list[str] = rows["caption"].fillna("").astype(str).tolist()

    @property
    def samples_per_epoch(self) -> int:
        """Samples each rank gets per epoch."""
        n, w = len(self.snapshot), self.world_size
        return math.ceil(n / w) if self.tail == "wrap" else n // w

    def rank_order(self, epoch: int) -> np.ndarray:
        """This rank's row indices of ``epoch``, in order."""
        order = epoch_order(len(self.snapshot), epoch, self.seed, self.shuffle)
        return shard(order, self.rank, self.world_size, self.tail)

    def positions(self, worker: int = 0, workers: int = 1) -> Iterator[tuple[int, int, int]]:
        """``(index, epoch, row)`` of this rank's stream from ``start_offset`` (a worker's share)."""
        per = self.samples_per_epoch
        end = None if self.epochs is None else per * self.epochs
        position = self.start_offset + worker
        cached: tuple[int, np.ndarray] | None = None
        while end is None or position < end:
            epoch, at = divmod(position, per)
            if cached is None or cached[0] != epoch:
                cached = (epoch, self.rank_order(epoch))
            yield position, epoch, int(cached[1][at])
            position += workers

    def sample(self, row: int, epoch: int, index: int) -> dict[str, Any] | None:
        """The sample dict of ``row`` (``None``, counted and logged once, when it cannot be decoded)."""
        clip_id = self._clip_ids[row]
        try:
            frames = load_clip(self._uris[row], self.spec, self.seed, epoch, clip_id)
        except Exception as exc:  # noqa: BLE001 - one bad clip never stops training
            self.skipped[clip_id] += 1
            if clip_id not in self._logged:
                self._logged.add(clip_id)
                kind = "short" if isinstance(exc, ShortClip) else "decode"
                log.warning("skipping clip %s (%s): %s", clip_id, kind, exc)
            return None
        return to_sample(frames, self._captions[row], clip_id, index)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        for index, epoch, row in self.positions(worker, workers):
            item = self.sample(row, epoch, index)
            if item is not None:
                yield item


def make_loader(dataset: IterableDataset, batch_size: int, num_workers: int = 0, **kwargs: Any) -> DataLoader:
    """A DataLoader over a reader dataset with ``collate`` (extra kwargs go to ``DataLoader``)."""
    return DataLoader(dataset, batch_size=batch_size, num_workers=num_workers, collate_fn=collate, **kwargs)
