"""URI handling on local folders and on a real S3 server (SeaweedFS)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from facevid.udfs.media.storage import list_videos, local_path, put_file, sha256_uri, to_local


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


# names whose URIs must round-trip: a literal %, %XX that is not an escape, spaces, unicode, and
# bytes that are not UTF-8 (Latin-1 é, a lone 0xff, a UTF-8-encoded surrogate)
ODD_NAMES = [b"50% off.mp4", b"a%41b%2F.mp4", b"two  spaces .mp4", "caf\u00e9 \u4e2d\u6587.mp4".encode(),
             b"caf\xe9.mp4", b"bad\xff name 100%.mp4", b"sur\xed\xa0\x80.mp4", b"file:x.mp4"]


def test_odd_names_round_trip_through_every_reader(shared_videos: Path, tmp_path: Path) -> None:
    from facevid.udfs.media.probe import probe_video
    from facevid.udfs.media.storage import path_uri

    video = shared_videos / "lp_d18.mp4"
    root = os.fsencode(tmp_path / "src")
    os.makedirs(os.path.join(root, b"d\xe9j\xe0"))
    for name in ODD_NAMES:
        with open(os.path.join(root, name), "wb") as fh:
            fh.write(name * 3)
    os.link(video, os.path.join(root, b"d\xe9j\xe0", b"clip\xff.mp4"))
    found = list_videos(str(tmp_path / "src"))
    assert len(found) == len(ODD_NAMES) + 1 and all(f["error"] is None for f in found)
    for f in found:
        f["uri"].encode("utf-8")  # Arrow/Delta can store it
        path = to_local(f["uri"])
        assert path_uri(path) == f["uri"] and os.path.isfile(path)
        with local_path(f["uri"]) as local:
            assert local == path
        raw = os.fsencode(path)
        if raw.endswith(b"clip\xff.mp4"):
            assert sha256_uri(f["uri"]) == hashlib.sha256(video.read_bytes()).hexdigest()
            with local_path(f["uri"]) as local:
                assert probe_video(local)["duration_s"] == probe_video(str(video))["duration_s"] > 0
        else:
            name = os.path.basename(raw)
            assert sha256_uri(f["uri"]) == hashlib.sha256(name * 3).hexdigest()
    by_name = {os.path.basename(os.fsencode(to_local(f["uri"]))): f for f in found}
    for name in (b"50% off.mp4", b"a%41b%2F.mp4", "caf\u00e9 \u4e2d\u6587.mp4".encode(), b"file:x.mp4"):
        assert by_name[name]["uri"] == os.fsdecode(os.path.join(root, name))  # valid UTF-8: the plain path
    bad = by_name[b"bad\xff name 100%.mp4"]
    assert bad["uri"].startswith("file:///") and bad["uri"].endswith("/bad%FF%20name%20100%25.mp4")
    assert bad["rel"] == "bad%FF%20name%20100%25.mp4"
    assert by_name[b"caf\xe9.mp4"]["uri"].endswith("/caf%E9.mp4")
    assert by_name[b"clip\xff.mp4"]["rel"] == "d%E9j%E0/clip%FF.mp4"
    # the escaped and the plain forms never collide: a literal "%FF" in a valid name stays literal
    assert path_uri("/x/a%FF.mp4") == "/x/a%FF.mp4" != path_uri(b"/x/a\xff.mp4") == "file:///x/a%FF.mp4"
    assert to_local(path_uri(b"/x/a\xff.mp4")) == os.fsdecode(b"/x/a\xff.mp4")


def test_links_never_leave_the_root(shared_videos: Path, tmp_path: Path) -> None:
    root, outside = tmp_path / "src", tmp_path / "outside"
    (root / "sub").mkdir(parents=True)
    (root / ".store").mkdir()
    (outside / "more").mkdir(parents=True)
    (root / "sub" / "real.mp4").write_bytes(b"real")
    (root / ".store" / "kept.mp4").write_bytes(b"kept")
    (outside / "video.mp4").write_bytes(b"outside")
    (outside / "more" / "x.mp4").write_bytes(b"outside too")
    links = {"in.mp4": root / "sub" / "real.mp4", "passwd.mp4": Path("/etc/passwd"),
             "out.mp4": outside / "video.mp4", "dotdot.mp4": Path("../outside/video.mp4"),
             "broken.mp4": root / "nowhere.mp4", "ext": outside, "alias": root / "sub",
             "stored": root / ".store", "sub/loop": Path(".."), "sub/self": Path("."),
             "notes.txt": Path("/etc/passwd")}
    for name, target in links.items():
        (root / name).symlink_to(target)
    os.mkfifo(root / "fifo.mp4")  # not a regular file: never listed (opening it would block)
    found = {f["rel"]: f for f in list_videos(str(root))}
    assert {r: (f["error"] or "").split(":")[0] for r, f in found.items()} == {
        "in.mp4": "", "sub/real.mp4": "", "stored/kept.mp4": "",
        "passwd.mp4": "link_outside_root", "out.mp4": "link_outside_root", "dotdot.mp4": "link_outside_root",
        "ext": "link_outside_root", "broken.mp4": "missing"}
    assert found["in.mp4"]["uri"] == str(root / "in.mp4") and found["in.mp4"]["bytes"] == 4
    assert found["stored/kept.mp4"]["uri"] == str(root / "stored" / "kept.mp4")
    assert "/etc/passwd" in found["passwd.mp4"]["error"] and found["passwd.mp4"]["bytes"] is None
    assert found["ext"]["uri"] == str(root / "ext") and "not followed" in found["ext"]["error"]
    assert all(found[r]["mtime"] is None for r in ("out.mp4", "ext", "broken.mp4"))
    # a source that is itself a link is listed at its real path
    (tmp_path / "via").symlink_to(root)
    assert [f["uri"] for f in list_videos(str(tmp_path / "via"))] == [f["uri"] for f in list_videos(str(root))]
