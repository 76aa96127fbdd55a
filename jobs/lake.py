"""The lake: where tables live and every Delta operation the jobs need, behind one small API.

Tables are named ``<layer>.<name>`` (``bronze.videos``); SQL views are ``<layer>_<name>``.
The root is a local directory, ``s3://bucket/prefix`` (``dbfs:/`` too), or ``uc:catalog.schema``
for Unity Catalog managed tables. Reads and writes go through the engine's ``delta`` format
(Sail or native Spark); what Sail lacks (history, optimize, vacuum) goes through delta-rs.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from facevid.jobs.config import ConfigError
from facevid.udfs.media.storage import is_s3, s3_client, split_s3, to_local

# meta.evaluations: the evaluate project appends (delta-rs); review.verdicts: `facevid review` appends (delta-rs)
SYSTEM_TABLES = ("meta.runs", "meta.evaluations", "review.verdicts")


def list_dirs(uri: str) -> list[str]:
    """Names of the folders directly under a local path or an ``s3://`` prefix."""
    if is_s3(uri):
        bucket, prefix = split_s3(uri.rstrip("/") + "/")
        pages = s3_client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix, Delimiter="/")
        return sorted(p["Prefix"][len(prefix):].rstrip("/") for page in pages for p in page.get("CommonPrefixes", []))
    root = Path(to_local(uri))
    return sorted(p.name for p in root.iterdir() if p.is_dir()) if root.is_dir() else []


def remove_tree(uri: str) -> None:
    """Delete a local folder or every object under an ``s3://`` prefix."""
    if is_s3(uri):
        bucket, prefix = split_s3(uri.rstrip("/") + "/")
        client = s3_client()
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
            if keys:
                client.delete_objects(Bucket=bucket, Delete={"Objects": keys})
    else:
        shutil.rmtree(to_local(uri), ignore_errors=True)


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

    def delta_path(self, table: str) -> str:
        """The path delta-rs opens for ``table`` (``s3://`` for ``s3a://``, ``/dbfs/`` for ``dbfs:/``)."""
        path = self.location(table)
        return path.replace("s3a://", "s3://").replace("dbfs:/", "/dbfs/")

    # -- reads ------------------------------------------------------------------------------
    def exists(self, table: str) -> bool:
        if self.catalog:
            return bool(self.spark.catalog.tableExists(f"{self.catalog}.{view_name(table)}"))
        from deltalake import DeltaTable

        path = self.delta_path(table)
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
            return [r.asDict() for r in rows.collect()]  # bounded: commit history rows (LIMIT when asked)
        return self._dt(table).history(limit)

    def _dt(self, table: str) -> Any:
        from deltalake import DeltaTable

        path = self.delta_path(table)
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
        self.spark.sql(f"DELETE FROM {self.ident(table)} WHERE {where}").collect()  # bounded: one metrics row

    def add_columns(self, table: str, schema_ddl: str) -> None:
        """Schema evolution: add the columns of ``schema_ddl`` the table lacks (an empty append with
        ``mergeSchema``; Sail has no ``ALTER TABLE ADD COLUMN``)."""
        have = set(self.read(table).columns)
        wanted = [c.strip() for c in schema_ddl.split(",") if c.strip()]
        if all(c.split()[0].strip("`") in have for c in wanted):
            return
        writer = self.spark.createDataFrame([], schema_ddl).write.format("delta").mode("append")
        writer = writer.option("mergeSchema", "true")
        if self.catalog:
            writer.saveAsTable(f"{self.catalog}.{view_name(table)}")
        else:
            writer.save(self.location(table))

    # -- staging: a chunk's rows land here first, then one MERGE publishes them ----------------
    def staging(self, table: str, attempt: str) -> str:
        """The staging table name of one chunk attempt of ``table``."""
        return f"_staging.{view_name(table)}__{attempt}"

    def staged_tables(self, table: str) -> list[str]:
        """Staging tables of ``table`` left by runs that died between staging and publishing."""
        prefix = f"{view_name(table)}__"
        if self.catalog:
            rows = self.spark.sql(f"SHOW TABLES IN {self.catalog}").collect()  # bounded: one row per table
            names = [r["tableName"] for r in rows]
            return sorted(f"_staging.{n[len('_staging_'):]}" for n in names
                          if n.startswith(f"_staging_{prefix}"))
        return sorted(f"_staging.{d}" for d in list_dirs(f"{self.root}/_staging") if d.startswith(prefix))

    def drop(self, table: str) -> None:
        """Remove a table and its files (staging tables only)."""
        if not table.startswith("_staging."):
            raise ValueError(f"refusing to drop {table}: only staging tables are dropped")
        if self.catalog:
            self.spark.sql(f"DROP TABLE IF EXISTS {self.ident(table)}").collect()  # bounded: no rows
            return
        remove_tree(self.location(table))

    def merge(self, table: str, source: str, key: str, columns: list[str]) -> None:
        """One MERGE commit of a staging table into ``table`` on ``key``: rows flagged ``_delete``
        remove their key, every other staged row replaces or inserts its key's row."""
        cols = ", ".join(f"`{c}`" for c in columns)
        sets = ", ".join(f"t.`{c}` = s.`{c}`" for c in columns)
        vals = ", ".join(f"s.`{c}`" for c in columns)
        self.spark.sql(
            f"MERGE INTO {self.ident(table)} t USING {self.ident(source)} s ON t.`{key}` = s.`{key}` "
            f"WHEN MATCHED AND s._delete THEN DELETE WHEN MATCHED THEN UPDATE SET {sets} "
            f"WHEN NOT MATCHED AND NOT s._delete THEN INSERT ({cols}) VALUES ({vals})").collect()  # bounded: one metrics row

    # -- maintenance (delta-rs; Sail has no OPTIMIZE/VACUUM) --------------------------------
    def optimize(self, table: str) -> dict[str, Any]:
        if self.catalog:
            return {"rows": [r.asDict() for r in self.spark.sql(f"OPTIMIZE {self.ident(table)}").collect()]}  # bounded: one metrics row
        return self._dt(table).optimize.compact()

    def vacuum(self, table: str, retention_hours: int = 168) -> list[str]:
        if self.catalog:
            self.spark.sql(f"VACUUM {self.ident(table)} RETAIN {retention_hours} HOURS").collect()  # bounded: no rows
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
