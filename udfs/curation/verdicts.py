"""Reviewers' verdicts applied to gold as pure pandas: reviewed values over model values.

``review.verdicts`` is append-only; the latest verdict per (clip, field) wins (by ``reviewed_at``,
then ``verdict_id``), so a second look corrects the first without rewriting it. For an attribute
field, gold takes the reviewer's value (``accept`` keeps the model's, ``correct`` replaces it),
lists ``reviewed_fields`` and keeps the models' original values of the changed fields in
``model_annotations`` (JSON), so gold says which value is whose. ``age`` is gold's ``age_group``.

Restoration: a restored clip publishes its restored file unless the eye screen flagged it and no
reviewer accepted it yet (``on_flag: fallback`` publishes the unrestored crop meanwhile; ``exclude``
keeps it out until reviewed), or a reviewer rejected it (``on_reject: fallback`` publishes the
unrestored crop; ``exclude`` takes the clip out of gold, quarantined as ``gold.restoration``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pandas as pd

from facevid.udfs.base import validate
from facevid.udfs.curation.acceptance import latest_verdicts
from facevid.udfs.curation.review_schema import RESTORATION_FIELD, age_group

POLICIES = ("fallback", "exclude")
RESTORATION_STATES = ("none", "restored", "pending", "rejected")


@dataclass
class RestorationPolicy:
    """What gold publishes for a flagged or rejected restoration."""

    on_flag: str = "fallback"
    on_reject: str = "fallback"

    def __post_init__(self) -> None:
        validate("gold.restoration", [
            (self.on_flag in POLICIES, f"on_flag must be one of {POLICIES}, got {self.on_flag!r}"),
            (self.on_reject in POLICIES, f"on_reject must be one of {POLICIES}, got {self.on_reject!r}"),
        ])


def latest(verdicts: pd.DataFrame | None) -> pd.DataFrame:
    """One row per (clip_id, field): the latest verdict (``acceptance.latest_verdicts``)."""
    if verdicts is None or not len(verdicts):
        return pd.DataFrame(columns=["clip_id", "field", "verdict", "reviewer_value", "model_value", "reviewer"])
    return latest_verdicts(verdicts)


def apply_verdicts(gold: pd.DataFrame, verdicts: pd.DataFrame, many: set[str]) -> pd.DataFrame:
    """``gold`` with the latest verdicts' values in their columns (``many``: list-valued attributes),
    plus ``age_group``, ``reviewed_fields`` (sorted) and ``model_annotations`` (JSON of the models'
    values the reviewers changed)."""
    gold = gold.copy()
    gold["age_group"] = gold["age"].map(age_group) if "age" in gold else None
    last = latest(verdicts)
    last = last[last["field"] != RESTORATION_FIELD]
    reviewed: dict[str, list[str]] = {}
    original: dict[str, dict[str, Any]] = {}
    index = {c: i for i, c in enumerate(gold["clip_id"])}
    for v in last.to_dict("records"):
        i, f = index.get(v["clip_id"]), v["field"]
        if i is None:
            continue
        column = "age_group" if f == "age" else f
        if column not in gold.columns:
            continue
        reviewed.setdefault(v["clip_id"], []).append(f)
        if v["verdict"] != "correct":
            continue
        value = json.loads(v["reviewer_value"]) if v["reviewer_value"] is not None else None
        if f in many:
            value = list(value or [])
        original.setdefault(v["clip_id"], {})[f] = json.loads(v["model_value"]) if v["model_value"] else None
        gold.at[gold.index[i], column] = value
    gold["reviewed_fields"] = [sorted(reviewed.get(c, [])) for c in gold["clip_id"]]
    gold["model_annotations"] = [json.dumps(original[c], sort_keys=True) if c in original else None
                                 for c in gold["clip_id"]]
    return gold


def apply_restoration(clips: pd.DataFrame, verdicts: pd.DataFrame, policy: RestorationPolicy
                      ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Set ``crop_uri`` (the file gold publishes), ``unrestored_uri`` and ``restoration``
    (``RESTORATION_STATES``) per clip; returns ``(clips, excluded)``: the clips the policy keeps out
    (``clip_id``, ``video_id``, ``value``) for quarantine."""
    clips = clips.copy()
    clips["unrestored_uri"] = clips["crop_uri"]
    if "restored_uri" not in clips:
        clips["restored_uri"], clips["eye_flagged"] = None, None
    last = latest(verdicts)
    said = dict(zip(last.loc[last["field"] == RESTORATION_FIELD, "clip_id"],
                    last.loc[last["field"] == RESTORATION_FIELD, "reviewer_value"].map(
                        lambda s: json.loads(s) if s else None), strict=True))
    restored = clips["restored_uri"].notna() & clips["restored_uri"].astype(str).ne("")
    verdict = clips["clip_id"].map(said)
    rejected = restored & verdict.eq("reject")
    pending = restored & ~verdict.eq("accept") & ~rejected & clips["eye_flagged"].eq(True)
    publish = restored & ~rejected & ~pending
    clips["restoration"] = "none"
    clips.loc[publish, "restoration"] = "restored"
    clips.loc[pending, "restoration"] = "pending"
    clips.loc[rejected, "restoration"] = "rejected"
    clips.loc[publish, "crop_uri"] = clips.loc[publish, "restored_uri"]
    out = (rejected if policy.on_reject == "exclude" else False) | (pending if policy.on_flag == "exclude" else False)
    out = pd.Series(out, index=clips.index, dtype=bool)
    excluded = pd.DataFrame({"clip_id": clips.loc[out, "clip_id"], "video_id": clips.loc[out, "video_id"],
                             "value": clips.loc[out, "restoration"]})
    return clips, excluded
