"""Trainer exports of a gold snapshot (finetrainers, Open-Sora, EasyAnimate) on the shared gold, and
the reader and exports over S3 (a Delta table, crops and an export on a real S3 server)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch

from facevid.udfs.media.storage import sha256_uri
from facevid.udfs.media.video import iter_frames
from facevid.udfs.train.datasets import GoldVideoDataset
from facevid.udfs.train.exports import FORMATS, OPENSORA_COLUMNS, export_snapshot
from facevid.udfs.train.reader import ClipSpec, GoldSnapshot, latest_version, load_snapshot

pytestmark = [pytest.mark.e2e, pytest.mark.spark]
torch.set_num_threads(1)


@pytest.fixture(scope="module")
def train(full_run) -> GoldSnapshot:
    uri = full_run[0].lake.location("gold.clips")
    return load_snapshot(uri, latest_version(uri), split="train")


def read_index(fmt: str, folder: Path) -> list[tuple[str, str]]:
    """``(video path as written, caption)`` per clip, parsed back the way each trainer reads it."""
    if fmt == "finetrainers":
        prompts = (folder / "prompts.txt").read_text().splitlines()
        videos = (folder / "videos.txt").read_text().splitlines()
        assert len(prompts) == len(videos)
        return list(zip(videos, prompts, strict=True))
    if fmt == "opensora":
        with open(folder / "data.csv", newline="") as fh:
            reader = csv.DictReader(fh)
            assert tuple(reader.fieldnames or ()) == OPENSORA_COLUMNS
            return [(r["path"], r["text"]) for r in reader]
    items = json.loads((folder / "metadata.json").read_text())
    assert all(set(i) == {"file_path", "text", "type"} and i["type"] == "video" for i in items)
    return [(i["file_path"], i["text"]) for i in items]


def test_every_format_parses_back_points_at_the_videos_and_carries_the_version(train, tmp_path: Path) -> None:
    captions = dict(zip(train.clip_ids, train.rows["caption"], strict=True))
    crops = dict(zip(train.clip_ids, train.rows["crop_uri"], strict=True))
    for fmt in FORMATS:
        meta = export_snapshot(train, str(tmp_path / "exports"), fmt)
        folder = tmp_path / "exports" / fmt / f"gold_clips-v{train.version}-train"
        assert meta["folder"] == str(folder) and json.loads((folder / "export.json").read_text()) == meta
        assert (meta["table_uri"], meta["version"], meta["split"], meta["format"]) == (
            train.table_uri, train.version, "train", fmt)
        assert meta["rows"] == len(train) and meta["clip_ids"] == train.clip_ids
        assert meta["clip_ids_sha256"] == train.digest() and meta["skipped"] == {} and meta["created_at"]
        index = read_index(fmt, folder)
        assert len(index) == len(train)
        for (path, text), clip_id in zip(index, train.clip_ids, strict=True):
            assert Path(path).stem == clip_id and text == captions[clip_id]
            video = Path(path) if fmt == "opensora" else folder / path
            assert Path(path).is_absolute() == (fmt == "opensora")
            assert video.is_symlink() and sha256_uri(str(video)) == sha256_uri(crops[clip_id])
    with open(tmp_path / "exports" / "opensora" / f"gold_clips-v{train.version}-train" / "data.csv") as fh:
        first = next(csv.DictReader(fh))
    assert int(first["num_frames"]) == len(list(iter_frames(first["path"], max_side=16)))
    assert (first["height"], first["width"], float(first["aspect_ratio"]), first["resolution"]) == (
        "512", "512", 1.0, "262144")
    assert abs(float(first["fps"]) - float(train.rows["fps"].iloc[0])) < 0.1


def test_copy_and_uri_modes_missing_crops_and_immutability(train, tmp_path: Path) -> None:
    rows = train.rows.copy()
    rows.loc[0, "caption"] = "A person talks.\nThen smiles."
    rows.loc[1, "crop_uri"] = str(tmp_path / "gone.mp4")
    snap = GoldSnapshot(train.table_uri, train.version, "train", rows)
    out = str(tmp_path / "exports")
    meta = export_snapshot(snap, out, "finetrainers", videos="copy")
    folder = Path(meta["folder"])
    index = read_index("finetrainers", folder)
    assert len(index) == len(train) - 1 and index[0][1] == "A person talks. Then smiles."
    assert list(meta["skipped"]) == [train.clip_ids[1]] and meta["rows"] == len(train) - 1
    assert meta["clip_ids"] == [c for c in train.clip_ids if c != train.clip_ids[1]]
    for path, _ in index:
        assert (folder / path).is_file() and not (folder / path).is_symlink()
    assert sha256_uri(str(folder / index[0][0])) == sha256_uri(rows.loc[0, "crop_uri"])
    with pytest.raises(FileExistsError, match="immutable"):
        export_snapshot(snap, out, "finetrainers")
    meta = export_snapshot(train, out, "easyanimate", videos="uri")
    assert [p for p, _ in read_index("easyanimate", Path(meta["folder"]))] == train.rows["crop_uri"].tolist()
    assert not (Path(meta["folder"]) / "videos").exists()
    again = export_snapshot(train, out, "finetrainers", overwrite=True)
    assert again["rows"] == len(train) and again["skipped"] == {}
    with pytest.raises(ValueError, match="export.format"):
        export_snapshot(train, out, "webdataset")


def test_reader_and_exports_over_s3(s3_server, train, tmp_path: Path) -> None:
    from deltalake import write_deltalake

    from facevid.jobs.lake import storage_options

    bucket = s3_server.bucket("facevid-train")
    client = s3_server.client()
    rows = train.rows[["clip_id", "crop_uri", "caption", "split", "duration_s", "fps"]].iloc[:2].copy()
    for i, row in rows.iterrows():
        key = f"crops/{row['clip_id']}.mp4"
        client.upload_file(row["crop_uri"], bucket[len("s3://"):], key)
        rows.loc[i, "crop_uri"] = f"{bucket}/{key}"
    table = f"{bucket}/lake/gold/clips"
    options = storage_options(table)
    write_deltalake(table, rows, storage_options=options)
    write_deltalake(table, rows.iloc[:1], mode="overwrite", storage_options=options)
    assert latest_version(table, options) == 1
    snap = load_snapshot(table, 0, "train", storage_options=options)
    assert snap.clip_ids == train.clip_ids[:2] and snap.table_name == "gold_clips"
    spec = ClipSpec(frames=2, height=16, width=16)
    native = {s["clip_id"]: s["video"] for s in GoldVideoDataset(train, spec)}
    samples = list(GoldVideoDataset(snap, spec))
    assert [s["clip_id"] for s in samples] == snap.clip_ids
    assert all(torch.equal(s["video"], native[s["clip_id"]]) for s in samples)
    meta = export_snapshot(snap, f"{bucket}/exports", "easyanimate")
    prefix = "exports/easyanimate/gold_clips-v0-train"
    assert meta["folder"] == f"{bucket}/{prefix}" and meta["videos"] == "copy"
    keys = {o["Key"] for o in client.list_objects_v2(Bucket=bucket[5:], Prefix=prefix)["Contents"]}
    assert keys == {f"{prefix}/export.json", f"{prefix}/metadata.json",
                    *(f"{prefix}/videos/{c}.mp4" for c in snap.clip_ids)}
    stored = json.loads(client.get_object(Bucket=bucket[5:], Key=f"{prefix}/export.json")["Body"].read())
    assert (stored["version"], stored["table_uri"], stored["rows"]) == (0, table, 2)
    with pytest.raises(ValueError, match="link"):
        export_snapshot(snap, f"{bucket}/exports", "finetrainers", videos="link")
