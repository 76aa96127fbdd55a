"""Leases: one writer per table at a time, on local disk and on S3, with a heartbeat.

A run takes the lease of a stage's output table before it plans any work and keeps it fresh
from a heartbeat thread; ``facevid maintain`` takes the lease of every table it compacts. A
lease is a small JSON object ``<lake>/_leases/<table>.json`` (holder, host, pid, run id,
expiry). Taking it is a compare-and-swap: on S3 a conditional PUT (``If-None-Match: *`` to
create, ``If-Match: <etag>`` to renew, release or take over an expired one); on local disk the
same steps under an ``flock``. A holder that dies stops renewing, and its lease can be taken
once it has expired (``ttl_s``, default 120 s), or at once by a run on the same host when the
holder's process is gone (a killed run resumed right away). A run whose heartbeat fails stops
before its next commit (``LeaseLost``).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from facevid.udfs.media.storage import is_s3, s3_client, split_s3, to_local

TTL_S = 120.0


class LeaseHeld(RuntimeError):
    """Another live run holds the lease (the CLI prints it and exits 4)."""


class LeaseLost(RuntimeError):
    """This run's lease expired or was taken over: it must not commit."""


@dataclass
class Stored:
    content: dict[str, Any]
    token: str


def _token(text: str) -> str:
    return hashlib.sha1(text.encode()).hexdigest()


class _LocalStore:
    def __init__(self, root: str) -> None:
        self.root = Path(to_local(root))

    @contextlib.contextmanager
    def _locked(self, name: str) -> Any:
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / f"{name}.lock", "a") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def _read(self, name: str) -> Stored | None:
        try:
            text = (self.root / f"{name}.json").read_text()
        except FileNotFoundError:
            return None
        return Stored(json.loads(text), _token(text))

    def read(self, name: str) -> Stored | None:
        with self._locked(name):
            return self._read(name)

    def swap(self, name: str, content: dict[str, Any], token: str | None) -> str | None:
        """Write ``content`` if the stored token is still ``token`` (``None``: must not exist)."""
        with self._locked(name):
            cur = self._read(name)
            if (cur is None) != (token is None) or (cur is not None and cur.token != token):
                return None
            text = json.dumps(content)
            tmp = self.root / f".{name}.{os.getpid()}.tmp"
            tmp.write_text(text)
            os.replace(tmp, self.root / f"{name}.json")
            return _token(text)


class _S3Store:
    def __init__(self, root: str) -> None:
        self.bucket, prefix = split_s3(root)
        self.prefix = prefix.strip("/")

    def _key(self, name: str) -> str:
        return f"{self.prefix}/{name}.json" if self.prefix else f"{name}.json"

    def read(self, name: str) -> Stored | None:
        from botocore.exceptions import ClientError

        try:
            obj = s3_client().get_object(Bucket=self.bucket, Key=self._key(name))
        except ClientError as exc:
            if str(exc.response.get("Error", {}).get("Code")) in ("404", "NoSuchKey"):
                return None
            raise
        return Stored(json.loads(obj["Body"].read()), obj["ETag"])

    def swap(self, name: str, content: dict[str, Any], token: str | None) -> str | None:
        from botocore.exceptions import ClientError

        cond = {"IfNoneMatch": "*"} if token is None else {"IfMatch": token}
        try:
            out = s3_client().put_object(Bucket=self.bucket, Key=self._key(name), Body=json.dumps(content).encode(),
                                         ContentType="application/json", **cond)
        except ClientError as exc:
            if str(exc.response.get("Error", {}).get("Code")) in ("PreconditionFailed", "412", "ConditionalRequestConflict"):
                return None
            raise
        return out["ETag"]


def lease_store(root: str) -> _LocalStore | _S3Store:
    """The lease folder ``<root>/_leases`` (local path, ``dbfs:/``, ``/Volumes/...`` or ``s3://``)."""
    folder = f"{root.rstrip('/')}/_leases"
    return _S3Store(folder) if is_s3(folder) else _LocalStore(folder)


