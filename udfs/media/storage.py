"""URIs of videos and artifacts: local paths, ``file://``, ``dbfs:/`` (-> ``/dbfs/``) and ``s3://``.

S3 credentials, region and endpoint come from the standard ``AWS_*`` variables
(``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_REGION``/``AWS_DEFAULT_REGION``), with
``AWS_ENDPOINT_URL`` (or ``AWS_ENDPOINT_URL_S3``) for S3-compatible servers (MinIO, SeaweedFS).
Hidden files and folders (a path part starting with ``.``) are never listed. S3 keys are UTF-8
and are recorded as they are; the rules below are for local paths.

**Local file URIs.** A local file is recorded as its absolute path (symlinks of the source root
resolved) when its bytes are valid UTF-8, the usual case; a ``%`` or a space in such a name is
literal. A path whose bytes are *not* valid UTF-8 (Linux allows any bytes but ``/`` and NUL;
Arrow and Delta need UTF-8) is recorded as a ``file://`` URI in RFC 3986 style instead: every
byte outside the unreserved and sub-delimiter characters, ``%`` itself included, becomes
``%XX`` (``b"/data/caf\\xe9 50%.mp4"`` -> ``file:///data/caf%E9%2050%25.mp4``). The two forms never
collide (a plain path starts with ``/``, an escaped one with ``file:``) and every reader
(``to_local``, ``local_path``, ``sha256_uri``) maps either back to the real bytes path
(``os.fsdecode`` of the unescaped bytes: a surrogate-escaped ``str`` that ``open`` and PyAV
accept). ``path_uri`` is the encoder; ``to_local(path_uri(p)) == p`` for every path. The path
under the source root that ``list_videos`` reports (``rel``: folder identities, manifests) is
escaped the same way when its bytes are not UTF-8.

**Links in local sources** (``list_videos``). Whether a link stays inside the source root is
decided on its resolved target when the source is listed; nothing outside the root is ever
opened, hashed or decoded:

- a file link whose target is inside the root is followed: the file is listed under the link's
  own path (so ``identity: folder`` reads the link's folder) and hashes to the same
  ``video_id`` as its target (one ``bronze.videos`` row);
- a file link to a target outside the root is an error entry ``link_outside_root`` (never read);
- a folder link is followed when it resolves inside the root, unless that folder is already
  being listed (a link cycle, or a second path to a folder of the tree: each real folder is
  listed once, the real path first); a folder link outside the root is one error entry
  ``link_outside_root`` naming the link, and nothing under it is listed;
- a broken link with a video extension is an error entry ``missing``; a folder that cannot be
  read is an error entry ``unreadable``; only regular files are listed (no FIFOs, devices).
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import os
import shutil
import stat
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote_from_bytes, unquote_to_bytes, urlparse

VIDEO_EXTENSIONS = (".mp4", ".mov", ".mkv", ".avi", ".webm", ".m4v")
_S3_ENV = ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL", "AWS_REGION", "AWS_DEFAULT_REGION", "AWS_PROFILE",
           "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")
_local = threading.local()
_URI_SAFE = "/-._~!$&'()*+,;=:@"  # RFC 3986 unreserved + sub-delims + ":@/"; everything else -> %XX


def is_s3(uri: str) -> bool:
    """Whether ``uri`` names an S3 object or prefix (``s3://`` or ``s3a://``)."""
    return uri.startswith(("s3://", "s3a://"))


def split_s3(uri: str) -> tuple[str, str]:
    """``s3://bucket/key`` -> ``(bucket, key)``."""
    bucket, _, key = uri.split("://", 1)[1].partition("/")
    if not bucket:
        raise ValueError(f"no bucket in {uri!r}")
    return bucket, key


def _utf8(raw: bytes) -> str | None:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return None


def escape_bytes(raw: bytes) -> str:
    """Text for path bytes: the bytes decoded when they are valid UTF-8, else every byte outside
    the RFC 3986 safe set (``%`` included) as ``%XX`` (the escaping of ``path_uri``)."""
    text = _utf8(raw)
    return text if text is not None else quote_from_bytes(raw, safe=_URI_SAFE)


def path_uri(path: str | bytes | os.PathLike[Any]) -> str:
    """The URI recorded for a local path: the path itself when its bytes are valid UTF-8, else a
    ``file://`` URI with the bytes percent-encoded (see the module docstring)."""
    raw = os.fsencode(path)
    text = _utf8(raw)
    return text if text is not None else "file://" + quote_from_bytes(raw, safe=_URI_SAFE)


def to_local(uri: str) -> str:
    """Local filesystem path of a local URI: ``file://`` stripped and percent-decoded to the real
    path bytes (as ``os.fsdecode`` gives them), ``dbfs:/x`` -> ``/dbfs/x``; a plain path as is."""
    if uri.startswith("file:"):
        return os.fsdecode(unquote_to_bytes(urlparse(uri).path))
    if uri.startswith("dbfs:/"):
        return "/dbfs/" + uri[len("dbfs:/"):].lstrip("/")
    if is_s3(uri):
        raise ValueError(f"not a local URI: {uri}")
    return uri


def s3_client() -> Any:
    """A boto3 S3 client configured from the ``AWS_*`` environment, cached per thread (clients
    are not thread-safe to create) and rebuilt when those variables change."""
    key = tuple(os.environ.get(name) for name in _S3_ENV)
    cached = getattr(_local, "s3", None)
    if cached is not None and cached[0] == key:
        return cached[1]
    import boto3
    from botocore.config import Config

    endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL") or None
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
    config = Config(retries={"max_attempts": 5, "mode": "standard"},
                    s3={"addressing_style": "path" if endpoint else "auto"})
    client = boto3.session.Session().client("s3", endpoint_url=endpoint, region_name=region, config=config)
    _local.s3 = (key, client)
    return client


def _hidden(rel: str) -> bool:
    return any(part.startswith(".") for part in rel.split("/") if part)


def _list_s3(uri: str, exts: tuple[str, ...]) -> list[dict[str, Any]]:
    from botocore.exceptions import ClientError

    scheme = uri.split("://", 1)[0]
    bucket, prefix = split_s3(uri)
    prefix = prefix.rstrip("/")
    client = s3_client()
    try:
        client.head_bucket(Bucket=bucket)
    except ClientError as exc:
        code = str(exc.response.get("Error", {}).get("Code", ""))
        if code in ("404", "NoSuchBucket"):
            raise FileNotFoundError(f"no such bucket: {uri}") from exc
        if code in ("403", "AccessDenied"):
            raise PermissionError(f"access denied to bucket of {uri}") from exc
        raise
    found = []
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            key = obj["Key"]
            if prefix and key != prefix and not key.startswith(prefix + "/"):
                continue  # "raw" must not match "raw2/..."
            rel = key[len(prefix):] or key.rsplit("/", 1)[-1]
            if key.lower().endswith(exts) and not _hidden(rel):
                found.append({"uri": f"{scheme}://{bucket}/{key}", "rel": rel.lstrip("/"),
                              "bytes": int(obj["Size"]), "mtime": obj["LastModified"].timestamp(),
                              "error": None})
    return sorted(found, key=lambda f: f["uri"])


def _entry(path: bytes, rel: bytes, st: os.stat_result | None = None, error: str | None = None) -> dict[str, Any]:
    return {"uri": path_uri(path), "rel": escape_bytes(rel), "bytes": st.st_size if st else None,
            "mtime": st.st_mtime if st else None, "error": error}


def _inside(real: bytes, top: bytes) -> bool:
    return real == top or real.startswith(top.rstrip(b"/") + b"/")


def _list_local(root: Path, exts: tuple[str, ...]) -> list[dict[str, Any]]:
    """The local listing (see "Links in local sources" in the module docstring)."""
    top = os.path.realpath(os.fsencode(root))
    bexts = tuple(os.fsencode(e) for e in exts)
    if not os.path.isdir(top):  # a single file: the source names it, there is no tree to escape
        return [_entry(top, os.path.basename(top), os.stat(top))] \
            if top.lower().endswith(bexts) and stat.S_ISREG(os.stat(top).st_mode) else []
    found: list[dict[str, Any]] = []
    seen: set[bytes] = set()  # real paths of folders listed (cycles, two paths to one folder)
    links: list[tuple[bytes, bytes]] = []  # folder links inside the root: listed after the real tree
    stack: list[tuple[bytes, bytes]] = [(top, b"")]
    while stack or links:
        folder, rel = stack.pop() if stack else links.pop(0)
        real = os.path.realpath(folder)
        if real in seen:
            continue
        seen.add(real)
        try:
            with os.scandir(folder) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as exc:
            found.append(_entry(folder, rel, error=f"unreadable: {exc.strerror or exc}"))
            continue
        subfolders = []
        for e in entries:
            if e.name.startswith(b"."):
                continue
            erel = rel + b"/" + e.name if rel else e.name
            video = e.name.lower().endswith(bexts)
            try:
                if e.is_symlink():
                    target = os.path.realpath(e.path)
                    if not os.path.exists(target):
                        if video:
                            found.append(_entry(e.path, erel, error=f"missing: broken link to "
                                                f"{escape_bytes(os.readlink(e.path))}"))
                        continue
                    outside = not _inside(target, top)
                    if os.path.isdir(target):
                        if outside:
                            found.append(_entry(e.path, erel, error=f"link_outside_root: folder link to "
                                                f"{escape_bytes(target)}, not followed"))
                        else:
                            links.append((e.path, erel))
                        continue
                    if not video:
                        continue
                    if outside:
                        found.append(_entry(e.path, erel, error=f"link_outside_root: links to "
                                            f"{escape_bytes(target)}, not read"))
                        continue
                    st = os.stat(target)
                elif e.is_dir(follow_symlinks=False):
                    subfolders.append((e.path, erel))
                    continue
                elif video:
                    st = e.stat(follow_symlinks=False)
                else:
                    continue
            except OSError as exc:
                found.append(_entry(e.path, erel, error=f"unreadable: {exc.strerror or exc}"))
                continue
            if stat.S_ISREG(st.st_mode):
                found.append(_entry(e.path, erel, st))
        stack.extend(reversed(subfolders))
    return sorted(found, key=lambda f: f["uri"])


def list_videos(uri: str, extensions: tuple[str, ...] = VIDEO_EXTENSIONS) -> list[dict[str, Any]]:
    """Video files (by extension, case-insensitive) under a folder/prefix or a single file,
    recursively, sorted by URI: ``{"uri", "rel", "bytes", "mtime", "error"}`` with local URIs as
    ``path_uri`` writes them or full ``s3://`` URIs, ``rel`` the path under the source root
    (escaped like the URI; a single-file source: its name), ``mtime`` in epoch seconds, and
    ``error`` ``None`` or ``"<category>: <detail>"`` for a local entry that must not be read
    (``link_outside_root``, ``missing``, ``unreadable``; ``bytes``/``mtime`` are then ``None``).
    Raises ``FileNotFoundError`` for a missing folder or bucket, ``PermissionError`` for a bucket
    the credentials cannot read."""
    exts = tuple(e.lower() for e in extensions)
    if is_s3(uri):
        return _list_s3(uri, exts)
    root = Path(to_local(uri)).expanduser()
    if not root.exists():
        raise FileNotFoundError(f"no such folder: {uri}")
    return _list_local(root, exts)


@contextmanager
def local_path(uri: str) -> Iterator[str]:
    """A local path for reading ``uri``: the file itself when local; for S3 a temporary download
    (same suffix) that the thread keeps until it needs a different object, so the clips of one
    video processed one after another download it once. Leftovers are removed at exit."""
    if not is_s3(uri):
        yield to_local(uri)
        return
    last = getattr(_local, "download", None)
    if last is None or last[0] != uri or not os.path.exists(last[1]):
        if last is not None:
            _discard(last[1])
        bucket, key = split_s3(uri)
        fd, tmp = tempfile.mkstemp(prefix="facevid-", suffix=Path(key).suffix)
        os.close(fd)
        with _downloads_lock:
            _downloads.add(tmp)
        try:
            s3_client().download_file(bucket, key, tmp)
        except BaseException:
            _discard(tmp)
            _local.download = None
            raise
        _local.download = (uri, tmp)
    yield _local.download[1]


_downloads: set[str] = set()
_downloads_lock = threading.Lock()


def _discard(path: str) -> None:
    with _downloads_lock:
        _downloads.discard(path)
    with contextlib.suppress(OSError):
        os.unlink(path)


@atexit.register
def _cleanup_downloads() -> None:
    for path in list(_downloads):
        _discard(path)


def sha256_uri(uri: str, chunk: int = 8 << 20) -> str:
    """Hex SHA-256 of a file's content, streamed in ``chunk``-byte blocks (an S3 object is hashed
    from the GetObject body, without a temporary copy)."""
    digest = hashlib.sha256()
    if is_s3(uri):
        bucket, key = split_s3(uri)
        body = s3_client().get_object(Bucket=bucket, Key=key)["Body"]
        try:
            for block in body.iter_chunks(chunk):
                digest.update(block)
        finally:
            body.close()
    else:
        with open(to_local(uri), "rb") as fh:
            while block := fh.read(chunk):
                digest.update(block)
    return digest.hexdigest()


def put_file(local: str | os.PathLike[str], uri: str) -> str:
    """Copy a local file to ``uri`` (S3 upload, or a local copy creating folders); returns ``uri``."""
    if is_s3(uri):
        bucket, key = split_s3(uri)
        s3_client().upload_file(os.fspath(local), bucket, key)
    else:
        dest = Path(to_local(uri))
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(local, dest)
    return uri
