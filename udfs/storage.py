"""URIs of videos and artifacts: local paths, ``file://``, ``dbfs:/`` (-> ``/dbfs/``) and ``s3://``.

S3 credentials, region and endpoint come from the standard ``AWS_*`` variables
(``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_REGION``/``AWS_DEFAULT_REGION``), with
``AWS_ENDPOINT_URL`` (or ``AWS_ENDPOINT_URL_S3``) for S3-compatible servers (MinIO, SeaweedFS).
Hidden files and folders (a path part starting with ``.``) are never listed.
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import os
import shutil
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

VIDEO_EXTENSIONS = (".mp4", ".mov", ".mkv", ".avi", ".webm", ".m4v")
_S3_ENV = ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL", "AWS_REGION", "AWS_DEFAULT_REGION", "AWS_PROFILE",
           "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")
_local = threading.local()


def is_s3(uri: str) -> bool:
    """Whether ``uri`` names an S3 object or prefix (``s3://`` or ``s3a://``)."""
    return uri.startswith(("s3://", "s3a://"))


def split_s3(uri: str) -> tuple[str, str]:
    """``s3://bucket/key`` -> ``(bucket, key)``."""
    bucket, _, key = uri.split("://", 1)[1].partition("/")
    if not bucket:
        raise ValueError(f"no bucket in {uri!r}")
    return bucket, key


def to_local(uri: str) -> str:
    """Local filesystem path of a local URI: ``file://`` stripped, ``dbfs:/x`` -> ``/dbfs/x``."""
    if uri.startswith("file:"):
        return unquote(urlparse(uri).path)
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
                found.append({"uri": f"{scheme}://{bucket}/{key}", "bytes": int(obj["Size"]),
                              "mtime": obj["LastModified"].timestamp()})
    return sorted(found, key=lambda f: f["uri"])


def list_videos(uri: str, extensions: tuple[str, ...] = VIDEO_EXTENSIONS) -> list[dict[str, Any]]:
    """Video files (by extension, case-insensitive) under a folder/prefix or a single file,
    recursively, sorted by URI: ``{"uri", "bytes", "mtime"}`` with absolute local paths or full
    ``s3://`` URIs and ``mtime`` in epoch seconds. Raises ``FileNotFoundError`` for a missing
    folder or bucket, ``PermissionError`` for a bucket the credentials cannot read."""
    exts = tuple(e.lower() for e in extensions)
    if is_s3(uri):
        return _list_s3(uri, exts)
    root = Path(to_local(uri)).expanduser()
    if not root.exists():
        raise FileNotFoundError(f"no such folder: {uri}")
    if root.is_file():
        candidates = [root]
    else:
        candidates = [p for p in root.rglob("*") if not _hidden(p.relative_to(root).as_posix())]
    found = []
    for p in sorted(candidates):
        if p.suffix.lower() in exts and p.is_file():
            st = p.stat()
            found.append({"uri": str(p.resolve()), "bytes": st.st_size, "mtime": st.st_mtime})
    return found


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
