"""Model weights from a configured place, never from a hub: one resolver for every model loader.

A weights location is a local path, ``file://``, ``dbfs:/...`` (read through ``/dbfs``),
``/Volumes/...`` (a Unity Catalog volume, a local path on Databricks) or an ``s3://`` URI. An S3
*folder* (a prefix) is downloaded once into a cache folder named after the prefix and a hash of its
listing (keys, ETags, sizes), so a changed object means a new folder; an S3 *file* likewise, keyed by
its ETag. Downloads go to a temporary name and are renamed into place (a concurrent loader wins or
waits). The cache root is ``cache_dir``, else ``$FACEVID_MODEL_CACHE``, else
``~/.cache/facevid/models``.

Every miss is one ``FileNotFoundError`` naming the configuration key (``param``) the user must set,
what was looked for, and what the place should hold (``what``).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

from facevid.udfs.media.storage import is_s3, s3_client, split_s3, to_local


def missing(param: str, detail: str, what: str) -> FileNotFoundError:
    """The one error a missing weight gives: the key to set, what went wrong, what belongs there."""
    return FileNotFoundError(f"{param}: {detail} ({what}; local, dbfs:/, /Volumes/... or s3://)")


def cache_root(cache_dir: str | None = None) -> Path:
    root = cache_dir or os.environ.get("FACEVID_MODEL_CACHE") or "~/.cache/facevid/models"
    return Path(root).expanduser()


def _publish(tmp: Path, final: Path) -> Path:
    try:
        os.rename(tmp, final)
    except OSError:  # another process put it there first
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.unlink(missing_ok=True)
    return final


def _s3_objects(uri: str) -> tuple[str, str, list[tuple[str, str, int]]]:
    bucket, prefix = split_s3(uri.rstrip("/"))
    prefix = prefix.rstrip("/") + "/" if prefix else ""
    pages = s3_client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    objects = [(o["Key"][len(prefix):], o["ETag"], int(o["Size"]))
               for page in pages for o in page.get("Contents", []) if not o["Key"].endswith("/")]
    return bucket, prefix, [o for o in objects if not any(p.startswith(".") for p in o[0].split("/"))]


def download_s3_folder(uri: str, cache_dir: str | None, param: str, what: str,
                       marker: str | None = None) -> Path:
    """The S3 prefix ``uri`` as a local folder (cached, see the module docstring). ``marker``: a file
    the folder must hold (e.g. ``config.json``), checked on the listing before anything downloads."""
    bucket, prefix, objects = _s3_objects(uri)
    if not objects:
        raise missing(param, f"nothing under {uri}", what)
    if marker and not any(rel == marker for rel, _, _ in objects):
        raise missing(param, f"no {marker} under {uri}", what)
    listing = hashlib.sha256(json.dumps(sorted(objects)).encode()).hexdigest()[:16]
    root = cache_root(cache_dir)
    final = root / f"{bucket}-{prefix.strip('/').replace('/', '-') or 'root'}-{listing}"
    if final.is_dir() and (not marker or (final / marker).exists()):
        return final
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".download-", dir=root))
    client = s3_client()
    for rel, _, _ in objects:
        (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
        client.download_file(bucket, prefix + rel, str(tmp / rel))
    return _publish(tmp, final)


def download_s3_file(uri: str, cache_dir: str | None, param: str, what: str) -> Path:
    """The S3 object ``uri`` as a local file (cached by its ETag)."""
    bucket, key = split_s3(uri)
    client = s3_client()
    try:
        head = client.head_object(Bucket=bucket, Key=key)
    except Exception as exc:  # botocore's ClientError (404) or a connection error
        raise missing(param, f"{uri} cannot be read ({type(exc).__name__})", what) from exc
    tag = hashlib.sha256(f"{uri}|{head.get('ETag')}|{head.get('ContentLength')}".encode()).hexdigest()[:16]
    root = cache_root(cache_dir)
    final = root / f"{tag}-{Path(key).name}"
    if final.is_file():
        return final
    root.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".download-", dir=root)
    os.close(fd)
    client.download_file(bucket, key, tmp)
    return _publish(Path(tmp), final)


def resolve_folder(uri: str | None, param: str, what: str, marker: str | None = None,
                   cache_dir: str | None = None) -> Path:
    """A local folder for a weights folder ``uri``; ``marker`` is a file it must hold."""
    if not uri:
        raise missing(param, "not set", what)
    folder = download_s3_folder(uri, cache_dir, param, what, marker) if is_s3(uri) \
        else Path(to_local(uri)).expanduser()
    if not folder.is_dir():
        raise missing(param, f"{uri} is not a folder" if folder.exists() else f"{uri} does not exist", what)
    if marker and not (folder / marker).is_file():
        raise missing(param, f"{uri} has no {marker}", what)
    return folder


def resolve_file(uri: str | None, param: str, what: str, cache_dir: str | None = None) -> Path:
    """A local file for a weights file ``uri``."""
    if not uri:
        raise missing(param, "not set", what)
    path = download_s3_file(uri, cache_dir, param, what) if is_s3(uri) else Path(to_local(uri)).expanduser()
    if not path.is_file():
        raise missing(param, f"{uri} is a folder, not a file" if path.exists() else f"{uri} does not exist", what)
    return path
