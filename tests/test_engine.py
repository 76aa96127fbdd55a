"""Which session ``--engine spark`` / ``auto`` attaches to.

UNIT tests of the branch selection in ``facevid.jobs.engine._native_spark`` only: ``pyspark.sql`` and
``delta`` are replaced by fake module objects, so nothing here starts or reaches a Spark cluster
(this is no integration test of Databricks; there is no workspace offline)."""

from __future__ import annotations

import sys
import types
from typing import Any

import pytest

from facevid.jobs.config import ConfigError
from facevid.jobs.engine import start_engine


class FakeBuilder:
    def __init__(self, log: list[str]) -> None:
        self.log = log

    def appName(self, name: str) -> FakeBuilder:
        self.log.append(f"appName({name})")
        return self

    def config(self, key: str, value: str) -> FakeBuilder:
        self.log.append(f"config({key})")
        return self

    def getOrCreate(self) -> str:
        self.log.append("getOrCreate")
        return "session:builder"


def fake_pyspark(monkeypatch, active: Any = None) -> list[str]:
    """A fake ``pyspark.sql`` whose SparkSession records what was called."""
    log: list[str] = []

    class SparkSession:
        builder = FakeBuilder(log)

        @staticmethod
        def getActiveSession() -> Any:
            log.append("getActiveSession")
            return active

    module = types.ModuleType("pyspark.sql")
    module.SparkSession = SparkSession
    monkeypatch.setitem(sys.modules, "pyspark.sql", module)
    return log


def fake_delta(monkeypatch, log: list[str] | None) -> None:
    """``delta`` with ``configure_spark_with_delta_pip`` (``log=None``: delta-spark not installed)."""
    if log is None:
        monkeypatch.setitem(sys.modules, "delta", None)  # import delta -> ImportError
        return
    module = types.ModuleType("delta")

    def configure_spark_with_delta_pip(builder: FakeBuilder) -> FakeBuilder:
        log.append("configure_spark_with_delta_pip")
        return builder

    module.configure_spark_with_delta_pip = configure_spark_with_delta_pip
    monkeypatch.setitem(sys.modules, "delta", module)


@pytest.mark.parametrize("kind", ["auto", "spark"])
def test_on_databricks_the_runtime_session_is_attached_with_get_or_create(monkeypatch, kind: str) -> None:
    """Branch selection only (fake modules): DATABRICKS_RUNTIME_VERSION set -> builder.getOrCreate(),
    never configure_spark_with_delta_pip, even with delta-spark importable and no active session."""
    monkeypatch.setenv("DATABRICKS_RUNTIME_VERSION", "17.3")
    log = fake_pyspark(monkeypatch, active=None)
    fake_delta(monkeypatch, log)
    engine = start_engine(kind)
    assert (engine.spark, engine.kind) == ("session:builder", "spark")
    assert log == ["getOrCreate"]
    engine.stop()  # a cluster's shared session is never stopped (the fake has no stop())


def test_outside_databricks_the_active_session_wins(monkeypatch) -> None:
    monkeypatch.delenv("DATABRICKS_RUNTIME_VERSION", raising=False)
    log = fake_pyspark(monkeypatch, active="session:active")
    fake_delta(monkeypatch, log)
    engine = start_engine("spark")
    assert (engine.spark, log) == ("session:active", ["getActiveSession"])


def test_outside_databricks_a_new_session_gets_the_delta_jars(monkeypatch) -> None:
    monkeypatch.delenv("DATABRICKS_RUNTIME_VERSION", raising=False)
    log = fake_pyspark(monkeypatch, active=None)
    fake_delta(monkeypatch, log)
    engine = start_engine("spark")
    assert engine.spark == "session:builder"
    assert log[0] == "getActiveSession" and "configure_spark_with_delta_pip" in log and log[-1] == "getOrCreate"
    assert "config(spark.sql.extensions)" in log


def test_outside_databricks_without_delta_spark_is_a_clear_error(monkeypatch) -> None:
    monkeypatch.delenv("DATABRICKS_RUNTIME_VERSION", raising=False)
    fake_pyspark(monkeypatch, active=None)
    fake_delta(monkeypatch, None)
    with pytest.raises(ConfigError, match=r"needs delta-spark: pip install 'facevid-lake\[spark\]'"):
        start_engine("spark")