def _process_start(pid: int) -> str | None:
    """The start time of a local process (``/proc/<pid>/stat``), or None when there is none."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (OSError, ValueError):
        return None
    return stat.rsplit(")", 1)[-1].split()[19]


def holder_gone(content: dict[str, Any]) -> bool:
    """Whether the holder was a process on this host that no longer runs (pid reuse is caught by
    the process start time recorded with the lease)."""
    if content.get("host") != socket.gethostname() or not Path("/proc/self/stat").exists():
        return False
    started = _process_start(int(content.get("pid") or 0))
    return started is None or started != content.get("pid_start")


def identity(run_id: str, command: str) -> dict[str, Any]:
    """Who holds a lease: the run, this host and process (with its start time, so a reused pid is
    not taken for the holder) and the command."""
    return {"run_id": run_id, "host": socket.gethostname(), "pid": os.getpid(),
            "pid_start": _process_start(os.getpid()), "command": command}


def describe(content: dict[str, Any]) -> str:
    left = content.get("expires_at", 0) - time.time()
    return (f"run {content.get('run_id')} ({content.get('command', 'facevid')}, host {content.get('host')}, "
            f"pid {content.get('pid')}), lease expires in {max(0, left):.0f} s unless renewed")


class Lease:
    """The lease of one table for this run (``with lease:`` holds it and heartbeats)."""

    def __init__(self, store: Any, table: str, run_id: str, command: str = "run", ttl_s: float = TTL_S) -> None:
        self.store, self.table, self.ttl_s = store, table, ttl_s
        self.me = identity(run_id, command)
        self.token: str | None = None
        self.lost: str | None = None
        self._renewed = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._mu = threading.Lock()

    def _content(self, ttl: float) -> dict[str, Any]:
        return {**self.me, "table": self.table, "expires_at": time.time() + ttl, "renewed_at": time.time()}

    def _mine(self, content: dict[str, Any]) -> bool:
        return all(content.get(k) == v for k, v in self.me.items())

    def acquire(self, wait_s: float = 0.0) -> None:
        """Take the lease, waiting up to ``wait_s`` for a live holder; raises ``LeaseHeld``."""
        deadline = time.monotonic() + wait_s
        while True:
            cur = self.store.read(self.table)
            free = (cur is None or cur.content.get("expires_at", 0) < time.time() or self._mine(cur.content)
                    or holder_gone(cur.content))
            if free:
                token = self.store.swap(self.table, self._content(self.ttl_s), None if cur is None else cur.token)
                if token is not None:
                    self.token, self._renewed = token, time.monotonic()
                    self._start()
                    return
                continue  # someone swapped first: look again
            if time.monotonic() >= deadline:
                raise LeaseHeld(f"{self.table} is being written by {describe(cur.content)}; "
                                "try again later or pass --wait SECONDS")
            time.sleep(min(2.0, max(0.1, deadline - time.monotonic())))

    def _start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._beat, name=f"lease-{self.table}", daemon=True)
        self._thread.start()

    def _beat(self) -> None:
        while not self._stop.wait(self.ttl_s / 4):
            self.renew()

    def renew(self) -> None:
        with self._mu:
            if self.token is None or self.lost:
                return
            try:
                token = self.store.swap(self.table, self._content(self.ttl_s), self.token)
            except Exception as exc:  # the store is unreachable: keep trying until the lease expires
                if self._expired_locally():
                    self.lost = f"could not renew the lease of {self.table}: {exc}"
                return
            if token is None:
                self.lost = f"the lease of {self.table} was taken over by another run"
            else:
                self.token, self._renewed = token, time.monotonic()

    def _expired_locally(self) -> bool:
        return time.monotonic() - self._renewed > self.ttl_s * 0.9

    def check(self) -> None:
        """Raise ``LeaseLost`` unless the lease is still ours (called before every commit)."""
        if self.lost:
            raise LeaseLost(self.lost)

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        with self._mu:
            if self.token is not None and not self.lost:
                with contextlib.suppress(Exception):
                    self.store.swap(self.table, {**self._content(0), "expires_at": 0, "released": True}, self.token)
            self.token = None

    def __enter__(self) -> Lease:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
