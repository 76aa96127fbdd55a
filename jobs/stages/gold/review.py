"""``review.tasks`` -> ``gold.review_tasks``: what people check, queued flagged-first, sampled per batch.

Rebuilt from gold on every run (a whole-table stage; task ids ``<kind>:<clip_id>`` and their
``created_at`` are stable, so an unchanged gold commits nothing). The occlusion signal of each gold
clip is computed on the executors from its face track (``silver.faces``) and the av stage's
landmark share (``silver.av``); only its scalars reach the driver. Verdicts live in
``review.verdicts`` (``facevid review`` appends them); gold applies them on its next run.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pandas as pd
from pyspark.sql import functions as F

from facevid.jobs.config import ConfigError, StageSpec
from facevid.jobs.runlog import ddl
from facevid.jobs.stages.base import TableOp, register
from facevid.udfs.curation.occlusion import OCCLUSION_COLUMNS, OcclusionParams, occlusion_signal
from facevid.udfs.curation.review_schema import TASK_COLUMNS
from facevid.udfs.curation.review_tasks import ReviewParams, build_tasks

GOLD_READ = ("clip_id", "video_id", "identity_id", "source", "crop_uri", "unrestored_uri", "restored_uri",
             "eye_flagged", "fps", "n_frames", "published_at", "age", "model_annotations", "ethnicity",
             "appearance", "lighting", "action", "emotion")


def occlusion_frame(ctx: Any, spec: StageSpec, clip_ids: Any) -> pd.DataFrame:
    """``clip_id`` + ``OCCLUSION_COLUMNS`` of the clips in ``clip_ids`` (a one-column DataFrame),
    computed by a pandas UDF on the executors."""
    faces_table, av_table = (*spec.inputs, None, None)[1:3]
    if faces_table is None:
        return pd.DataFrame(columns=["clip_id", *OCCLUSION_COLUMNS])
    faces = ctx.current(faces_table).filter("error IS NULL").select(
        "clip_id", "track_scores", "track_boxes", "track_landmarks")
    frame = clip_ids.join(faces, "clip_id", "inner")
    if av_table is not None and ctx.lake.exists(av_table):
        av = ctx.current(av_table).filter("error IS NULL").select("clip_id", "occlusion_frac")
        frame = frame.join(av, "clip_id", "left")
    else:
        frame = frame.withColumn("occlusion_frac", F.lit(None).cast("double"))
    params: OcclusionParams = spec.params.occlusion

    def signals(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        for b in batches:
            rows = [{"clip_id": r["clip_id"], **occlusion_signal(r["track_scores"], r["track_boxes"],
                                                                  r["track_landmarks"], r["occlusion_frac"], params)}
                    for r in b.to_dict("records")]
            yield pd.DataFrame(rows, columns=["clip_id", *OCCLUSION_COLUMNS])

    schema = ddl({"clip_id": "string", **OCCLUSION_COLUMNS})
    return frame.mapInPandas(signals, schema).toPandas()  # bounded: 5 scalars per gold clip


@register
class ReviewTasks(TableOp):
    """Review tasks of the gold clips (``facevid.udfs.curation.review_tasks``): restoration first
    frames, static attributes on the first frame, dynamic ones on 3 random non-consecutive frames;
    flagged clips (eye artifacts, occlusion, age) first; each labelling batch's ISO 2859-1 sample marked.

    On the driver: one row per task (3 per gold clip at most, about 1 KB each)."""

    name = "review.tasks"
    default_input = ["gold.clips", "silver.faces", "silver.av"]
    default_output = "gold.review_tasks"
    key = "task_id"
    columns = TASK_COLUMNS
    params_cls = ReviewParams

    def build(self, ctx: Any, spec: StageSpec, previous: pd.DataFrame | None) -> pd.DataFrame:
        gold_df = ctx.current(spec.inputs[0])
        missing = [c for c in ("clip_id", "crop_uri", "fps", "published_at") if c not in gold_df.columns]
        if missing:
            raise ConfigError(f"stage {spec.name}: {spec.inputs[0]} lacks {', '.join(missing)}")
        cols = [c for c in GOLD_READ if c in gold_df.columns]
        gold = gold_df.select(*cols).toPandas()  # bounded: gold's scalar and attribute columns, one row per clip
        for c in GOLD_READ:
            if c not in gold:
                gold[c] = None
        signals = occlusion_frame(ctx, spec, gold_df.select("clip_id"))
        return build_tasks(gold, signals, spec.params, previous, pd.Timestamp.now(tz="UTC"))
