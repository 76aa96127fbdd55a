"""facevid.udfs.media.artifacts: content digests, atomic publish, and the sweep over real Delta table versions
(delta-rs), locally and on S3."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pyarrow as pa
import pytest
from deltalake import DeltaTable, write_deltalake

from facevid.udfs.media.artifacts import (
    content_digest,
    list_files,
    publish,
    read_marker,
    referenced_by,
    referenced_uris,
    sweep,
    temp_for,
    unreferenced,
    write_marker,
)

DAY = 86400.0


def test_digest_is_canonical_and_sensitive() -> None:
    assert content_digest({"a": 1, "b": [1, 2]}) == content_digest({"b": [1, 2], "a": 1})
    assert content_digest({"a": 1}) != content_digest({"a": 2})
    assert len(content_digest({})) == 20


def test_publish_and_marker(tmp_path: Path) -> None:
    uri = str(tmp_path / "c" / "d.mp4")
    tmp = temp_for(uri, folder=str(tmp_path))
    Path(tmp).write_bytes(b"bytes")
    assert read_marker(uri) is None
    publish(tmp, uri)
    assert not Path(tmp).exists() and Path(uri).read_bytes() == b"bytes"
    write_marker(uri, {"n": 1})
    assert read_marker(uri) == {"n": 1}
    Path(uri).unlink()
    assert read_marker(uri) is None  # a marker without its file is not a complete artifact


def test_unreferenced_keeps_markers_of_referenced_files() -> None:
    files = ["/r/a/1.mp4", "/r/a/1.json", "/r/a/2.mp4", "/r/a/2.json", "/r/.x.mp4.1234.part"]
    assert unreferenced(files, {"/r/a/1.mp4", "file:///r/a/9.mp4"}) == files[2:]
    assert unreferenced([{"uri": "s3a://b/k/1.mp4"}], {"s3://b/k/1.mp4"}) == []


def crops_table(path: Path, root: Path) -> dict[str, str]:
    """silver.crops-like versions: 0 creates a1, b; 1 appends c; 2 replaces a1 by a2 (overwrite)."""
    uri = {k: str(root / k / f"{k}0.mp4") for k in ("a1", "b", "c", "a2")}
    write_deltalake(path, pa.table({"clip_id": ["a", "b"], "crop_uri": [uri["a1"], uri["b"]]}))
    write_deltalake(path, pa.table({"clip_id": ["c"], "crop_uri": [uri["c"]]}), mode="append")
    write_deltalake(path, pa.table({"clip_id": ["a", "b", "c"], "crop_uri": [uri["a2"], uri["b"], None]}),
                    mode="overwrite")
    return uri


def make_files(root: Path, uris: dict[str, str], age_s: float) -> list[str]:
    made = []
    for uri in [*uris.values(), str(root / "orphan" / "o0.mp4")]:
        for name in (uri, uri[:-4] + ".json"):
            Path(name).parent.mkdir(parents=True, exist_ok=True)
            Path(name).write_bytes(b"x")
            os.utime(name, (time.time() - age_s, time.time() - age_s))
            made.append(name)
    return made


def test_a_replaced_crop_survives_while_its_version_is_in_retention(tmp_path: Path) -> None:
    table, root = tmp_path / "silver" / "crops", tmp_path / "crops"
    uri = crops_table(table, root)
    make_files(root, uri, age_s=2 * DAY)
    fresh = root / "new" / "n0.mp4"  # published by a running attempt, not committed yet
    fresh.parent.mkdir()
    fresh.write_bytes(b"n")
    keep = referenced_uris(str(table), "crop_uri", retention_hours=24)
    assert keep == {uri["a1"], uri["b"], uri["c"], uri["a2"]}  # every version is younger than a day
    swept = sweep(str(root), keep, retention_hours=24, dry_run=False)
    assert sorted(swept) == [str(root / "orphan" / "o0.json"), str(root / "orphan" / "o0.mp4")]
    assert Path(uri["a1"]).exists() and fresh.exists() and not (root / "orphan").exists()

    now = referenced_uris(str(table), "crop_uri", retention_hours=0)
    assert now == {uri["a2"], uri["b"]}  # only the current version
    plan = sweep(str(root), now, retention_hours=0)  # dry run: nothing deleted
    assert sorted(plan) == sorted([uri["a1"], uri["a1"][:-4] + ".json", uri["c"], uri["c"][:-4] + ".json",
                                   str(fresh)])
    assert all(Path(p).exists() for p in plan)
    assert sorted(sweep(str(root), now, retention_hours=0, dry_run=False)) == sorted(plan)
    assert sorted(f["uri"] for f in list_files(str(root))) == sorted(
        [uri["a2"], uri["a2"][:-4] + ".json", uri["b"], uri["b"][:-4] + ".json"])
    assert DeltaTable(str(table)).version() == 2  # the table itself is untouched


def age_commits(table: Path, versions: list[int], age_s: float) -> None:
    """Rewrite the commit timestamps of ``versions`` as if they were committed ``age_s`` ago."""
    for v in versions:
        log = table / "_delta_log" / f"{v:020d}.json"
        actions = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
        for action in actions:
            if "commitInfo" in action:
                action["commitInfo"]["timestamp"] = int((time.time() - age_s) * 1000)
        log.write_text("\n".join(json.dumps(a) for a in actions) + "\n")


def test_the_version_current_when_the_window_opened_is_kept(tmp_path: Path) -> None:
    table, root = tmp_path / "t", tmp_path / "crops"
    uri = crops_table(table, root)
    age_commits(table, [0, 1], 3 * DAY)  # v0, v1 three days old; v2 just now
    week = referenced_uris(str(table), "crop_uri", retention_hours=7 * 24)
    day = referenced_uris(str(table), "crop_uri", retention_hours=24)
    assert week == day == {uri["a1"], uri["b"], uri["c"], uri["a2"]}  # time travel to -1 day reads v1
    assert referenced_uris(str(table), "crop_uri", 24, now=time.time() + 3 * DAY) == {uri["a2"], uri["b"]}
    dt = DeltaTable(str(table))
    dt.load_as_version(0)
    os.unlink(dt.file_uris()[0].removeprefix("file://"))  # vacuum removed v0's data file
    assert referenced_uris(str(table), "crop_uri", 24) == {uri["c"], uri["a2"], uri["b"]}  # v0 unreachable
    other = tmp_path / "gold"
    write_deltalake(other, pa.table({"crop_uri": [str(root / "g" / "g0.mp4")]}))
    both = referenced_by([(str(table), "crop_uri"), (str(other), "crop_uri")], 24)
    assert both == {uri["c"], uri["a2"], uri["b"], str(root / "g" / "g0.mp4")}


@pytest.mark.s3
def test_sweep_on_s3(s3_server, tmp_path: Path) -> None:
    bucket = s3_server.bucket("facevid-sweep")
    client = s3_server.client()
    for key in ("crops/a/1.mp4", "crops/a/1.json", "crops/a/2.mp4", "crops2/x.mp4"):
        client.put_object(Bucket="facevid-sweep", Key=key, Body=b"x")
    table = tmp_path / "t"
    write_deltalake(table, pa.table({"crop_uri": [f"{bucket}/crops/a/1.mp4"]}))
    keep = referenced_uris(str(table), "crop_uri", 0)
    root = f"{bucket}/crops"
    assert sweep(root, keep, retention_hours=1.0, dry_run=False) == []  # all younger than an hour
    later = time.time() + 2 * 3600
    assert sweep(root, keep, retention_hours=1.0, dry_run=False, now=later) == [f"{bucket}/crops/a/2.mp4"]
    left = sorted(o["Key"] for o in client.list_objects_v2(Bucket="facevid-sweep")["Contents"])
    assert left == ["crops/a/1.json", "crops/a/1.mp4", "crops2/x.mp4"]  # a sibling prefix is not under root
