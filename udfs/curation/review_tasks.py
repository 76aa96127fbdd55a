"""Review tasks from gold as pure pandas: which clip is seen how, on which frames, flagged first.

Per gold clip (paper, sec. C): a ``static`` task (the person and scene on the FIRST frame: the
vocabulary's static attributes and the age group), a ``dynamic`` task (what happens, on 3 random
non-consecutive frames, seeded per clip so every run draws the same ones) and, for a restored clip, a
``restoration`` task (its first frame before and after; the paper checked every restored video).

Model values are what the models said, also after a reviewer corrected gold (gold keeps them in
``model_annotations``). Flags put clips in front of the queue: ``eye_artifact`` (the eye screen
flagged the restoration), ``occluded`` (``facevid.udfs.curation.occlusion``), ``minor_age`` (the age
score is under ``minor_age``: a face dataset must not hold minors by mistake), ``age_boundary``
(within ``age_margin`` years of an age group's bound). Tasks come in labelling batches (lots) of
one kind published on one day; ``in_sample`` marks the batch's ISO 2859-1 sample
(``facevid.udfs.curation.sampling``) in a seeded order that adding tasks does not reshuffle.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from facevid.udfs.annotate.frames import frame_plan
from facevid.udfs.base import validate
from facevid.udfs.curation.occlusion import OcclusionParams
from facevid.udfs.curation.review_schema import AGE_GROUPS, KINDS, RESTORATION_FIELD, TASK_COLUMNS, age_group

FLAG_WEIGHTS = {"eye_artifact": 4.0, "minor_age": 3.0, "occluded": 2.0, "age_boundary": 1.0}
_AGE_BOUNDS = (13, 18, 30, 45, 60)


@dataclass
class ReviewParams:
    """What is reviewed, how batches are sampled, and what flags a clip."""

    kinds: list[str] = field(default_factory=lambda: list(KINDS))
    static_fields: list[str] = field(default_factory=lambda: ["ethnicity", "appearance", "lighting", "age"])
    dynamic_fields: list[str] = field(default_factory=lambda: ["action", "emotion"])
    dynamic_frames: int = 3
    seed: int = 7
    aql: float = 1.0
    inspection_level: str = "II"
    minor_age: float = 18.0
    age_margin: float = 2.0
    occlusion: Any = field(default_factory=dict)
    # the vocabulary file of the fields' options (default: the packaged DH-FaceVid-1K table)
    vocabulary_path: str | None = None

    def __post_init__(self) -> None:
        self.occlusion = (self.occlusion if isinstance(self.occlusion, OcclusionParams)
                          else OcclusionParams(**(self.occlusion or {})))
        from facevid.udfs.annotate.vocabulary import ATTRIBUTES
        from facevid.udfs.curation.sampling import single_plan

        known = (*ATTRIBUTES, "age")
        bad = [f for f in (*self.static_fields, *self.dynamic_fields) if f not in known]
        validate("review", [
            (bool(self.kinds) and set(self.kinds) <= set(KINDS), f"kinds must be a subset of {KINDS}, got {self.kinds}"),
            (not bad, f"unknown field(s) {bad}; fields are {', '.join(known)}"),
            (2 <= self.dynamic_frames <= 8, f"dynamic_frames must be in [2, 8], got {self.dynamic_frames}"),
            (0 <= self.age_margin <= 10, f"age_margin must be in [0, 10], got {self.age_margin}"),
        ])
        single_plan(100, self.aql, self.inspection_level)  # a non-standard AQL or level fails here


def _value(v: Any) -> Any:
    """A gold cell as a JSON value (arrays as lists, NaN as null)."""
    if v is None:
        return None
    if isinstance(v, float) and math.isnan(v):
        return None
    if isinstance(v, (list, tuple, np.ndarray)):
        return [str(x) for x in v]
    return v.item() if isinstance(v, np.generic) else v


def model_values(row: dict[str, Any], fields: list[str]) -> dict[str, Any]:
    """The models' values of ``fields`` for a gold row: the original value where a reviewer
    changed gold (``model_annotations``), else gold's own; ``age`` as its ``AGE_GROUPS`` label."""
    original = json.loads(row.get("model_annotations") or "{}")
    out: dict[str, Any] = {}
    for f in fields:
        if f in original:
            out[f] = original[f]
        elif f == "age":
            out[f] = age_group(_value(row.get("age")))
        elif f == RESTORATION_FIELD:
            out[f] = "reject" if bool(row.get("eye_flagged")) else "accept"
        else:
            out[f] = _value(row.get(f))
    return out


