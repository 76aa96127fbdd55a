"""Immutable artifact files (DESIGN principle 11): content-addressed names, atomic publish, sweep.

A stage that writes files names each one by a digest of everything that determines its bytes,
so a re-run with the same inputs targets the same URI and different inputs get a new one. A file
is encoded into a temporary file and published in one step (``os.replace`` in the destination
folder, or one S3 upload, which appears whole or not at all); a failing attempt removes only its
own temporary file and never deletes or overwrites a published one. A small JSON marker
``<name>.json`` written after the publish records what the file holds, so a re-run can skip the
work. ``produce`` is that sequence for a stage's row (the crops and the restored crops use it).

Files are deleted only by ``sweep``: files under the root older than the retention that no
version of the referencing tables within the retention points at (``referenced_uris``).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import posixpath
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from facevid.udfs.media.storage import is_s3, put_file, s3_client, split_s3, to_local


def content_digest(fields: dict[str, Any], length: int = 20) -> str:
    """Hex SHA-256 (first ``length`` characters) of ``fields`` as canonical JSON."""
    blob = json.dumps(fields, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:length]


def marker_uri(uri: str) -> str:
    """The JSON marker beside an artifact: ``<dir>/<name>.json``."""
    return posixpath.splitext(uri)[0] + ".json"


def temp_for(uri: str, folder: str | None = None) -> str:
    """A temporary file to write ``uri``'s content into. Local: a hidden ``.part`` file in
    ``folder`` (default: the target's folder; it must be on the target's filesystem, so that the
    rename is atomic). S3: a file in the local temp folder."""
    if is_s3(uri):
        fd, tmp = tempfile.mkstemp(prefix="facevid-", suffix=posixpath.splitext(uri)[1])
        os.close(fd)
        return tmp
    dest = Path(to_local(uri))
    where = Path(to_local(folder)) if folder else dest.parent
    where.mkdir(parents=True, exist_ok=True)
    return str(where / f".{dest.name}.{uuid.uuid4().hex[:8]}.part")


def publish(tmp: str, uri: str) -> None:
    """Move the complete temporary file ``tmp`` to ``uri`` in one step (the temp file is gone after)."""
    if is_s3(uri):
        try:
            put_file(tmp, uri)  # the object appears whole or not at all
        finally:
            os.unlink(tmp)
    else:
        dest = Path(to_local(uri))
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.replace(tmp, dest)


def published_size(uri: str) -> int | None:
    """Size of the published file at ``uri``, None when there is none."""
    if not is_s3(uri):
        with contextlib.suppress(FileNotFoundError, NotADirectoryError):
            return os.path.getsize(to_local(uri))
        return None
    from botocore.exceptions import ClientError

    bucket, key = split_s3(uri)
    try:
        return int(s3_client().head_object(Bucket=bucket, Key=key)["ContentLength"])
    except ClientError as exc:
        if str(exc.response.get("Error", {}).get("Code", "")) in ("404", "NoSuchKey", "NotFound"):
            return None
        raise


def read_marker(uri: str) -> dict[str, Any] | None:
    """The marker of artifact ``uri`` when both the marker and a non-empty published file exist."""
    mark = marker_uri(uri)
    try:
        if is_s3(mark):
            from botocore.exceptions import ClientError

            bucket, key = split_s3(mark)
            try:
                body = s3_client().get_object(Bucket=bucket, Key=key)["Body"].read()
            except ClientError as exc:
                if str(exc.response.get("Error", {}).get("Code", "")) in ("404", "NoSuchKey", "NotFound"):
                    return None
                raise
        else:
            body = Path(to_local(mark)).read_bytes()
        data = json.loads(body)
    except (FileNotFoundError, NotADirectoryError, ValueError):
        return None
    return data if isinstance(data, dict) and (published_size(uri) or 0) > 0 else None


def write_marker(uri: str, data: dict[str, Any]) -> None:
    """Write artifact ``uri``'s marker (atomically: a temporary file published like the artifact)."""
    mark = marker_uri(uri)
    tmp = temp_for(mark)
    try:
        Path(tmp).write_text(json.dumps(data, sort_keys=True, default=str))
        publish(tmp, mark)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def produce(uri: str, folder: str, columns: Iterable[str], make: Callable[[str], dict[str, Any]],
            size_column: str) -> tuple[dict[str, Any], bool]:
    """The artifact at ``uri`` and its row values, made at most once: ``(values, True)`` from its
    marker when a complete one exists (every name in ``columns``); else ``make(tmp)`` writes the
    bytes into a temporary file in ``folder`` (on the target's filesystem) and returns the values,
    the file is published (unless an attempt that stopped before its marker already did: its bytes
    are kept), ``size_column`` set to the published size, the marker written: ``(values, False)``.
    A failing ``make`` removes only its temporary file; no published file is touched."""
    done = read_marker(uri)
    if done is not None and set(columns) <= set(done):
        return {k: done[k] for k in columns}, True
    tmp = temp_for(uri, folder=folder)
    try:
        out = make(tmp)
        existing = published_size(uri)
        out[size_column] = existing or os.path.getsize(tmp)
        if not existing:
            publish(tmp, uri)
        write_marker(uri, out)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
    return out, False


