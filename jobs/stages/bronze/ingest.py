"""``ingest.files`` -> ``bronze.files``: every video file seen in the sources, content-hashed.

Listing entries that must not be read (``facevid.udfs.media.storage.list_videos``: ``link_outside_root``,
``missing``, ``unreadable``) and rejected identity- or labels-manifest lines (``manifest_path``,
``manifest_value``: ``facevid.jobs.stages.bronze.manifest``) become ``bronze.files`` error rows: the
row function raises ``StageError`` for them before any I/O."""

from __future__ import annotations

from typing import Any

import pandas as pd

from facevid.jobs.config import ConfigError, StageSpec
from facevid.jobs.lineage import INPUT_FP, row_fingerprint
from facevid.jobs.stages.base import Op, register
from facevid.jobs.stages.bronze.manifest import declared_identities, declared_labels
from facevid.udfs.base import RowFn, StageError
from facevid.udfs.media.storage import list_videos, sha256_uri

LISTING_SCHEMA = ("uri string, source string, license string, identity string, declared_labels string, "
                  f"bytes long, mtime double, listing_error string, {INPUT_FP} string")


def listing_fingerprints(pdf: pd.DataFrame, names: list[str]) -> list[str]:
    """Each listed file's input fingerprint. ``declared_labels`` counts only where a file has labels,
    so files without any keep the fingerprint they had before labels existed (no re-hash on upgrade);
    a labels edit re-hashes and re-probes that file, and nothing downstream whose content is unchanged."""
    plain = [n for n in names if n != "declared_labels"]
    return [row_fingerprint(r, plain + ["declared_labels"] * bool(r["declared_labels"]))
            for r in pdf[names].to_dict("records")]


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
    passthrough = ("uri", "source", "license", "identity", "declared_labels", "bytes", "mtime")
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
            rels = [f["rel"] for f in found]
            (idents, bad_ids), (labels, bad_labels) = declared_identities(src, rels), declared_labels(src, rels)
            rows += [{"uri": f["uri"], "source": src.name, "license": src.license, "identity": i,
                      "declared_labels": lab, "bytes": f["bytes"], "mtime": f["mtime"], "listing_error": f["error"]}
                     for f, i, lab in zip(found, idents, labels, strict=True)] + bad_ids + bad_labels
        names = [c.split()[0] for c in LISTING_SCHEMA.split(", ")][:-1]
        pdf = pd.DataFrame(rows, columns=names).drop_duplicates("uri")
        pdf["bytes"] = pdf["bytes"].astype("Int64")
        pdf = pdf.astype({"mtime": "float64"}).astype(object).where(pdf.notna(), None)
        pdf[INPUT_FP] = listing_fingerprints(pdf, names) if len(pdf) else pd.Series(dtype=object)
        return ctx.spark.createDataFrame(pdf, LISTING_SCHEMA)

    def row_fn(self, spec: StageSpec) -> RowFn:
        def hash_file(row: dict[str, Any]) -> dict[str, Any]:
            if row.get("listing_error"):  # a link out of the root, a broken link: never opened
                category, _, detail = str(row["listing_error"]).partition(": ")
                raise StageError(category, detail)
            digest = sha256_uri(row["uri"])
            return {"sha256": digest, "video_id": digest[:16]}

        return hash_file
