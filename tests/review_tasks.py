"""A ``gold.review_tasks`` table for the review page's tests, built from clip rows exactly as
``TASK_COLUMNS`` declares it (until the review tasks stage lands; then the tests run that stage
instead of ``write_review_tasks``)."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa

from facevid.udfs.curation.review_schema import TASK_COLUMNS, age_group

_TYPES = {"string": pa.string(), "double": pa.float64(), "int": pa.int32(), "boolean": pa.bool_(),
          "timestamp": pa.timestamp("us", tz="UTC"), "array<int>": pa.list_(pa.int32()),
          "array<double>": pa.list_(pa.float64()), "array<string>": pa.list_(pa.string())}
TASK_SCHEMA = pa.schema([(name, _TYPES[kind]) for name, kind in TASK_COLUMNS.items()])
STATIC = ("ethnicity", "appearance", "lighting", "age")
DYNAMIC = ("action", "emotion")
SAMPLE = 3  # tasks per batch in the acceptance sample


def _frames(n_frames: int, rng: random.Random) -> list[int]:
    """3 random non-consecutive frame numbers below ``n_frames``, ascending."""
    a, b, c = sorted(rng.sample(range(max(3, n_frames - 2)), 3))
    return [a, b + 1, c + 2]


def task_rows(clips: list[dict[str, Any]], seed: int = 7) -> list[dict[str, Any]]:
    """A static and a dynamic task per clip (``clip_id``, ``video_id``, ``identity_id``, ``source``,
    ``crop_uri``, ``fps``, ``duration_s`` and the attribute columns), seeded."""
    now = datetime(2026, 1, 1, tzinfo=UTC)
    rows = []
    for kind, fields in (("static", STATIC), ("dynamic", DYNAMIC)):
        order = list(range(len(clips)))
        random.Random(f"{seed}:{kind}").shuffle(order)
        for clip, rank in zip(clips, order, strict=True):
            rng = random.Random(f"{seed}:{clip['clip_id']}")
            fps = float(clip["fps"])
            index = [0] if kind == "static" else _frames(int(clip["duration_s"] * fps), rng)
            values = {f: age_group(clip.get("age")) if f == "age" else clip.get(f) for f in fields}
            flags = ["minor_age"] if values.get("age") in ("0-12", "13-17") else []
            rows.append({
                "task_id": f"{kind}:{clip['clip_id']}", "kind": kind, "batch_id": f"{kind}-2026-01-01",
                "clip_id": clip["clip_id"], "video_id": clip["video_id"], "identity_id": clip.get("identity_id"),
                "source": clip.get("source"), "media_uri": clip["crop_uri"], "before_uri": None, "fps": fps,
                "frame_index": index, "frame_t": [i / fps for i in index], "fields": list(fields),
                "model_values": json.dumps({k: list(v) if isinstance(v, (list, tuple)) else v for k, v in values.items()}),
                "flags": flags, "priority": float(len(flags)), "lot_size": len(clips), "sample_rank": rank,
                "in_sample": rank < SAMPLE, "created_at": now})
    return rows


def write_review_tasks(lake: str | Path, clips: list[dict[str, Any]], seed: int = 7) -> str:
    """Write (overwrite) ``<lake>/gold/review_tasks`` from ``clips``; returns the table's path."""
    from deltalake import write_deltalake

    path = f"{str(lake).rstrip('/')}/gold/review_tasks"
    write_deltalake(path, pa.Table.from_pylist(task_rows(clips, seed), schema=TASK_SCHEMA), mode="overwrite")
    return path


SQUARE_TALKING = ("lp_d11.mp4", "lp_d18.mp4", "lp_d19.mp4", "lp_d20.mp4", "retalking_face5.mp4", "sadtalker_aoc.mp4")
_ATTRS = ({"ethnicity": "White", "appearance": ["Male", "Short hair"], "lighting": ["Bright"], "age": 35.0,
           "action": ["Talk"], "emotion": "Neutral"},
          {"ethnicity": "Asian", "appearance": ["Female", "Long hair", "Black hair"], "lighting": ["Natural", "Daylight"],
           "age": 24.0, "action": ["Talk", "Smile"], "emotion": "Happy"},
          {"ethnicity": None, "appearance": [], "lighting": None, "age": None, "action": None, "emotion": None})


def shared_clips(videos: Path, names: tuple[str, ...] = SQUARE_TALKING) -> list[dict[str, Any]]:
    """Clip rows over whole shared videos (the file is the ``crop_uri``), with valid attribute
    values, some missing (the model said nothing)."""
    import av

    clips = []
    for k, name in enumerate(names):
        with av.open(str(videos / name)) as container:
            stream = container.streams.video[0]
            fps, frames = float(stream.average_rate), stream.frames
        clips.append({"clip_id": Path(name).stem, "video_id": f"v{k}", "identity_id": f"id{k % 3}",
                      "source": "shared", "crop_uri": str(videos / name), "fps": fps, "duration_s": frames / fps,
                      **_ATTRS[k % len(_ATTRS)]})
    return clips
