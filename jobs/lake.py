"""The lake: where tables live and every Delta operation the jobs need, behind one small API.

Tables are named ``<layer>.<name>`` (``bronze.videos``); SQL views are ``<layer>_<name>``.
The root is a local directory, ``s3://bucket/prefix`` (``dbfs:/`` too), or ``uc:catalog.schema``
for Unity Catalog managed tables. Reads and writes go through the engine's ``delta`` format
(Sail or native Spark); what Sail lacks (history, optimize, vacuum) goes through delta-rs.
"""

from __future__ import annotations

import os
from typing import Any

from jobs.config import ConfigError

SYSTEM_TABLES = ("quarantine", "meta.runs")


def view_name(table: str) -> str:
    return table.replace(".", "_")


def storage_options(uri: str) -> dict[str, str] | None:
    """delta-rs options for object stores, from the standard AWS_* environment variables."""
    if not uri.startswith(("s3://", "s3a://")):
        return None
    opts = {k: os.environ[k] for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
                                        "AWS_REGION", "AWS_ENDPOINT_URL") if os.environ.get(k)}
    if opts.get("AWS_ENDPOINT_URL", "").startswith("http://"):
        opts["AWS_ALLOW_HTTP"] = "true"
    opts.setdefault("AWS_REGION", os.environ.get("AWS_DEFAULT_REGION", "us-east-1"))
    # delta-rs commits only maintenance (optimize/vacuum) here, run while no job writes the table
    opts["AWS_S3_ALLOW_UNSAFE_RENAME"] = "true"
    return opts


class Lake:
    """Owns table locations and Delta I/O for one lake root."""

    def __init__(self, spark: Any, root: str) -> None:
        self.spark = spark
        self.root = root.rstrip("/")
        self.catalog = root[3:] if root.startswith("uc:") else None
        if self.catalog is not None and self.catalog.count(".") != 1:
            raise ConfigError(f"lake {root!r}: Unity Catalog roots look like uc:catalog.schema")

    # -- locations -------------------------------------------------------------------------
    def location(self, table: str) -> str:
        """Filesystem/object-store path of a table (``root/layer/name``)."""
        if self.catalog:
            raise ConfigError(f"{table} is a Unity Catalog table; it has no path")
        layer, _, name = table.partition(".")
        return f"{self.root}/{layer}/{name}" if name else f"{self.root}/{layer}"

    def ident(self, table: str) -> str:
        """SQL identifier for DML: ``delta.`path``` or ``catalog.schema.layer_name``."""
        if self.catalog:
            return f"{self.catalog}.{view_name(table)}"
        return f"delta.`{self.location(table)}`"

    def _delta_path(self, table: str) -> str:
        path = self.location(table)
        return path.replace("s3a://", "s3://").replace("dbfs:/", "/dbfs/")

    # -- reads ------------------------------------------------------------------------------
    def exists(self, table: str) -> bool:
        if self.catalog:
            return bool(self.spark.catalog.tableExists(f"{self.catalog}.{view_name(table)}"))
        from deltalake import DeltaTable

        path = self._delta_path(table)
        return DeltaTable.is_deltatable(path, storage_options=storage_options(path))

    def read(self, table: str, version: int | None = None) -> Any:
        """A DataFrame of the table (optionally as of a Delta version)."""
        if self.catalog:
            sql = f"SELECT * FROM {self.ident(table)}"
            return self.spark.sql(sql + (f" VERSION AS OF {int(version)}" if version is not None else ""))
        reader = self.spark.read.format("delta")
        if version is not None:
            reader = reader.option("versionAsOf", int(version))
        return reader.load(self.location(table))

    def version(self, table: str) -> int | None:
        """Current Delta version, or None when the table does not exist yet."""
        if not self.exists(table):
            return None
        if self.catalog:
            return int(self.history(table, limit=1)[0]["version"])
        return self._dt(table).version()

    def history(self, table: str, limit: int | None = None) -> list[dict[str, Any]]:
        """Commit history, newest first (delta-rs; ``DESCRIBE HISTORY`` on Unity Catalog)."""
        if self.catalog:
            rows = self.spark.sql(f"DESCRIBE HISTORY {self.ident(table)}" + (f" LIMIT {limit}" if limit else ""))
            return [r.asDict() for r in rows.collect()]
        return self._dt(table).history(limit)

    def _dt(self, table: str) -> Any:
        from deltalake import DeltaTable

        path = self._delta_path(table)
        return DeltaTable(path, storage_options=storage_options(path))

    # -- writes (each call is one atomic Delta commit) --------------------------------------
    def create(self, table: str, schema_ddl: str) -> None:
        """Create the table empty with ``schema_ddl`` unless it exists."""
        if not self.exists(table):
            self.append(table, self.spark.createDataFrame([], schema_ddl))

    def append(self, table: str, df: Any) -> None:
        writer = df.write.format("delta").mode("append")
        if self.catalog:
            writer.saveAsTable(f"{self.catalog}.{view_name(table)}")
        else:
            writer.save(self.location(table))

    def overwrite(self, table: str, df: Any) -> None:
        writer = df.write.format("delta").mode("overwrite").option("overwriteSchema", "true")
        if self.catalog:
            writer.saveAsTable(f"{self.catalog}.{view_name(table)}")
        else:
            writer.save(self.location(table))

    def delete(self, table: str, where: str) -> None:
        self.spark.sql(f"DELETE FROM {self.ident(table)} WHERE {where}").collect()

    # -- maintenance (delta-rs; Sail has no OPTIMIZE/VACUUM) --------------------------------
    def optimize(self, table: str) -> dict[str, Any]:
        if self.catalog:
            return {"rows": [r.asDict() for r in self.spark.sql(f"OPTIMIZE {self.ident(table)}").collect()]}
        return self._dt(table).optimize.compact()

    def vacuum(self, table: str, retention_hours: int = 168) -> list[str]:
        if self.catalog:
            self.spark.sql(f"VACUUM {self.ident(table)} RETAIN {retention_hours} HOURS").collect()
            return []
        return self._dt(table).vacuum(retention_hours=retention_hours, dry_run=False,
                                      enforce_retention_duration=False)

    # -- SQL --------------------------------------------------------------------------------
    def register_views(self, tables: list[str]) -> list[str]:
        """Register each existing table as a temp view ``<layer>_<name>``; returns the names."""
        names = []
        for table in dict.fromkeys(list(tables) + list(SYSTEM_TABLES)):
            if self.exists(table):
                self.read(table).createOrReplaceTempView(view_name(table))
                names.append(view_name(table))
        return names
