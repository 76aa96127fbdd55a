"""The lake API on real Delta tables through the embedded engine (and delta-rs for history)."""

from __future__ import annotations

from pathlib import Path

import pytest

from facevid.jobs.config import ConfigError
from facevid.jobs.lake import Lake, view_name

pytestmark = [pytest.mark.spark]

SCHEMA = "k string, n int"


def test_create_append_overwrite_delete_time_travel_and_history(engine, tmp_path: Path) -> None:
    lake = Lake(engine.spark, str(tmp_path))
    assert not lake.exists("silver.t") and lake.version("silver.t") is None
    lake.create("silver.t", SCHEMA)
    lake.create("silver.t", SCHEMA)  # idempotent: no second commit
    assert lake.version("silver.t") == 0 and lake.read("silver.t").count() == 0
    lake.append("silver.t", engine.spark.createDataFrame([("a", 1), ("b", 2)], SCHEMA))
    lake.overwrite("silver.t", engine.spark.createDataFrame([("c", 3)], SCHEMA))
    lake.delete("silver.t", "n = 3")
    assert lake.location("silver.t") == f"{tmp_path}/silver/t"
    assert lake.version("silver.t") == 3
    assert lake.read("silver.t").count() == 0
    assert sorted(r.k for r in lake.read("silver.t", version=1).collect()) == ["a", "b"]
    assert [r.k for r in lake.read("silver.t", version=2).collect()] == ["c"]
    ops = [h["operation"] for h in lake.history("silver.t")]
    assert ops[0] == "DELETE" and len(ops) == 4
    assert lake.register_views(["silver.t", "silver.absent"]) == ["silver_t"]
    assert view_name("meta.runs") == "meta_runs"


def test_unity_catalog_roots_are_validated(engine) -> None:
    with pytest.raises(ConfigError, match="uc:catalog.schema"):
        Lake(engine.spark, "uc:justone")
    assert Lake(engine.spark, "uc:main.facevid").ident("silver.faces") == "main.facevid.silver_faces"
