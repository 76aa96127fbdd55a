"""``split.shots`` -> ``silver.clips``: shot boundaries cut into clips of declared length."""

from __future__ import annotations

from typing import Any

from jobs.config import StageSpec
from jobs.stages.base import Op, register
from udfs.base import RowFn, error_text
from udfs.shots import CLIP_COLUMNS, SplitParams, split_row
from udfs.storage import local_path


@register
class SplitShots(Op):
    """Clips are shots (content-histogram cuts) chopped to ``max_clip_s``; shots shorter than
    ``min_clip_s`` stay as rows with ``error = "min_clip_s: ..."`` so quarantine shows them."""

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
            try:
                with local_path(row["uri"]) as path:
                    clips = split_row({**row, "uri": path}, params)
            except Exception as exc:  # one error row per failed video, keyed like its clips
                return [{**meta, "clip_id": f"{row['video_id']}_err", "error": error_text(exc)}]
            return [{**meta, **c, "clip_id": f"{row['video_id']}_{i:04d}"} for i, c in enumerate(clips)]

        return split

    def quarantine_measure(self, spec: StageSpec) -> tuple[str, str]:
        value, _ = super().quarantine_measure(spec)
        return (f"CASE WHEN error LIKE 'min_clip_s:%' THEN CAST(round(duration_s, 2) AS STRING) ELSE {value} END",
                f"CASE WHEN error LIKE 'min_clip_s:%' THEN '{spec.params.min_clip_s}' END")
