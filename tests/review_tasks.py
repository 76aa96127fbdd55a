"""A ``gold.review_tasks`` table for the review page's tests without Spark: gold-like rows over the
shared talking-face clips, turned into tasks by the review stage's own ``build_tasks`` and written
with delta-rs (the browser test uses the table the real stage wrote in ``full_run``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa

from facevid.udfs.curation.review_schema import TASK_COLUMNS
from facevid.udfs.curation.review_tasks import ReviewParams, build_tasks

_TYPES = {"string": pa.string(), "double": pa.float64(), "int": pa.int32(), "boolean": pa.bool_(),
          "timestamp": pa.timestamp("us", tz="UTC"), "array<int>": pa.list_(pa.int32()),
          "array<double>": pa.list_(pa.float64()), "array<string>": pa.list_(pa.string())}
TASK_SCHEMA = pa.schema([(name, _TYPES[kind]) for name, kind in TASK_COLUMNS.items()])
SQUARE_TALKING = ("lp_d11.mp4", "lp_d18.mp4", "lp_d19.mp4", "lp_d20.mp4", "retalking_face5.mp4", "sadtalker_aoc.mp4")
_ATTRS = ({"ethnicity": "White", "appearance": ["Male", "Short hair"], "lighting": ["Bright"], "age": 35.0,
           "action": ["Talk"], "emotion": "Neutral"},
          {"ethnicity": "Asian", "appearance": ["Female", "Long hair", "Black hair"], "lighting": ["Natural", "Daylight"],
           "age": 24.0, "action": ["Talk", "Smile"], "emotion": "Happy"},
          {"ethnicity": None, "appearance": [], "lighting": None, "age": None, "action": None, "emotion": None})
PUBLISHED = pd.Timestamp("2026-12-01", tz="UTC")


def shared_clips(videos: Path, names: tuple[str, ...] = SQUARE_TALKING) -> list[dict[str, Any]]:
    """Gold-like rows over whole shared videos (the file is the ``crop_uri``), with valid attribute
    values, some missing (the model said nothing)."""
    import av

    clips = []
    for k, name in enumerate(names):
        with av.open(str(videos / name)) as container:
            stream = container.streams.video[0]
            fps, frames = float(stream.average_rate), stream.frames
        clips.append({"clip_id": Path(name).stem, "video_id": f"v{k}", "identity_id": f"id{k % 3}",
                      "source": "shared", "crop_uri": str(videos / name), "fps": fps, "n_frames": frames,
                      "published_at": PUBLISHED, "restored_uri": None, "eye_flagged": None,
                      **_ATTRS[k % len(_ATTRS)]})
    return clips


def write_review_tasks(lake: str | Path, clips: list[dict[str, Any]]) -> str:
    """Write (overwrite) ``<lake>/gold/review_tasks`` for ``clips``; returns the table's path."""
    from deltalake import write_deltalake

    tasks = build_tasks(pd.DataFrame(clips), None, ReviewParams(), None, PUBLISHED)
    path = f"{str(lake).rstrip('/')}/gold/review_tasks"
    write_deltalake(path, pa.Table.from_pandas(tasks, schema=TASK_SCHEMA, preserve_index=False), mode="overwrite")
    return path
