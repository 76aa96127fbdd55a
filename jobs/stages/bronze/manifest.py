"""Source manifests: CSVs that declare, per file under a source root, who is in it (``identity:``)
and what it shows (``labels:``), read on the driver when ingest lists the source.

Both kinds share one reader: ``path`` is relative to the source root and matched exactly after
normalisation (``./x.mp4`` = ``x.mp4``), never by bare file name; a line whose path is absolute
or leaves the root (``../``) is rejected: it declares nothing and becomes one ``bronze.files``
error row ``manifest_path`` keyed ``<manifest>#<path>`` (the path percent-escaped). A labels line
with a bad value is rejected the same way as ``manifest_value``. A manifest that cannot be read
or lacks its columns is a ``ConfigError`` (the run stops before any work)."""

from __future__ import annotations

import json
import math
import posixpath
from typing import Any
from urllib.parse import quote

import pandas as pd

from facevid.jobs.config import ConfigError, Source
from facevid.udfs.media.storage import local_path

ONE, MANY = "one", "many"
# The attributes a labels manifest may declare and how many values each takes (the paper's Table 1;
# the options themselves are the vocabulary's business: declared values are kept as written).
LABEL_ATTRIBUTES: dict[str, str] = {"ethnicity": ONE, "appearance": MANY, "lighting": MANY, "action": MANY,
                                    "emotion": ONE}
SPAN = ("start_s", "end_s")
MANY_SEP = ";"

Rows = list[dict[str, Any]]


def manifest_path(path: str) -> str | None:
    """A manifest ``path`` normalised (``./`` and ``a/../`` folded, repeated ``/`` collapsed), or
    ``None`` when it is absolute or leaves the source root."""
    norm = posixpath.normpath(path.strip())
    if posixpath.isabs(norm) or norm == ".." or norm.startswith("../") or norm == ".":
        return None
    return norm


def rejected_line(src: Source, manifest: str, raw: str, category: str, detail: str) -> dict[str, Any]:
    """The ``bronze.files`` listing row of a rejected manifest line (never opened or hashed)."""
    return {"uri": f"{manifest}#{quote(raw.strip())}", "source": src.name, "license": src.license,
            "identity": None, "declared_labels": None, "bytes": None, "mtime": None,
            "listing_error": f"{category}: {manifest} {detail}"}


def read_manifest(src: Source, manifest: str, kind: str, required: set[str],
                  allowed: set[str] | None = None) -> tuple[list[tuple[int, str, dict[str, str]]], Rows, set[str]]:
    """The lines of a CSV manifest that name a path inside the root, as ``(line, normalised path,
    cells)``, the error rows of the lines that do not, and the manifest's columns. ``allowed``
    (when given) lists every column the manifest may have."""
    try:
        with local_path(manifest) as path:
            table = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise ConfigError(f"source {src.name}: {kind} manifest {manifest} is not a readable CSV: "
                          f"{str(exc).splitlines()[0]}") from exc
    columns = [str(c).strip() for c in table.columns]
    table.columns = columns
    if not required <= set(columns):
        raise ConfigError(f"source {src.name}: {kind} manifest {manifest} needs columns "
                          f"{','.join(sorted(required, key=lambda c: (c != 'path', c)))}")
    unknown = sorted(set(columns) - allowed) if allowed is not None else []
    if unknown:
        raise ConfigError(f"source {src.name}: {kind} manifest {manifest}: unknown column(s) {', '.join(unknown)}; "
                          f"known: {', '.join(sorted(allowed or ()))}")
    lines, rejected = [], []
    for line, cells in enumerate(table.to_dict("records"), start=2):
        raw = cells["path"]
        if not raw.strip():
            continue
        norm = manifest_path(raw)
        if norm is None:
            rejected.append(rejected_line(src, manifest, raw, "manifest_path", f"line {line}: path {raw.strip()!r} "
                                          "is absolute or leaves the source root; it declares nothing"))
        else:
            lines.append((line, norm, cells))
    return lines, rejected, set(columns)


