"""The projects' data: which Delta table and version a run reads, and its batches.

``resolve_table`` turns the parameters into a ``TableRef`` (the table's Delta URI and an explicit
version: ``latest`` is resolved once, when the run starts, and recorded) and the snapshot's rows;
``stream_factory`` gives the training loop its ``batches(offset)`` for one rank: the native reader
(a torch ``IterableDataset`` over the pinned snapshot) or Mosaic Streaming (MDS shards written from
the same rows into the run's work folder).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from facevid.jobs.lake import storage_options

READERS = ("native", "mosaic")


@dataclass(frozen=True)
class TableRef:
    table: str
    uri: str
    version: int


def table_uri(lake: str, table: str, explicit: str = "") -> str:
    """The Delta location of ``table``: ``explicit`` when given, ``uc:catalog.schema.layer_name`` on a Unity
    Catalog lake (read through Spark), else ``<lake>/<layer>/<name>``."""
    if explicit:
        return explicit.rstrip("/")
    if lake.startswith("uc:"):
        return f"{lake}.{table.replace('.', '_')}"
    layer, _, name = table.partition(".")
    if not name:
        raise ValueError(f"table {table!r} is not <layer>.<name>")
    return f"{lake.rstrip('/')}/{layer}/{name}"


def split_of(args: argparse.Namespace) -> str | None:
    return None if args.split == "all" else args.split


def _uc_snapshot(uri: str, version: str | int, split: str | None) -> Any:
    """A Unity Catalog table at a version, through the cluster's Spark session (metadata rows only)."""
    from pyspark.sql import SparkSession

    from facevid.udfs.train.reader import GoldSnapshot

    spark = SparkSession.builder.getOrCreate()
    name = uri[3:]
    if version == "latest":
        version = int(spark.sql(f"DESCRIBE HISTORY {name} LIMIT 1").collect()[0]["version"])  # bounded: one row
    df = spark.sql(f"SELECT * FROM {name} VERSION AS OF {int(version)}")
    if split is not None:
        df = df.where(df["split"] == split)
    rows = df.toPandas()  # bounded: one row of metadata per gold clip (URIs and captions, no video bytes)
    if rows.empty:
        raise ValueError(f"{name}@v{version}: no rows for split {split!r}")
    rows = rows.sort_values("clip_id", kind="stable").reset_index(drop=True)
    return GoldSnapshot(table_uri=uri, version=int(version), split=split, rows=rows)


def snapshot_of(uri: str, version: str | int, split: str | None) -> Any:
    """The table at ``version`` (``latest`` resolved now): delta-rs on a path, Spark on Unity Catalog."""
    from facevid.udfs.train.reader import latest_version, load_snapshot

    if uri.startswith("uc:"):
        return _uc_snapshot(uri, version, split)
    opts = storage_options(uri)
    try:
        pinned = latest_version(uri, opts) if version == "latest" else int(version)
    except ValueError as exc:
        raise ValueError(f"version must be `latest` or a Delta version number, got {version!r}") from exc
    return load_snapshot(uri, pinned, split, opts)


def declared(config: str, key: str) -> dict[str, Any]:
    """``training.<key>`` (``mixes`` or ``eval_sets``) of the pipeline.yml at ``config``, validated."""
    import yaml

    from facevid.udfs.metrics.evalsets import load_eval_sets
    from facevid.udfs.train.mixing import load_mixes

    if not config:
        raise ValueError(f"a declared {key[:-1].replace('_', ' ')} needs config (the pipeline.yml declaring "
                         f"training.{key})")
    block = ((yaml.safe_load(Path(config).read_text()) or {}).get("training") or {}).get(key)
    return (load_mixes if key == "mixes" else load_eval_sets)(block, prefix=f"training.{key}")


