"""``quality.score`` -> ``silver.quality``: per-clip quality scores (decisions are gold's)."""

from __future__ import annotations

from facevid.jobs.stages.base import ClipTrackOp, register
from facevid.udfs.curation.quality import QUALITY_COLUMNS, QualityParams, score_clip


@register
class ScoreQuality(ClipTrackOp):
    """Sharpness, exposure, black borders, OCR text, motion, head pose and face size per clip, plus
    the learned scores whose ONNX models are configured. One decode pass per clip."""

    name = "quality.score"
    default_output = "silver.quality"
    columns = QUALITY_COLUMNS
    params_cls = QualityParams
    clip_fn = staticmethod(score_clip)
