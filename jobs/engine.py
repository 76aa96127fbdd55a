"""Start or attach to the Spark engine: embedded Sail by default, native Spark on clusters.

Jobs only use the Spark Connect-compatible DataFrame/SQL API, so the same code runs on:

- ``local``: a Sail Spark Connect server started in this process on 127.0.0.1 (free port);
- ``local-cluster``: the same with Sail's cluster mode (``SAIL_MODE=local-cluster``: a driver and
  worker tasks, the execution model of a real cluster, on this machine);
- ``spark``: native Spark. On Databricks (``DATABRICKS_RUNTIME_VERSION`` set) the cluster's session,
  attached with ``SparkSession.builder.getOrCreate()`` (a wheel task has no active session until
  then; Delta is built in). Elsewhere the active session if any, else a new one with delta-spark's
  ``configure_spark_with_delta_pip`` (classic PySpark + the Delta jars from Maven);
- ``sc://host:port``: any Spark Connect server;
- ``auto`` (default): ``spark`` on Databricks, else ``local``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from facevid.jobs.config import ConfigError


@dataclass
class Engine:
    spark: Any
    kind: str  # "local" | "spark" | "remote"
    server: Any = None

    @property
    def native_delta(self) -> bool:
        """True when the engine is a JVM Spark with Delta (Databricks/classic + delta-spark)."""
        return self.kind == "spark"

    @property
    def parallelism(self) -> int:
        """Default number of parallel tasks: the cluster's on native Spark, the cores here otherwise."""
        if self.kind == "spark":
            try:
                return int(self.spark.sparkContext.defaultParallelism)
            except Exception:  # serverless/shared clusters hide the SparkContext
                pass
        return os.cpu_count() or 1

    def stop(self) -> None:
        """Stop the session, then the embedded server (the other order hangs at exit)."""
        if self.kind == "spark":
            return  # never stop a cluster's shared session
        try:
            self.spark.stop()
        finally:
            if self.server is not None:
                self.server.stop()
                self.server = None

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _on_databricks() -> bool:
    return "DATABRICKS_RUNTIME_VERSION" in os.environ


def start_engine(kind: str = "auto") -> Engine:
    """Start/attach the engine named by ``kind`` (see module docstring)."""
    if kind == "auto":
        kind = "spark" if _on_databricks() else "local"
    if kind in ("local", "local-cluster"):
        return _start_sail(kind)
    if kind == "spark":
        return _native_spark()
    if kind.startswith("sc://"):
        from pyspark.sql import SparkSession

        return Engine(SparkSession.builder.remote(kind).create(), "remote")
    raise ConfigError(f"unknown engine {kind!r}: use auto, local, local-cluster, spark or sc://host:port")


def _start_sail(kind: str = "local") -> Engine:
    os.environ.setdefault("RUST_LOG", "error")
    os.environ["SAIL_MODE"] = kind  # read when the server starts
    if os.environ.get("AWS_ENDPOINT_URL", "").startswith("http://"):
        os.environ.setdefault("AWS_ALLOW_HTTP", "true")  # Sail's object store refuses plain HTTP otherwise
    try:
        from pysail.spark import SparkConnectServer
    except ImportError as exc:
        raise ConfigError("embedded engine needs pysail: pip install 'facevid-lake[local]'") from exc
    from pyspark.sql import SparkSession

    server = SparkConnectServer("127.0.0.1", 0)
    server.start(background=True)
    host, port = server.listening_address
    try:
        # create(), not getOrCreate(): a second engine in one process must not reuse (and later stop)
        # the first one's session
        spark = SparkSession.builder.remote(f"sc://{host}:{port}").create()
        spark.conf.set("spark.sql.session.timeZone", "UTC")
    except Exception:
        server.stop()
        raise
    return Engine(spark, kind, server)


def _native_spark() -> Engine:
    try:
        from pyspark.sql import SparkSession
    except ImportError as exc:
        raise ConfigError("engine spark needs pyspark: pip install 'facevid-lake[spark]'") from exc
    if _on_databricks():  # the runtime's own session (Delta built in): never add Maven packages
        return Engine(SparkSession.builder.getOrCreate(), "spark")
    active = SparkSession.getActiveSession()
    if active is not None:
        return Engine(active, "spark")
    try:
        from delta import configure_spark_with_delta_pip
    except ImportError as exc:
        raise ConfigError("engine spark outside Databricks needs delta-spark: pip install 'facevid-lake[spark]'") from exc
    builder = (SparkSession.builder.appName("facevid")
               .config("spark.sql.extensions", "io.delta.sql.DeltaSparkSessionExtension")
               .config("spark.sql.catalog.spark_catalog", "org.apache.spark.sql.delta.catalog.DeltaCatalog")
               .config("spark.sql.session.timeZone", "UTC"))
    return Engine(configure_spark_with_delta_pip(builder).getOrCreate(), "spark")


def start_sail_server(env: dict[str, str] | None = None, timeout_s: float = 60.0) -> tuple[Any, str]:
    """``sail spark server`` on a free loopback port in a process of its own (so that the driver's
    memory is the driver's alone); returns the process and its ``sc://`` address for ``--engine``."""
    import socket
    import subprocess
    import sys
    import time
    from pathlib import Path

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    sail = Path(sys.executable).parent / "sail"
    proc = subprocess.Popen([str(sail), "spark", "server", "--ip", "127.0.0.1", "--port", str(port)],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return proc, f"sc://127.0.0.1:{port}"
        if proc.poll() is not None:
            break
        time.sleep(0.2)
    proc.kill()
    raise ConfigError(f"sail spark server did not listen on 127.0.0.1:{port} within {timeout_s:g} s")