def selected_snapshot(args: argparse.Namespace, version: str | int | None = None) -> tuple[Any, Any]:
    """``(snapshot, selection)``: the run's table at its version and split, or, with ``mix`` (finetune) /
    ``eval_set`` (evaluate), the declared selection of it (the selection's own split applies; its result
    with the per-source report is returned, else None). Deterministic: the workers re-select the same rows."""
    from facevid.udfs.train.mixing import select_mix
    from facevid.udfs.train.reader import GoldSnapshot

    name, key = (getattr(args, "mix", ""), "mixes") if getattr(args, "mix", "") else (getattr(args, "eval_set", ""),
                                                                                      "eval_sets")
    uri = table_uri(args.lake, args.table, args.table_uri)
    version = args.version if version is None else version
    if not name:
        return snapshot_of(uri, version, split_of(args)), None
    specs = declared(args.config, key)
    if name not in specs:
        raise ValueError(f"{key[:-1]} {name!r} is not declared in training.{key} of {args.config} "
                         f"(declared: {', '.join(specs) or 'none'})")
    snapshot = snapshot_of(uri, version, None)
    result = select_mix(snapshot.rows, specs[name])
    rows = snapshot.rows[snapshot.rows["clip_id"].isin(set(result.clip_ids))].reset_index(drop=True)
    return GoldSnapshot(snapshot.table_uri, snapshot.version, specs[name].split, rows), result


def resolve_table(args: argparse.Namespace) -> tuple[TableRef, Any, Any]:
    """``(TableRef, rows, selection)`` for the run (ValueError / FileNotFoundError); ``latest`` is resolved."""
    snapshot, selection = selected_snapshot(args)
    return TableRef(args.table, snapshot.table_uri, snapshot.version), snapshot.rows, selection


def clip_spec(args: argparse.Namespace) -> Any:
    from facevid.udfs.train.reader import ClipSpec

    return ClipSpec(frames=args.frames, stride=args.stride, height=args.size, width=args.size,
                    offset=getattr(args, "offset", "start"))


def stream_factory(args: argparse.Namespace, ref: TableRef, rank: int, world: int
                   ) -> Callable[[int], Iterator[dict[str, Any]]]:
    """``batches(offset)`` for the training loop: endless epochs of this rank's share, from ``offset``."""
    from facevid.udfs.train.datasets import GoldVideoDataset, make_loader

    if args.reader not in READERS:
        raise ValueError(f"finetune.reader must be one of {READERS}, got {args.reader!r}")
    snapshot, _ = selected_snapshot(args, ref.version)
    spec = clip_spec(args)
    if args.reader == "mosaic":
        return _mosaic_stream(args, snapshot, spec)

    def batches(offset: int) -> Iterator[dict[str, Any]]:
        dataset = GoldVideoDataset(snapshot, spec, seed=args.seed, rank=rank, world_size=world, epochs=None,
                                   start_offset=offset)
        return iter(make_loader(dataset, args.batch_size, args.workers, drop_last=True))
    return batches


def _mosaic_stream(args: argparse.Namespace, snapshot: Any, spec: Any) -> Callable[[int], Iterator[dict[str, Any]]]:
    """Mosaic Streaming: the snapshot written once as MDS shards, read with ``StreamingDataset``
    (which shards by its own RANK / WORLD_SIZE environment and resumes by sample offset)."""
    from facevid.udfs.train.datasets import make_loader
    from facevid.udfs.train.mosaic import MosaicVideoDataset, write_mds

    folder = Path(args.workdir) / "mds"
    if not (folder / "index.json").is_file():
        write_mds(snapshot, folder)

    def batches(offset: int) -> Iterator[dict[str, Any]]:
        import torch

        def endless() -> Iterator[dict[str, Any]]:
            position, epoch = 0, 0  # ``index`` becomes the stream position (Mosaic's is the sample id)
            while True:
                dataset = MosaicVideoDataset(folder, spec, shuffle=True, seed=args.seed + epoch,
                                             batch_size=args.batch_size)
                per_epoch = len(dataset) // args.batch_size * args.batch_size  # this rank's, full batches
                if 0 < per_epoch <= offset - position:  # an epoch wholly before the resume point: not decoded
                    position, epoch = position + per_epoch, epoch + 1
                    continue
                for batch in make_loader(dataset, args.batch_size, args.workers, drop_last=True):
                    size = len(batch["caption"])
                    batch["index"] = torch.arange(position, position + size)
                    position += size
                    if position > offset:  # resume: the samples before the offset were consumed
                        yield batch
                epoch += 1
        return endless()
    return batches
