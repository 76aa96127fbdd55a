"""Training data from gold at a pinned Delta version: the snapshot, decoded samples, the native
IterableDataset (shuffle, ranks, resume, workers, failures) and the Mosaic Streaming round trip, on
the gold table the shared videos produce (``full_run``)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import copy_lake

from facevid.udfs.media.video import iter_frames
from facevid.udfs.train.datasets import GoldVideoDataset, make_loader
from facevid.udfs.train.reader import ClipSpec, GoldSnapshot, collate, latest_version, load_snapshot

pytestmark = [pytest.mark.e2e, pytest.mark.spark]
torch.set_num_threads(1)
TINY = ClipSpec(frames=3, stride=2, height=24, width=16, offset="random")


@pytest.fixture(scope="module")
def gold(full_run) -> tuple[str, int]:
    ctx, _ = full_run
    uri = ctx.lake.location("gold.clips")
    return uri, latest_version(uri)


@pytest.fixture(scope="module")
def train(gold) -> GoldSnapshot:
    return load_snapshot(*gold, split="train")


def ids(samples) -> list[str]:
    return [s["clip_id"] for s in samples]


def test_the_snapshot_is_the_split_at_that_version_sorted_by_clip_id(gold, train) -> None:
    from deltalake import DeltaTable

    uri, version = gold
    table = DeltaTable(uri, version=version).to_pandas()
    expected = table[table["split"] == "train"].sort_values("clip_id")
    assert train.clip_ids == expected["clip_id"].tolist() and len(train) >= 4
    assert train.rows["caption"].tolist() == expected["caption"].tolist()
    for column in ("crop_uri", "source", "identity_id", "duration_s", "fps", "ethnicity"):
        assert column in train.rows.columns
    everything = load_snapshot(uri, version)
    assert len(everything) == len(table) > len(train) and set(everything.rows["split"]) == {"train", "test"}
    assert train.lineage() == {"table_uri": uri, "version": version, "split": "train", "rows": len(train),
                               "clip_ids_sha256": train.digest()}
    assert train.table_name == "gold_clips"


def test_a_snapshot_fails_clearly(gold, tmp_path: Path) -> None:
    from deltalake import write_deltalake

    uri, version = gold
    with pytest.raises(ValueError, match=f"version {version + 5} cannot be read \\(latest is {version}\\)"):
        load_snapshot(uri, version + 5)
    with pytest.raises(ValueError, match="int >= 0"):
        load_snapshot(uri, "latest")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="no rows for split 'validation'"):
        load_snapshot(uri, version, split="validation")
    with pytest.raises(FileNotFoundError, match="no Delta table"):
        load_snapshot(str(tmp_path / "nothing"), 0)
    import pandas as pd

    write_deltalake(str(tmp_path / "t"), pd.DataFrame({"clip_id": ["a"], "crop_uri": ["/x.mp4"], "split": ["train"]}))
    with pytest.raises(ValueError, match=r"required columns \['caption'\] are missing"):
        load_snapshot(str(tmp_path / "t"), 0, split="train")


def test_samples_have_the_declared_shape_and_range_and_the_file_s_frames(train) -> None:
    samples = list(GoldVideoDataset(train, TINY, seed=3, shuffle=False))
    assert ids(samples) == train.clip_ids and [s["index"] for s in samples] == list(range(len(train)))
    captions = dict(zip(train.clip_ids, train.rows["caption"], strict=True))
    for s in samples:
        assert s["video"].shape == (3, 3, 24, 16) and s["video"].dtype == torch.float32
        assert -1.0 <= s["video"].min() < s["video"].max() <= 1.0
        assert torch.equal(s["first_frame"], s["video"][0]) and s["caption"] == captions[s["clip_id"]]
    batch = collate(samples[:3])
    assert batch["video"].shape == (3, 3, 3, 24, 16) and batch["first_frame"].shape == (3, 3, 24, 16)
    assert batch["index"].tolist() == [0, 1, 2] and batch["clip_id"] == train.clip_ids[:3]
    # a random offset at full size: exactly the file's frames start, start + s, ... (the seek is exact)
    spec = ClipSpec(frames=3, stride=4, height=512, width=512, offset="random")
    row = train.rows.iloc[0]
    one = GoldSnapshot(train.table_uri, train.version, "train", train.rows.iloc[:1])
    sample = GoldVideoDataset(one, spec, seed=11).sample(0, epoch=2, index=0)
    assert sample is not None
    frames = [f[:, :, ::-1] for _, f in iter_frames(row["crop_uri"])]
    start = spec.start_frame(len(frames), 11, 2, row["clip_id"])
    assert start > 0
    got = ((sample["video"] + 1) * 127.5).round().byte().permute(0, 2, 3, 1).numpy()
    for k in range(3):
        assert np.array_equal(got[k], frames[start + 4 * k])


def test_a_pinned_version_keeps_its_rows_after_gold_changes(full_run, train, tmp_path: Path) -> None:
    from deltalake import DeltaTable

    ctx = copy_lake(full_run[0], tmp_path)
    uri = ctx.lake.location("gold.clips")
    version = latest_version(uri)
    before = load_snapshot(uri, version, "train")
    assert before.clip_ids == train.clip_ids
    victim = before.clip_ids[1]
    DeltaTable(uri).delete(f"clip_id = '{victim}'")
    assert latest_version(uri) == version + 1
    pinned = load_snapshot(uri, version, "train")
    assert pinned.clip_ids == before.clip_ids and pinned.digest() == before.digest()
    assert pinned.rows["caption"].tolist() == before.rows["caption"].tolist()
    changed = load_snapshot(uri, version + 1, "train")
    assert changed.clip_ids == [c for c in before.clip_ids if c != victim] and changed.digest() != before.digest()
    assert victim in ids(GoldVideoDataset(pinned, TINY, shuffle=False))


def test_ranks_are_disjoint_equal_and_cover_the_split(train) -> None:
    n = len(train)
    for world in (2, 3):
        wrap = [GoldVideoDataset(train, TINY, seed=1, rank=r, world_size=world) for r in range(world)]
        orders = [list(d.rank_order(0)) for d in wrap]
        assert {len(o) for o in orders} == {-(-n // world)} and set().union(*orders) == set(range(n))
        assert sum(map(len, orders)) - n == -n % world  # only the wrapped tail is seen twice
        drop = [GoldVideoDataset(train, TINY, seed=1, rank=r, world_size=world, tail="drop") for r in range(world)]
        orders = [set(d.rank_order(0)) for d in drop]
        assert {len(o) for o in orders} == {n // world} and len(set().union(*orders)) == n // world * world
    seen = [ids(GoldVideoDataset(train, TINY, seed=1, rank=r, world_size=2, tail="drop")) for r in range(2)]
    assert not set(seen[0]) & set(seen[1]) and len(seen[0]) == len(seen[1]) == n // 2
    if n % 2 == 0:
        assert sorted(seen[0] + seen[1]) == train.clip_ids


def test_shuffle_is_seeded_per_epoch_and_resume_yields_exactly_the_rest(train) -> None:
    stream = [(s["index"], s["clip_id"], s["video"]) for s in GoldVideoDataset(train, TINY, seed=5, epochs=2)]
    n = len(train)
    assert [i for i, _, _ in stream] == list(range(2 * n))
    first, second = [c for _, c, _ in stream[:n]], [c for _, c, _ in stream[n:]]
    assert sorted(first) == sorted(second) == train.clip_ids and first != second  # each epoch: all, reshuffled
    again = GoldVideoDataset(train, TINY, seed=5, epochs=2)
    assert [list(again.rank_order(e)) for e in (0, 1)] == [[train.clip_ids.index(c) for c in o] for o in (first, second)]
    assert list(GoldVideoDataset(train, TINY, seed=6).rank_order(0)) != list(again.rank_order(0))
    resumed = list(GoldVideoDataset(train, TINY, seed=5, epochs=2, start_offset=n - 2))
    assert [(s["index"], s["clip_id"]) for s in resumed] == [(i, c) for i, c, _ in stream[n - 2:]]
    for s, (_, _, video) in zip(resumed, stream[n - 2:], strict=True):
        assert torch.equal(s["video"], video)  # the same random offsets (seed, epoch, clip)
    by_epoch = [{c: v for _, c, v in part} for part in (stream[:n], stream[n:])]
    assert any(not torch.equal(by_epoch[0][c], by_epoch[1][c]) for c in train.clip_ids)  # offsets per epoch


def test_a_dataloader_with_two_workers_yields_each_sample_once(train) -> None:
    loader = make_loader(GoldVideoDataset(train, TINY, seed=2), batch_size=3, num_workers=2)
    batches = list(loader)
    indexes = sorted(i for b in batches for i in b["index"].tolist())
    assert indexes == list(range(len(train)))
    assert sorted(c for b in batches for c in b["clip_id"]) == train.clip_ids
    assert all(b["video"].shape[1:] == (3, 3, 24, 16) for b in batches)


def test_a_broken_or_missing_crop_is_skipped_and_counted(train, tmp_path: Path, caplog) -> None:
    rows = train.rows.copy()
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\x00\x00\x00\x18ftypmp42" + os.urandom(4096))
    rows.loc[0, "crop_uri"] = str(tmp_path / "missing.mp4")
    rows.loc[1, "crop_uri"] = str(broken)
    bad = GoldSnapshot(train.table_uri, train.version, "train", rows)
    dataset = GoldVideoDataset(bad, TINY, epochs=2)
    with caplog.at_level("WARNING", logger="facevid.train.reader"):
        seen = ids(dataset)
    assert sorted(seen) == sorted(train.clip_ids[2:] * 2)
    assert dataset.skipped == {train.clip_ids[0]: 2, train.clip_ids[1]: 2}
    assert len([r for r in caplog.records if "skipping clip" in r.getMessage()]) == 2  # once per clip


def test_a_short_clip_is_padded_or_skipped_as_declared(train) -> None:
    one = GoldSnapshot(train.table_uri, train.version, "train", train.rows.iloc[:1])
    long = dict(frames=130, stride=2, height=8, width=8, offset="random")  # 259 frames > any crop
    padded = list(GoldVideoDataset(one, ClipSpec(**long, short="pad")))
    assert len(padded) == 1 and padded[0]["video"].shape == (130, 3, 8, 8)
    assert torch.equal(padded[0]["video"][-1], padded[0]["video"][-5])
    skipping = GoldVideoDataset(one, ClipSpec(**long, short="skip"))
    assert list(skipping) == [] and skipping.skipped == {one.clip_ids[0]: 1}
    with pytest.raises(ValueError, match="clip_spec.offset"):
        ClipSpec(offset="middle")


def test_mosaic_round_trip_matches_the_native_reader(train, tmp_path: Path) -> None:
    from facevid.udfs.train.mosaic import MosaicVideoDataset, read_sidecar, write_mds

    rows = train.rows.copy()
    rows.loc[2, "crop_uri"] = str(tmp_path / "gone.mp4")
    meta = write_mds(GoldSnapshot(train.table_uri, train.version, "train", rows), tmp_path / "mds")
    assert read_sidecar(tmp_path / "mds") == meta
    assert (meta["table_uri"], meta["version"], meta["split"]) == (train.table_uri, train.version, "train")
    assert meta["rows"] == len(train) - 1 and list(meta["skipped"]) == [train.clip_ids[2]]
    mosaic = {s["clip_id"]: s for s in MosaicVideoDataset(tmp_path / "mds", TINY, seed=4)}
    native = {s["clip_id"]: s for s in GoldVideoDataset(train, TINY, seed=4)}
    assert set(mosaic) == set(native) - {train.clip_ids[2]}
    for clip_id, s in mosaic.items():
        assert torch.equal(s["video"], native[clip_id]["video"]) and s["caption"] == native[clip_id]["caption"]
    with pytest.raises(FileExistsError):
        write_mds(train, tmp_path / "mds")


RANK_SCRIPT = """
import json, sys, torch
torch.set_num_threads(1)
from facevid.udfs.train.mosaic import MosaicVideoDataset
from facevid.udfs.train.reader import ClipSpec
print(json.dumps([s["clip_id"] for s in MosaicVideoDataset(sys.argv[1], ClipSpec(frames=1, height=8, width=8))]))
"""


def test_mosaic_shards_by_its_rank_environment(train, tmp_path: Path) -> None:
    from facevid.udfs.train.mosaic import write_mds

    write_mds(train, tmp_path / "mds")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {"WORLD_SIZE": "2", "LOCAL_WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)}
    procs = [subprocess.Popen([sys.executable, "-c", RANK_SCRIPT, str(tmp_path / "mds")], text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              env=os.environ | env | {"RANK": str(r), "LOCAL_RANK": str(r)}) for r in range(2)]
    seen = []
    for p in procs:
        out, err = p.communicate(timeout=180)
        assert p.returncode == 0, err[-2000:]
        seen.append(json.loads(out.strip().splitlines()[-1]))
    assert not set(seen[0]) & set(seen[1]) and sorted(seen[0] + seen[1]) == train.clip_ids


def test_mosaic_dataframe_to_mds_does_not_run_on_sail(engine, gold, tmp_path: Path) -> None:
    """Measured: Mosaic's Spark converter needs ``TaskContext`` in the Python workers; Sail has none
    (documented in ``facevid.udfs.train.mosaic``; ``write_mds`` is the path that works)."""
    from facevid.udfs.models.torch_compat import import_torchvision

    import_torchvision()
    from streaming.base.converters import dataframe_to_mds

    uri, version = gold
    df = engine.spark.read.format("delta").option("versionAsOf", version).load(uri).select("clip_id", "caption")
    with pytest.raises(Exception, match="TaskContext.get\\(\\) returns None"):
        dataframe_to_mds(df, merge_index=True,
                         mds_kwargs={"out": str(tmp_path / "mds"), "columns": {"clip_id": "str", "caption": "str"}})
    shutil.rmtree(tmp_path / "mds", ignore_errors=True)
