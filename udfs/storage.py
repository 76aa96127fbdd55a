"""URIs of videos and artifacts: local paths, ``file://``, ``s3://`` (boto3) and ``dbfs:/``.

S3 credentials and endpoint come from the standard ``AWS_*`` variables, with
``AWS_ENDPOINT_URL`` for S3-compatible servers (MinIO, SeaweedFS).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

VIDEO_EXTENSIONS = (".mp4", ".mov", ".mkv", ".avi", ".webm", ".m4v")
_local = threading.local()


def is_s3(uri: str) -> bool:
    return uri.startswith(("s3://", "s3a://"))


def split_s3(uri: str) -> tuple[str, str]:
    """``s3://bucket/key`` -> ``(bucket, key)``."""
    rest = uri.split("://", 1)[1]
    bucket, _, key = rest.partition("/")
    if not bucket:
        raise ValueError(f"no bucket in {uri!r}")
    return bucket, key


def to_local(uri: str) -> str:
    """Local filesystem path of a local-ish URI (``file://``, ``dbfs:/`` -> ``/dbfs/``)."""
    if uri.startswith("file://"):
        return uri[len("file://"):]
    if uri.startswith("dbfs:/"):
        return "/dbfs/" + uri[len("dbfs:/"):].lstrip("/")
    return uri


def s3_client() -> Any:
    """A boto3 S3 client from the environment, one per thread (clients are not thread-safe)."""
    client = getattr(_local, "s3", None)
    if client is None:
        import boto3
        from botocore.config import Config

        region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
        client = boto3.session.Session().client(
            "s3", endpoint_url=os.environ.get("AWS_ENDPOINT_URL") or None, region_name=region,
            config=Config(retries={"max_attempts": 5, "mode": "standard"}, s3={"addressing_style": "path"}),
        )
        _local.s3 = client
    return client


def list_videos(uri: str, extensions: tuple[str, ...] = VIDEO_EXTENSIONS) -> list[dict[str, Any]]:
    """Video files under a folder or prefix, recursively, sorted: ``{"uri", "bytes", "mtime"}``."""
    exts = tuple(e.lower() for e in extensions)
    if is_s3(uri):
        bucket, prefix = split_s3(uri)
        client = s3_client()
        try:
            client.head_bucket(Bucket=bucket)
        except Exception as exc:
            raise FileNotFoundError(f"cannot access bucket of {uri}: {exc}") from exc
        prefix = prefix.rstrip("/") + "/" if prefix else ""
        found = []
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            for obj in page.get("Contents", []):
                name = obj["Key"].rsplit("/", 1)[-1]
                if name.lower().endswith(exts) and not name.startswith("."):
                    found.append({"uri": f"s3://{bucket}/{obj['Key']}", "bytes": int(obj["Size"]),
                                  "mtime": obj["LastModified"].timestamp()})
        return sorted(found, key=lambda f: f["uri"])
    root = Path(to_local(uri)).expanduser()
    if not root.exists():
        raise FileNotFoundError(f"no such folder: {uri}")
    if root.is_file():
        candidates = [root]
    else:
        candidates = [p for p in root.rglob("*")
                      if not any(part.startswith(".") for part in p.relative_to(root).parts)]
    files = [p for p in candidates if p.is_file() and p.suffix.lower() in exts]
    return [{"uri": str(p.resolve()), "bytes": p.stat().st_size, "mtime": p.stat().st_mtime}
            for p in sorted(files)]


@contextmanager
def local_path(uri: str) -> Iterator[str]:
    """A local path for reading ``uri``: itself when local, a temporary download for S3."""
    if not is_s3(uri):
        yield to_local(uri)
        return
    bucket, key = split_s3(uri)
    suffix = Path(key).suffix
    fd, tmp = tempfile.mkstemp(prefix="facevid-", suffix=suffix)
    os.close(fd)
    try:
        s3_client().download_file(bucket, key, tmp)
        yield tmp
    finally:
        os.unlink(tmp)


def sha256_uri(uri: str, chunk: int = 8 << 20) -> str:
    """Streaming SHA-256 of a file or S3 object (no temporary copy)."""
    digest = hashlib.sha256()
    if is_s3(uri):
        bucket, key = split_s3(uri)
        body = s3_client().get_object(Bucket=bucket, Key=key)["Body"]
        for block in body.iter_chunks(chunk):
            digest.update(block)
    else:
        with open(to_local(uri), "rb") as fh:
            while block := fh.read(chunk):
                digest.update(block)
    return digest.hexdigest()


def put_file(local: str | os.PathLike[str], uri: str) -> str:
    """Copy a local file to ``uri`` (S3 upload or local copy, creating folders); returns ``uri``."""
    if is_s3(uri):
        bucket, key = split_s3(uri)
        s3_client().upload_file(str(local), bucket, key)
    else:
        dest = Path(to_local(uri))
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(local, dest)
    return uri