# ---- sweeping ------------------------------------------------------------------------------------

def _norm(uri: str) -> str:
    """Comparable form of a URI: ``s3://bucket/key`` or an absolute local path."""
    if is_s3(uri):
        bucket, key = split_s3(uri)
        return f"s3://{bucket}/{key}"
    return os.path.abspath(to_local(uri))


def _stem(uri: str) -> str:
    return posixpath.splitext(_norm(uri))[0]


def list_files(root: str) -> list[dict[str, Any]]:
    """Every file under ``root`` (hidden and temporary ones included): ``{"uri", "bytes", "mtime"}``."""
    base = root.rstrip("/")
    found = []
    if is_s3(base):
        bucket, prefix = split_s3(base)
        scheme = base.split("://", 1)[0]
        pages = s3_client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix.rstrip("/") + "/")
        for page in pages:
            for obj in page.get("Contents", []):
                found.append({"uri": f"{scheme}://{bucket}/{obj['Key']}", "bytes": int(obj["Size"]),
                              "mtime": obj["LastModified"].timestamp()})
    else:
        local = Path(to_local(base))
        for folder, _, names in os.walk(local):
            for name in names:
                path = Path(folder) / name
                with contextlib.suppress(FileNotFoundError):
                    st = path.stat()
                    rel = path.relative_to(local).as_posix()
                    found.append({"uri": f"{base}/{rel}", "bytes": st.st_size, "mtime": st.st_mtime})
    return sorted(found, key=lambda f: f["uri"])


def unreferenced(files_under_root: Iterable[Any], referenced: Iterable[str]) -> list[Any]:
    """The items of ``files_under_root`` (URIs, or ``list_files`` dicts) that no URI in
    ``referenced`` names. A file named like a referenced one up to its extension (its marker
    ``<name>.json``) counts as referenced."""
    keep = {_stem(u) for u in referenced if u}
    return [f for f in files_under_root if _stem(f["uri"] if isinstance(f, dict) else f) not in keep]


def referenced_uris(table_path: str, column: str, retention_hours: float,
                    storage_options: dict[str, str] | None = None, now: float | None = None) -> set[str]:
    """Every non-null value of ``column`` in every version of the Delta table that time travel
    within the retention can reach: the versions committed less than ``retention_hours`` ago,
    the version that was current when the retention window began, and the current version.
    Each data file is read once (versions share files); a data file of an older version that
    vacuum already removed is skipped (time travel cannot reach that version any more)."""
    from deltalake import DeltaTable

    dt = DeltaTable(table_path, storage_options=storage_options)
    if column in dt.metadata().partition_columns:
        raise ValueError(f"{column} is a partition column of {table_path}")
    current = dt.version()
    cutoff_ms = ((time.time() if now is None else now) - retention_hours * 3600.0) * 1000.0
    commits = sorted((int(c["version"]), c.get("timestamp")) for c in dt.history() if c.get("version") is not None)
    young = {v for v, ts in commits if ts is None or ts >= cutoff_ms}
    older = [v for v, ts in commits if ts is not None and ts < cutoff_ms]
    versions = young | {current} | ({max(older)} if older else set())
    found: set[str] = set()
    seen: set[str] = set()
    for version in sorted(versions):
        dt.load_as_version(version)
        for fragment in dt.to_pyarrow_dataset().get_fragments():
            if fragment.path in seen:
                continue
            seen.add(fragment.path)
            try:
                values = fragment.to_table(columns=[column]).column(0).to_pylist()
            except FileNotFoundError:
                if version == current:
                    raise
                continue
            found.update(v for v in values if v)
    return found


def referenced_by(tables: Iterable[tuple[str, str]], retention_hours: float,
                  storage_options: dict[str, str] | None = None, now: float | None = None) -> set[str]:
    """``referenced_uris`` of several ``(table_path, column)`` pairs (e.g. silver.crops and gold.clips)."""
    found: set[str] = set()
    for path, column in tables:
        found |= referenced_uris(path, column, retention_hours, storage_options, now)
    return found


def _delete(uri: str) -> None:
    if is_s3(uri):
        bucket, key = split_s3(uri)
        s3_client().delete_object(Bucket=bucket, Key=key)
    else:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(to_local(uri))


def sweep(root: str, referenced: Iterable[str], retention_hours: float, dry_run: bool = True,
          now: float | None = None) -> list[str]:
    """Delete (unless ``dry_run``) the files under ``root`` last modified more than
    ``retention_hours`` ago that ``referenced`` does not name (see ``unreferenced``); returns
    their URIs. Run it while no stage writes under ``root`` (a run may adopt an existing file)."""
    cutoff = (time.time() if now is None else now) - retention_hours * 3600.0
    old = [f for f in list_files(root) if f["mtime"] < cutoff]
    doomed = [f["uri"] for f in unreferenced(old, referenced)]
    if not dry_run:
        for uri in doomed:
            _delete(uri)
        if not is_s3(root):  # drop folders the sweep emptied
            base = Path(to_local(root))
            for folder in sorted({Path(to_local(u)).parent for u in doomed}, reverse=True):
                while folder != base and base in folder.parents:
                    try:
                        folder.rmdir()
                    except OSError:
                        break
                    folder = folder.parent
    return doomed
