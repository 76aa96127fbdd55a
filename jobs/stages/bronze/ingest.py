"""``ingest.files`` -> ``bronze.files``: every video file seen in the sources, content-hashed.

Listing entries that must not be read (``facevid.udfs.media.storage.list_videos``: ``link_outside_root``,
``missing``, ``unreadable``) and rejected identity-manifest lines (``manifest_path``) become
``bronze.files`` error rows: the row function raises ``StageError`` for them before any I/O."""

from __future__ import annotations

import posixpath
from typing import Any
from urllib.parse import quote

import pandas as pd

from facevid.jobs.config import ConfigError, Source, StageSpec
from facevid.jobs.lineage import INPUT_FP, frame_fingerprints
from facevid.jobs.stages.base import Op, register
from facevid.udfs.base import RowFn, StageError
from facevid.udfs.media.storage import list_videos, local_path, sha256_uri

LISTING_SCHEMA = ("uri string, source string, license string, identity string, bytes long, mtime double, "
                  f"listing_error string, {INPUT_FP} string")


def _manifest_path(path: str) -> str | None:
    """A manifest ``path`` normalised (``./`` and ``a/../`` folded, repeated ``/`` collapsed), or
    ``None`` when it is absolute or leaves the source root."""
    norm = posixpath.normpath(path.strip())
    if posixpath.isabs(norm) or norm == ".." or norm.startswith("../") or norm == ".":
        return None
    return norm


def declared_identities(src: Source, rels: list[str]) -> tuple[list[str | None], list[dict[str, Any]]]:
    """The identity each file's source declares, given the files' paths under the source root
    (``rel`` of ``list_videos``), and error rows for rejected manifest lines.

    ``folder``: the first folder under the source root (VoxCeleb ``<person>/<video>/<clip>.mp4``,
    TalkingHead-1KH ``<person>/<clip>.mp4``); a file directly in the root declares none. A CSV
    manifest with columns ``path`` and ``identity``: ``path`` is relative to the source root and
    matched exactly after normalisation (``./x.mp4`` = ``x.mp4``), never by bare file name; a line
    whose path is absolute or leaves the root (``../``) is rejected: it declares nothing and
    becomes one ``bronze.files`` error row ``manifest_path`` keyed ``<manifest>#<path>``."""
    if not src.identity:
        return [None] * len(rels), []
    if src.identity == "folder":
        return [r.split("/", 1)[0] if "/" in r else None for r in rels], []
    with local_path(src.identity) as path:
        manifest = pd.read_csv(path, dtype=str, keep_default_na=False)
    if not {"path", "identity"} <= set(manifest.columns):
        raise ConfigError(f"source {src.name}: identity manifest needs columns path,identity")
    by_path: dict[str, str] = {}
    rejected = []
    for line, (raw, ident) in enumerate(zip(manifest["path"], manifest["identity"], strict=True), start=2):
        if not raw.strip():
            continue
        norm = _manifest_path(raw)
        if norm is None:
            rejected.append({"uri": f"{src.identity}#{quote(raw.strip())}", "source": src.name,
                             "license": src.license, "identity": None, "bytes": None, "mtime": None,
                             "listing_error": f"manifest_path: {src.identity} line {line}: path {raw.strip()!r} "
                                              "is absolute or leaves the source root; it declares nothing"})
        elif ident.strip():
            by_path[norm] = ident.strip()
    return [by_path.get(posixpath.normpath(r)) for r in rels], rejected


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
            idents, rejected = declared_identities(src, [f["rel"] for f in found])
            rows += [{"uri": f["uri"], "source": src.name, "license": src.license, "identity": i,
                      "bytes": f["bytes"], "mtime": f["mtime"], "listing_error": f["error"]}
                     for f, i in zip(found, idents, strict=True)] + rejected
        names = [c.split()[0] for c in LISTING_SCHEMA.split(", ")][:-1]
        pdf = pd.DataFrame(rows, columns=names).drop_duplicates("uri")
        pdf["bytes"] = pdf["bytes"].astype("Int64")
        pdf = pdf.astype({"mtime": "float64"}).astype(object).where(pdf.notna(), None)
        pdf[INPUT_FP] = frame_fingerprints(pdf, names) if len(pdf) else pd.Series(dtype=object)
        return ctx.spark.createDataFrame(pdf, LISTING_SCHEMA)

    def row_fn(self, spec: StageSpec) -> RowFn:
        def hash_file(row: dict[str, Any]) -> dict[str, Any]:
            if row.get("listing_error"):  # a link out of the root, a broken link: never opened
                category, _, detail = str(row["listing_error"]).partition(": ")
                raise StageError(category, detail)
            digest = sha256_uri(row["uri"])
            return {"sha256": digest, "video_id": digest[:16]}

        return hash_file
