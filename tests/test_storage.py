"""URI handling on local folders and on a real S3 server (SeaweedFS)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from udfs.storage import list_videos, local_path, put_file, sha256_uri


def test_local_listing_is_recursive_sorted_and_skips_hidden(tmp_path: Path) -> None:
    (tmp_path / "b").mkdir()
    (tmp_path / ".hidden").mkdir()
    for rel in ("b/z.MP4", "a.mov", "notes.txt", ".hidden/x.mp4", "b/.y.mp4"):
        (tmp_path / rel).write_bytes(b"12345")
    found = list_videos(str(tmp_path))
    assert [Path(f["uri"]).relative_to(tmp_path).as_posix() for f in found] == ["a.mov", "b/z.MP4"]
    assert all(f["bytes"] == 5 and f["mtime"] > 0 for f in found)
    assert list_videos(f"file://{tmp_path}") == found


def test_missing_folder_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no such folder"):
        list_videos(str(tmp_path / "nope"))


def test_sha256_of_a_real_video(shared_videos: Path) -> None:
    path = shared_videos / "lp_d18.mp4"
    assert sha256_uri(str(path), chunk=65536) == hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.s3
def test_s3_list_hash_download_and_put(s3_server, shared_videos: Path, tmp_path: Path) -> None:
    bucket = s3_server.bucket("facevid-storage")
    client = s3_server.client()
    src = shared_videos / "lp_d18.mp4"
    client.upload_file(str(src), "facevid-storage", "raw/2024/lp_d18.mp4")
    client.put_object(Bucket="facevid-storage", Key="raw/readme.txt", Body=b"x")
    client.put_object(Bucket="facevid-storage", Key="other/skip.mp4", Body=b"x")
    found = list_videos(f"{bucket}/raw")
    assert [f["uri"] for f in found] == [f"{bucket}/raw/2024/lp_d18.mp4"]
    assert found[0]["bytes"] == src.stat().st_size
    assert sha256_uri(found[0]["uri"], chunk=1 << 16) == hashlib.sha256(src.read_bytes()).hexdigest()
    with local_path(found[0]["uri"]) as local:
        assert Path(local).read_bytes() == src.read_bytes()
    assert not Path(local).exists()  # the temporary download is gone
    put_file(src, f"{bucket}/crops/a.mp4")
    assert client.head_object(Bucket="facevid-storage", Key="crops/a.mp4")["ContentLength"] == src.stat().st_size
    with pytest.raises(FileNotFoundError, match="cannot access bucket"):
        list_videos("s3://no-such-bucket-facevid/x")
