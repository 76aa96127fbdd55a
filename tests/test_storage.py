"""URI handling on local folders and on a real S3 server (SeaweedFS)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from udfs.storage import list_videos, local_path, put_file, sha256_uri, to_local


def test_local_listing_is_recursive_sorted_and_skips_hidden(tmp_path: Path) -> None:
    (tmp_path / "b").mkdir()
    (tmp_path / ".hidden").mkdir()
    for rel in ("b/z.MP4", "a.mov", "c.webm", "notes.txt", ".hidden/x.mp4", "b/.y.mp4"):
        (tmp_path / rel).write_bytes(b"12345")
    found = list_videos(str(tmp_path))
    assert [Path(f["uri"]).relative_to(tmp_path).as_posix() for f in found] == ["a.mov", "b/z.MP4", "c.webm"]
    assert all(f["bytes"] == 5 and isinstance(f["mtime"], float) and f["mtime"] > 0 for f in found)
    assert all(Path(f["uri"]).is_absolute() for f in found)
    assert list_videos(f"file://{tmp_path}") == found
    assert list_videos(str(tmp_path), extensions=(".webm",)) == found[2:]
    assert list_videos(str(tmp_path / "a.mov")) == found[:1]


def test_missing_folder_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=f"no such folder: {tmp_path / 'nope'}"):
        list_videos(str(tmp_path / "nope"))


def test_uri_mapping() -> None:
    assert to_local("dbfs:/mnt/raw/a.mp4") == "/dbfs/mnt/raw/a.mp4"
    assert to_local("file:///data/my%20clip.mp4") == "/data/my clip.mp4"
    assert to_local("/data/a.mp4") == "/data/a.mp4"
    with local_path("dbfs:/x.mp4") as path:
        assert path == "/dbfs/x.mp4"


def test_sha256_and_local_put(shared_videos: Path, tmp_path: Path) -> None:
    path = shared_videos / "lp_d18.mp4"
    expected = hashlib.sha256(path.read_bytes()).hexdigest()
    assert sha256_uri(str(path)) == sha256_uri(f"file://{path}", chunk=65536) == expected
    dest = put_file(path, str(tmp_path / "crops" / "a.mp4"))
    assert sha256_uri(dest) == expected


@pytest.mark.s3
def test_s3_list_hash_download_and_put(s3_server, shared_videos: Path, tmp_path: Path) -> None:
    assert os.environ["AWS_ENDPOINT_URL"] == s3_server.endpoint
    bucket = s3_server.bucket("facevid-storage")
    client = s3_server.client()
    src = shared_videos / "lp_d18.mp4"
    client.upload_file(str(src), "facevid-storage", "raw/2024/lp_d18.mp4")
    for key in ("raw/readme.txt", "raw/.cache/x.mp4", "raw2/skip.mp4", "other/skip.mp4", "raw/b.MOV"):
        client.put_object(Bucket="facevid-storage", Key=key, Body=b"x")
    found = list_videos(f"{bucket}/raw/")
    assert [f["uri"] for f in found] == [f"{bucket}/raw/2024/lp_d18.mp4", f"{bucket}/raw/b.MOV"]
    assert found[0]["bytes"] == src.stat().st_size and isinstance(found[0]["mtime"], float)
    assert list_videos(f"{bucket}/raw") == found
    assert list_videos(found[1]["uri"]) == found[1:]
    expected = hashlib.sha256(src.read_bytes()).hexdigest()
    assert sha256_uri(found[0]["uri"], chunk=1 << 16) == expected
    with local_path(found[0]["uri"]) as local:
        assert local.endswith(".mp4") and Path(local).read_bytes() == src.read_bytes()
    with local_path(found[0]["uri"]) as again:  # the next clip of the same video: no new download
        assert again == local
    with local_path(found[1]["uri"]) as other:  # another object replaces the thread's download
        assert other != local and Path(other).read_bytes() == b"x"
    assert not Path(local).exists()
    assert put_file(src, f"{bucket}/crops/a.mp4") == f"{bucket}/crops/a.mp4"
    assert sha256_uri(f"{bucket}/crops/a.mp4") == expected


@pytest.mark.s3
def test_s3_errors_name_the_uri(s3_server, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(FileNotFoundError, match="s3://no-such-bucket-facevid/x"):
        list_videos("s3://no-such-bucket-facevid/x")
    s3_server.bucket("facevid-private")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wrong")  # the server checks signatures
    with pytest.raises(PermissionError, match="s3://facevid-private"):
        list_videos("s3://facevid-private")
