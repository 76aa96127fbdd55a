"""``quality.score`` -> ``silver.quality``: per-clip quality scores (decisions are gold's)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from jobs.config import StageSpec
from jobs.stages.base import Op, clip_track_frame, register
from udfs.base import RowFn
from udfs.quality import QUALITY_COLUMNS, QualityParams, score_clip
from udfs.storage import local_path

if TYPE_CHECKING:
    from jobs.runner import Context


@register
class ScoreQuality(Op):
    """Sharpness, exposure, black borders, OCR text, motion, head pose and face size per clip, plus
    the learned scores whose ONNX models are configured. One decode pass per clip."""

    name = "quality.score"
    default_input = ["silver.faces", "silver.clips"]
    default_output = "silver.quality"
    input_key = "clip_id"
    key = "clip_id"
    passthrough = ("clip_id", "video_id")
    columns = QUALITY_COLUMNS
    params_cls = QualityParams

    def input_frame(self, ctx: Context, spec: StageSpec) -> Any:
        return clip_track_frame(ctx, spec)

    def row_fn(self, spec: StageSpec) -> RowFn:
        params = spec.params

        def score(row: dict[str, Any]) -> dict[str, Any]:
            with local_path(row["video_uri"]) as path:
                return score_clip(path, row, params)

        return score