def dynamic_frames(n_frames: int, k: int, seed: int, clip_id: str) -> list[int]:
    """``k`` sorted random frame numbers, no two consecutive, the same for the same seed and clip:
    the random frames of the captioner's plan (``facevid.udfs.annotate.frames.frame_plan``, keyed by
    the clip), so they never include the first frame the static task shows; a clip too short for
    ``k`` gets fewer, and one of under 3 frames its first frame."""
    return frame_plan(max(int(n_frames), 1), k, seed, clip_id)[1:] or [0]


def age_flags(age: Any, minor_age: float, margin: float) -> list[str]:
    a = _value(age)
    if a is None or not math.isfinite(float(a)):
        return []
    flags = ["minor_age"] if float(a) < minor_age else []
    if margin > 0 and min(abs(float(a) - b) for b in _AGE_BOUNDS) < margin:
        flags.append("age_boundary")
    return flags


def build_tasks(gold: pd.DataFrame, signals: pd.DataFrame | None, params: ReviewParams,
                previous: pd.DataFrame | None, now: pd.Timestamp) -> pd.DataFrame:
    """``gold.review_tasks`` (``TASK_COLUMNS``) for the ``gold`` clips. ``signals``: ``clip_id`` and
    ``occlusion``/``occluded`` per clip (None: no occlusion flags). ``previous``: the current tasks,
    whose ``created_at`` is kept."""
    occluded = {} if signals is None else dict(zip(signals["clip_id"], signals["occluded"].fillna(False),
                                                   strict=True))
    rows: list[dict[str, Any]] = []
    for r in gold.to_dict("records"):
        clip, fps = str(r["clip_id"]), float(_value(r.get("fps")) or 25.0)
        base_flags = (["occluded"] if occluded.get(clip) else []) + age_flags(r.get("age"), params.minor_age,
                                                                               params.age_margin)
        published = pd.Timestamp(r.get("published_at") or now)
        for kind in params.kinds:
            before = None
            if kind == "restoration":
                if not _value(r.get("restored_uri")):
                    continue
                fields, frames, media = [RESTORATION_FIELD], [0], r["restored_uri"]
                before = r.get("unrestored_uri") or r.get("crop_uri")
                flags = ["eye_artifact"] if bool(r.get("eye_flagged")) else []
            elif kind == "static":
                fields, frames, media, flags = list(params.static_fields), [0], r["crop_uri"], list(base_flags)
            else:
                fields = list(params.dynamic_fields)
                frames = dynamic_frames(_value(r.get("n_frames")) or 1, params.dynamic_frames, params.seed, clip)
                media, flags = r["crop_uri"], [f for f in base_flags if f == "occluded"]
            rows.append({
                "task_id": f"{kind}:{clip}", "kind": kind, "batch_id": f"{kind}-{published:%Y-%m-%d}",
                "clip_id": clip, "video_id": r.get("video_id"), "identity_id": r.get("identity_id"),
                "source": r.get("source"), "media_uri": media, "before_uri": before, "fps": fps,
                "frame_index": frames, "frame_t": [round(i / fps, 6) for i in frames], "fields": fields,
                "model_values": json.dumps(model_values(r, fields), sort_keys=True), "flags": flags,
                "priority": float(sum(FLAG_WEIGHTS[f] for f in flags)),
            })
    tasks = pd.DataFrame(rows, columns=[c for c in TASK_COLUMNS if c not in
                                        ("lot_size", "sample_rank", "in_sample", "created_at")])
    tasks = _sample(tasks, params)
    created = {} if previous is None or not len(previous) else dict(zip(previous["task_id"], previous["created_at"],
                                                                       strict=True))
    tasks["created_at"] = [created.get(t, now) for t in tasks["task_id"]]
    return tasks[list(TASK_COLUMNS)].sort_values("task_id", ignore_index=True)


def _sample(tasks: pd.DataFrame, params: ReviewParams) -> pd.DataFrame:
    """Lot size, seeded sample rank and ``in_sample`` per labelling batch."""
    from facevid.udfs.curation.sampling import sample_order, single_plan

    tasks = tasks.copy()
    tasks["lot_size"], tasks["sample_rank"], tasks["in_sample"] = 0, 0, False
    for _, idx in tasks.groupby("batch_id").groups.items():
        ids = tasks.loc[idx, "task_id"].tolist()
        plan = single_plan(len(ids), params.aql, params.inspection_level)
        ranks = sample_order(ids, params.seed)
        tasks.loc[idx, "lot_size"] = len(ids)
        tasks.loc[idx, "sample_rank"] = ranks
        tasks.loc[idx, "in_sample"] = [k < plan.sample_size for k in ranks]
    return tasks


__all__ = ["AGE_GROUPS", "ReviewParams", "build_tasks", "dynamic_frames", "model_values"]
