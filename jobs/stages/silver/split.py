"""``split.shots`` -> ``silver.clips``: shot boundaries cut into clips of declared length."""

from __future__ import annotations

from typing import Any

from facevid.jobs.config import StageSpec
from facevid.jobs.stages.base import Op, register
from facevid.udfs.base import RowFn
from facevid.udfs.media.shots import CLIP_COLUMNS, SplitParams, split_row
from facevid.udfs.media.storage import local_path


def clip_id(video_id: str, start_s: float, end_s: float) -> str:
    """A clip's id from the footage it covers: ``<video_id>_<start ms>_<end ms>`` (zero-padded, so
    ids sort by time). A re-split that keeps a span keeps its id; a changed span is a new clip."""
    return f"{video_id}_{round(start_s * 1000):09d}_{round(end_s * 1000):09d}"


@register
class SplitShots(Op):
    """Clips are shots (content-histogram cuts) chopped to ``max_clip_s``; shots shorter than
    ``min_clip_s`` stay as rows with ``error = "min_clip_s: ..."`` so quarantine shows them. Clip
    ids come from the time span (``clip_id``); a video that fails is one ``<video_id>_err`` row."""

    name = "split.shots"
    default_input = "bronze.videos"
    default_output = "silver.clips"
    input_key = "video_id"
    key = "clip_id"
    passthrough = ("video_id", "source")
    columns = {"clip_id": "string", "video_uri": "string", **CLIP_COLUMNS,
               "fps": "double", "width": "int", "height": "int"}
    params_cls = SplitParams

    def row_fn(self, spec: StageSpec) -> RowFn:
        params = spec.params

        def split(row: dict[str, Any]) -> list[dict[str, Any]]:
            meta = {"video_uri": row["uri"], "fps": row["fps"], "width": row["width"], "height": row["height"]}
            with local_path(row["uri"]) as path:
                clips = split_row({**row, "uri": path}, params)
            return [{**meta, **c, "clip_id": clip_id(row["video_id"], c["start_s"], c["end_s"])} for c in clips]

        return split
