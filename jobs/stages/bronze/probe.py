"""``probe.video`` -> ``bronze.videos``: one row per distinct content, with container facts."""

from __future__ import annotations

from typing import Any

from facevid.jobs.config import StageSpec
from facevid.jobs.stages.base import Op, register
from facevid.udfs.base import RowFn
from facevid.udfs.media.probe import PROBE_COLUMNS, probe_video
from facevid.udfs.media.storage import local_path


@register
class ProbeVideo(Op):
    """Duration, fps (and VFR), display size, rotation, codec, bitrate, audio, frame count.
    Zero-byte, truncated and non-video files become rows whose ``error`` says why."""

    name = "probe.video"
    default_input = "bronze.files"
    default_output = "bronze.videos"
    input_key = "video_id"
    key = "video_id"
    passthrough = ("video_id", "uri", "source", "license", "bytes", "sha256")
    columns = PROBE_COLUMNS

    def input_frame(self, ctx: Any, spec: StageSpec) -> Any:
        # one row per content hash: the earliest-seen file wins
        files = super().input_frame(ctx, spec)
        firsts = files.groupBy("video_id").agg({"uri": "min"}).withColumnRenamed("min(uri)", "uri")
        return files.join(firsts, ["video_id", "uri"], "inner")

    def row_fn(self, spec: StageSpec) -> RowFn:
        def probe(row: dict[str, Any]) -> dict[str, Any]:
            with local_path(row["uri"]) as path:
                return probe_video(path)

        return probe
