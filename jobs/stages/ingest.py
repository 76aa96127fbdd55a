"""``ingest.files`` -> ``bronze.files``: every video file seen in the sources, content-hashed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from jobs.config import ConfigError, Source, StageSpec
from jobs.lineage import INPUT_FP, frame_fingerprints
from jobs.stages.base import Op, register
from udfs.base import RowFn
from udfs.storage import is_s3, list_videos, local_path, sha256_uri, to_local

LISTING_SCHEMA = ("uri string, source string, license string, identity string, bytes long, mtime double, "
                  f"{INPUT_FP} string")


def declared_identities(src: Source, uris: list[str]) -> list[str | None]:
    """The identity each file's source declares: ``folder`` = the file's parent folder under the
    source root (VoxCeleb / TalkingHead-1KH style ``<person>/<clip>.mp4``); a CSV manifest with
    columns ``path`` (relative to the source root, or a bare file name) and ``identity``."""
    if not src.identity:
        return [None] * len(uris)
    root = src.uri.rstrip("/") if is_s3(src.uri) else str(Path(to_local(src.uri)).resolve())
    rel = [u[len(root):].lstrip("/") if u.startswith(root) else u.rsplit("/", 1)[-1] for u in uris]
    if src.identity == "folder":
        return [r.rsplit("/", 1)[0].rsplit("/", 1)[-1] if "/" in r else None for r in rel]
    with local_path(src.identity) as path:
        manifest = pd.read_csv(path, dtype=str)
    if not {"path", "identity"} <= set(manifest.columns):
        raise ConfigError(f"source {src.name}: identity manifest needs columns path,identity")
    by_path = dict(zip(manifest["path"].str.lstrip("/"), manifest["identity"], strict=True))
    return [by_path.get(r, by_path.get(r.rsplit("/", 1)[-1])) for r in rel]


@register
class IngestFiles(Op):
    """List the declared sources (local folder, ``s3://`` prefix, ``dbfs:/``) on the driver (a plan:
    URIs and sizes), skip files already ingested with the same size and mtime, and hash the new or
    changed ones on the executors; ``video_id`` is the first 16 hex of the SHA-256. The same
    content under two URIs keeps both file rows and one ``bronze.videos`` row. Files that vanish
    from a source keep their rows (bronze records what was seen; ``--source`` may list only a
    few folders)."""

    name = "ingest.files"
    default_output = "bronze.files"
    input_key = "uri"
    key = "uri"
    passthrough = ("uri", "source", "license", "identity", "bytes", "mtime")
    columns = {"sha256": "string", "video_id": "string"}
    prune = False

    def input_frame(self, ctx: Any, spec: StageSpec) -> Any:
        if not ctx.cfg.sources:
            raise ConfigError("no sources: declare `sources:` in the config or pass --source")
        rows = []
        for src in ctx.cfg.sources:
            try:
                found = list_videos(src.uri)
            except (FileNotFoundError, ValueError, PermissionError) as exc:
                raise ConfigError(f"source {src.name}: {exc}") from exc
            idents = declared_identities(src, [f["uri"] for f in found])
            rows += [{**f, "source": src.name, "license": src.license, "identity": i}
                     for f, i in zip(found, idents, strict=True)]
        names = ["uri", "source", "license", "identity", "bytes", "mtime"]
        pdf = pd.DataFrame(rows, columns=names).drop_duplicates("uri")
        pdf[INPUT_FP] = frame_fingerprints(pdf, names) if len(pdf) else pd.Series(dtype=object)
        return ctx.spark.createDataFrame(pdf, LISTING_SCHEMA)

    def row_fn(self, spec: StageSpec) -> RowFn:
        def hash_file(row: dict[str, Any]) -> dict[str, Any]:
            digest = sha256_uri(row["uri"])
            return {"sha256": digest, "video_id": digest[:16]}

        return hash_file
