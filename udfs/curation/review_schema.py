"""The human review loop's tables: what a review task and a verdict hold (shared by the stage that
builds ``gold.review_tasks``, the ``facevid review`` page that appends ``review.verdicts``, gold,
which applies verdicts, and the acceptance-sampling report).

A task is one clip seen one way (``KINDS``): ``restoration`` (the first frame before and after
restoration: accept or reject the restored file), ``static`` (attributes of the person and scene
on the first frame) and ``dynamic`` (what happens, on 3 random non-consecutive frames). Its fields
are reviewed one by one; each reviewed field is one verdict row. Verdicts are only ever appended:
the latest verdict per (clip, field) wins, so nothing is overwritten in place.
"""

from __future__ import annotations

import math

import pyarrow as pa

KINDS = ("restoration", "static", "dynamic")
VERDICTS = ("accept", "correct", "reject")  # reject: restoration only (the restored file is refused)
RESTORATION_FIELD = "restoration"
RESTORATION_OPTIONS = ("accept", "reject")
# Age groups a reviewer picks from (the quality stage's pluggable age score is shown as its group);
# the paper reviewed age among the static attributes. Bounds are [low, next low) years.
AGE_GROUPS = ("0-12", "13-17", "18-29", "30-44", "45-59", "60+")
_AGE_LOWS = (0, 13, 18, 30, 45, 60)

# gold.review_tasks (rebuilt by the review_tasks stage; task ids are stable across runs)
TASK_COLUMNS: dict[str, str] = {
    "task_id": "string",            # <kind>:<clip_id>
    "kind": "string",               # KINDS
    "batch_id": "string",           # the labelling batch (lot) for acceptance sampling: <kind>-<publish date>
    "clip_id": "string",
    "video_id": "string",
    "identity_id": "string",
    "source": "string",
    "media_uri": "string",          # the file whose frames are shown (restoration: the restored file)
    "before_uri": "string",         # restoration: the unrestored crop (else null)
    "fps": "double",
    "frame_index": "array<int>",    # frame numbers in media_uri (0 = first frame)
    "frame_t": "array<double>",     # the same frames in seconds from the file's first frame
    "fields": "array<string>",      # what the reviewer judges, in order
    "model_values": "string",       # JSON object: field -> the model's value (string, list or null)
    "flags": "array<string>",       # why the clip is queued early (occluded, eye_artifact, minor_age, ...)
    "priority": "double",           # higher first (flagged clips first)
    "lot_size": "int",              # tasks in the batch
    "sample_rank": "int",           # seeded random order within the batch (0 = first drawn)
    "in_sample": "boolean",         # sample_rank < the batch's ISO 2859-1 sample size
    "created_at": "timestamp",
}

# review.verdicts (append-only; one row per reviewed field)
VERDICT_SCHEMA = pa.schema([
    ("verdict_id", pa.string()),      # uuid4 hex
    ("task_id", pa.string()),
    ("kind", pa.string()),
    ("batch_id", pa.string()),
    ("clip_id", pa.string()),
    ("field", pa.string()),
    ("model_value", pa.string()),     # JSON
    ("reviewer_value", pa.string()),  # JSON (restoration: "accept" or "reject")
    ("verdict", pa.string()),         # VERDICTS
    ("reviewer", pa.string()),
    ("reviewed_at", pa.timestamp("us", tz="UTC")),
    ("tasks_version", pa.int64()),    # the gold.review_tasks Delta version the task was read from
    ("session_id", pa.string()),      # one page server run
])


def age_group(age: float | None) -> str | None:
    """The ``AGE_GROUPS`` label of an age in years (None for a missing or non-finite score)."""
    if age is None or not math.isfinite(float(age)):
        return None
    label = AGE_GROUPS[0]
    for low, name in zip(_AGE_LOWS, AGE_GROUPS, strict=True):
        if float(age) >= low:
            label = name
    return label