def declared_identities(src: Source, rels: list[str]) -> tuple[list[str | None], Rows]:
    """The identity each file's source declares, given the files' paths under the source root
    (``rel`` of ``list_videos``), and error rows for rejected manifest lines.

    ``folder``: the first folder under the source root (VoxCeleb ``<person>/<video>/<clip>.mp4``,
    TalkingHead-1KH ``<person>/<clip>.mp4``); a file directly in the root declares none. A CSV
    manifest with columns ``path`` and ``identity`` (see the module docstring for ``path``)."""
    if not src.identity:
        return [None] * len(rels), []
    if src.identity == "folder":
        return [r.split("/", 1)[0] if "/" in r else None for r in rels], []
    lines, rejected, _ = read_manifest(src, src.identity, "identity", {"path", "identity"})
    by_path = {norm: cells["identity"].strip() for _, norm, cells in lines if cells["identity"].strip()}
    return [by_path.get(posixpath.normpath(r)) for r in rels], rejected


def _span(cells: dict[str, str]) -> tuple[float, float] | None | str:
    """``(start_s, end_s)``, ``None`` for a whole-video line, or why the span is bad."""
    text = [cells.get(c, "").strip() for c in SPAN]
    if not any(text):
        return None
    try:
        start, end = (float(t) for t in text)
    except ValueError:
        return f"start_s,end_s must both be numbers, got {text[0]!r},{text[1]!r}"
    if not (math.isfinite(start) and math.isfinite(end)) or start < 0 or end <= start:
        return f"needs 0 <= start_s < end_s, got {start:g},{end:g}"
    return start, end


def _values(cells: dict[str, str]) -> dict[str, Any] | str:
    """The attributes a line declares (an empty cell declares nothing), or why a value is bad."""
    out: dict[str, Any] = {}
    for attr, card in LABEL_ATTRIBUTES.items():
        values = list(dict.fromkeys(v.strip() for v in cells.get(attr, "").split(MANY_SEP) if v.strip()))
        if not values:
            continue
        if card == ONE and len(values) > 1:
            return f"{attr} takes one value, got {cells[attr].strip()!r}"
        out[attr] = values[0] if card == ONE else values
    return out


def declared_labels(src: Source, rels: list[str]) -> tuple[list[str | None], Rows]:
    """The labels each file's source declares (a JSON object per file, ``None`` when it has none)
    and error rows for rejected lines of the ``labels:`` CSV manifest.

    Columns: ``path``, any of ``LABEL_ATTRIBUTES`` (many-valued ones ``;``-separated) and optionally
    ``start_s,end_s``; an ``identity`` column is ignored (one CSV may serve both keys). A line
    without a span labels the whole video: ``{"ethnicity": "Asian", "action": ["Talk", "Nod"]}``;
    one with a span goes to ``"spans": [{"start_s": .., "end_s": .., <attr>: ..}]`` (the card gives
    a span to the clip it overlaps most). A second whole-video line for a path, a bad span or two
    values of a one-valued attribute reject the line (``manifest_value``)."""
    if not src.labels:
        return [None] * len(rels), []
    allowed = {"path", "identity", *SPAN, *LABEL_ATTRIBUTES}
    lines, rejected, columns = read_manifest(src, src.labels, "labels", {"path"}, allowed)
    if not columns & set(LABEL_ATTRIBUTES):
        raise ConfigError(f"source {src.name}: labels manifest {src.labels} declares no attribute: "
                          f"add column(s) {', '.join(LABEL_ATTRIBUTES)}")
    if len(columns & set(SPAN)) == 1:
        raise ConfigError(f"source {src.name}: labels manifest {src.labels} needs both start_s and end_s or neither")
    by_path: dict[str, dict[str, Any]] = {}
    whole_line: dict[str, int] = {}
    for line, norm, cells in lines:
        span, values = _span(cells), _values(cells)
        problem = next((p for p in (span, values) if isinstance(p, str)), None)
        if problem is None and span is None and norm in whole_line and values:
            problem = f"whole-video labels already declared on line {whole_line[norm]}"
        if problem is not None:
            rejected.append(rejected_line(src, src.labels, cells["path"], "manifest_value",
                                          f"line {line}: path {cells['path'].strip()!r}: {problem}; it declares nothing"))
            continue
        if not values:
            continue
        entry = by_path.setdefault(norm, {})
        if span is None:
            whole_line[norm] = line
            entry.update(values)
        else:
            entry.setdefault("spans", []).append({"start_s": span[0], "end_s": span[1], **values})
    found = [by_path.get(posixpath.normpath(r)) for r in rels]
    return [None if f is None else json.dumps(f, sort_keys=True) for f in found], rejected
