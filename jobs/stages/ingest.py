"""``ingest.files`` -> ``bronze.files``: every video file seen in the sources, content-hashed."""

from __future__ import annotations

from typing import Any

import pandas as pd

from jobs.config import ConfigError, StageSpec
from jobs.stages.base import Op, register
from udfs.base import RowFn
from udfs.storage import list_videos, sha256_uri

LISTING_SCHEMA = "uri string, source string, license string, bytes long, mtime double"


@register
class IngestFiles(Op):
    """List the declared sources (local folder, ``s3://`` prefix, ``dbfs:/``), skip URIs already
    ingested, and hash the new ones in parallel; ``video_id`` is the first 16 hex of the SHA-256.
    The same content under two URIs keeps both file rows and one ``bronze.videos`` row."""

    name = "ingest.files"
    default_output = "bronze.files"
    input_key = "uri"
    key = "uri"
    passthrough = ("uri", "source", "license", "bytes", "mtime")
    columns = {"sha256": "string", "video_id": "string"}

    def input_frame(self, ctx: Any, spec: StageSpec) -> Any:
        if not ctx.cfg.sources:
            raise ConfigError("no sources: declare `sources:` in the config or pass --source")
        rows = []
        for src in ctx.cfg.sources:
            try:
                found = list_videos(src.uri)
            except (FileNotFoundError, ValueError, PermissionError) as exc:
                raise ConfigError(f"source {src.name}: {exc}") from exc
            rows += [{**f, "source": src.name, "license": src.license} for f in found]
        pdf = pd.DataFrame(rows, columns=["uri", "source", "license", "bytes", "mtime"])
        return ctx.spark.createDataFrame(pdf.drop_duplicates("uri"), LISTING_SCHEMA)

    def row_fn(self, spec: StageSpec) -> RowFn:
        def hash_file(row: dict[str, Any]) -> dict[str, Any]:
            digest = sha256_uri(row["uri"])
            return {"sha256": digest, "video_id": digest[:16]}

        return hash_file
