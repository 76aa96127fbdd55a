"""A ``GoldSnapshot`` exported in a trainer's own dataset format, into a folder naming the version.

``export_snapshot(snapshot, out, fmt)`` writes ``<out>/<fmt>/<table>-v<version>-<split|all>/`` (e.g.
``exports/finetrainers/gold_clips-v7-train/``) with the trainer's index files, the videos, and
``export.json`` (format, table uri, version, split, rows, the exported clip ids in row order and
their SHA-256, created_at, the videos mode, clips left out). Formats, as the trainers read them:

- ``finetrainers`` (a-r-r-o-w/finetrainers ``VideoFileCaptionFileListDataset``; CogVideoX): ``prompts.txt``
  and ``videos.txt``, one line per clip, video paths relative to the folder (``--data_root <folder>
  --caption_column prompts.txt --video_column videos.txt``). A caption's line breaks become spaces.
- ``opensora`` (hpcaitech/Open-Sora 1.2+): ``data.csv`` with ``path,text,num_frames,height,width,
  aspect_ratio,resolution,fps`` (``aspect_ratio`` = height / width, ``resolution`` = height * width,
  probed from each video); Open-Sora opens ``path`` as written (relative to its working folder), so
  paths are absolute.
- ``easyanimate`` (aigc-apps/EasyAnimate ``ImageVideoDataset``): ``metadata.json``, a list of
  ``{"file_path", "text", "type": "video"}`` with paths relative to the folder (``--train_data_dir
  <folder> --train_data_meta <folder>/metadata.json``).

Videos (``videos=``): ``"link"`` (default: a symlink ``videos/<clip_id>.mp4`` to the crop; an ``s3://``
crop is downloaded and copied), ``"copy"`` (a self-contained folder), ``"uri"`` (no files: the index
names the crop URIs; only usable by a trainer that can open them, i.e. local paths). Output to
``s3://`` is built in a temporary folder and uploaded with ``put_file`` (``link`` is refused there);
a local folder is published by one rename. An existing export is never overwritten unless asked.
A crop that is missing or unreadable is left out and listed under ``skipped``.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from facevid.udfs.base import validate
from facevid.udfs.media.storage import is_s3, local_path, put_file, to_local
from facevid.udfs.media.video import VideoSpan
from facevid.udfs.train.reader import GoldSnapshot

VIDEO_MODES = ("link", "copy", "uri")
OPENSORA_COLUMNS = ("path", "text", "num_frames", "height", "width", "aspect_ratio", "resolution", "fps")
INDEX_FILES = {"finetrainers": ("prompts.txt", "videos.txt"), "opensora": ("data.csv",),
               "easyanimate": ("metadata.json",)}
FORMATS = tuple(INDEX_FILES)


def export_name(snapshot: GoldSnapshot, selection: str | None = None) -> str:
    """``<table>-v<version>-<split|all>``, e.g. ``gold_clips-v7-train`` (``-mix-<name>`` for a declared mix)."""
    return f"{snapshot.table_name}-v{snapshot.version}-{snapshot.split or 'all'}" + (
        f"-mix-{selection}" if selection else "")


def _place(row: dict[str, Any], folder: Path, videos: str) -> str:
    """The video of ``row`` in the export (its path relative to ``folder``), or its URI for ``uri``;
    raises OSError when the crop cannot be read."""
    uri = row["crop_uri"]
    if videos == "uri":
        if not is_s3(uri) and not os.path.isfile(to_local(uri)):
            raise FileNotFoundError(uri)
        return uri
    rel = f"videos/{row['clip_id']}.mp4"
    dest = folder / rel
    dest.parent.mkdir(parents=True, exist_ok=True)
    if videos == "link" and not is_s3(uri):
        source = os.path.abspath(to_local(uri))
        if not os.path.isfile(source):
            raise FileNotFoundError(uri)
        os.symlink(source, dest)
    else:
        with local_path(uri) as path:
            shutil.copyfile(path, dest)
    return rel


def _probe(path: str) -> dict[str, Any]:
    with VideoSpan(path) as span:
        stream = span.stream
        frames = int(stream.frames or 0)
        fps = float(span.fps)
        if not frames and stream.duration and span.time_base is not None:
            frames = int(float(stream.duration * span.time_base) * fps)
        return {"num_frames": frames, "height": stream.height, "width": stream.width, "fps": fps}


def _finetrainers(folder: Path, items: list[dict[str, Any]], final: str) -> None:
    one_line = [" ".join(str(i["caption"]).split()) for i in items]
    (folder / "prompts.txt").write_text("".join(f"{c}\n" for c in one_line))
    (folder / "videos.txt").write_text("".join(f"{i['video']}\n" for i in items))


def _opensora(folder: Path, items: list[dict[str, Any]], final: str) -> None:
    with open(folder / "data.csv", "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(OPENSORA_COLUMNS)
        for i in items:
            video = i["video"]
            absolute = video if i["mode"] == "uri" else f"{final}/{video}"
            with local_path(video if i["mode"] == "uri" else str(folder / video)) as path:
                info = _probe(path)
            h, w = info["height"], info["width"]
            writer.writerow([absolute, i["caption"], info["num_frames"], h, w, h / w, h * w, info["fps"]])


def _easyanimate(folder: Path, items: list[dict[str, Any]], final: str) -> None:
    meta = [{"file_path": i["video"], "text": i["caption"], "type": "video"} for i in items]
    (folder / "metadata.json").write_text(json.dumps(meta, indent=1, ensure_ascii=False))


_WRITERS: dict[str, Callable[[Path, list[dict[str, Any]], str], None]] = {
    "finetrainers": _finetrainers, "opensora": _opensora, "easyanimate": _easyanimate}


def _build(snapshot: GoldSnapshot, folder: Path, fmt: str, videos: str, final: str,
           extra: dict[str, Any]) -> dict[str, Any]:
    items: list[dict[str, Any]] = []
    skipped: dict[str, str] = {}
    for row in snapshot.rows.to_dict("records"):
        try:
            video = _place(row, folder, videos)
        except Exception as exc:  # noqa: BLE001 - missing file, S3 ClientError: recorded, not fatal
            skipped[row["clip_id"]] = f"{type(exc).__name__}: {exc}"
            continue
        caption = "" if row.get("caption") is None else str(row["caption"])
        items.append({"clip_id": row["clip_id"], "caption": caption, "video": video, "mode": videos})
    if not items:
        raise ValueError(f"export {fmt}: no readable clip in {snapshot.table_uri}@v{snapshot.version}")
    _WRITERS[fmt](folder, items, final)
    ids = [i["clip_id"] for i in items]
    meta = snapshot.lineage() | {
        "format": fmt, "rows": len(items), "snapshot_rows": len(snapshot), "videos": videos,
        "clip_ids": ids, "clip_ids_sha256": hashlib.sha256("\n".join(ids).encode()).hexdigest(),
        "snapshot_clip_ids_sha256": snapshot.digest(), "index_files": list(INDEX_FILES[fmt]),
        "skipped": skipped, "created_at": datetime.now(UTC).isoformat(), "folder": final} | extra
    (folder / "export.json").write_text(json.dumps(meta, indent=2, sort_keys=True))
    return meta


def export_snapshot(snapshot: GoldSnapshot, out: str, fmt: str, videos: str | None = None,
                    overwrite: bool = False, mix: dict[str, Any] | None = None) -> dict[str, Any]:
    """Export ``snapshot`` as ``fmt`` under ``out`` (module docstring); returns ``export.json``'s dict
    (``folder`` is where it was published). ``mix``: the facts of a declared mix the snapshot's rows were
    selected by (``MixResult.params()``, with ``mix`` its name), recorded in ``export.json`` and the name."""
    remote = is_s3(out)
    videos = videos or ("copy" if remote else "link")
    validate("export", [
        (fmt in FORMATS, f"format must be one of {FORMATS}, got {fmt!r}"),
        (videos in VIDEO_MODES, f"videos must be one of {VIDEO_MODES}, got {videos!r}"),
        (not (remote and videos == "link"), "videos='link' cannot be written to s3:// (use copy or uri)"),
    ])
    final = f"{out.rstrip('/')}/{fmt}/{export_name(snapshot, (mix or {}).get('mix'))}"
    extra = {"selection": mix} if mix else {}
    if remote:
        with tempfile.TemporaryDirectory(prefix="facevid-export-") as tmp:
            meta = _build(snapshot, Path(tmp), fmt, videos, final, extra)
            for path in sorted(p for p in Path(tmp).rglob("*") if p.is_file()):
                put_file(path, f"{final}/{path.relative_to(tmp).as_posix()}")
        return meta
    target = Path(to_local(final)).absolute()
    if target.exists() and not overwrite:
        raise FileExistsError(f"{target} exists (an export is immutable; pass overwrite=True to replace it)")
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        meta = _build(snapshot, staging, fmt, videos, str(target), extra)
        if target.exists():
            shutil.rmtree(target)
        staging.rename(target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return meta
