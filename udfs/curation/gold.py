"""Gold selection as pure pandas: declared rules, the per-identity cap, a stable identity-disjoint split.

Rules are data (``{column, min, max}`` or ``{column, is_null: true|false}``). A clip reaches gold
when it passes every rule whose input row is good; each failed rule becomes a quarantine row with
the measured value and the threshold. Among passing clips, each identity keeps its best
``per_identity_max_clips`` by ``rank_by``. Splits are by identity and sticky: an identity that
already has published clips keeps its split; new identities fill the test split (in a seeded
hash order) until it holds its target size.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from facevid.udfs.base import validate


@dataclass(frozen=True)
class Rule:
    """``min <= column <= max`` (either bound optional), or ``column IS [NOT] NULL`` (``is_null``);
    with ``when: <boolean column>`` the rule judges only clips where that column is true (e.g. the
    lip-sync rule applies to clips with speech; the others pass it)."""

    name: str
    column: str
    min: float | None = None
    max: float | None = None
    is_null: bool | None = None
    when: str | None = None

    @classmethod
    def parse(cls, name: str, decl: Any) -> Rule:
        if not isinstance(decl, dict) or "column" not in decl:
            raise ValueError(f"gold.rules.{name}: needs `column` and `min`/`max` or `is_null`")
        extra = sorted(str(k) for k in set(decl) - {"column", "min", "max", "is_null", "when"})
        if extra:
            raise ValueError(f"gold.rules.{name}: unknown key(s) {', '.join(extra)}")
        rule = cls(name=name, **decl)
        if rule.min is None and rule.max is None and rule.is_null is None:
            raise ValueError(f"gold.rules.{name}: give `min`, `max` or `is_null`")
        if rule.is_null is not None and (rule.min is not None or rule.max is not None):
            raise ValueError(f"gold.rules.{name}: `is_null` cannot be combined with bounds")
        return rule

    @property
    def threshold(self) -> str:
        if self.is_null is not None:
            return "null" if self.is_null else "not null"
        parts = ([f">= {self.min:g}"] if self.min is not None else []) + (
            [f"<= {self.max:g}"] if self.max is not None else [])
        return " and ".join(parts) + (f" when {self.when}" if self.when else "")

    def applies(self, clips: pd.DataFrame) -> pd.Series:
        """Clips the rule judges: all, or those whose ``when`` column is true."""
        if not self.when:
            return pd.Series(True, index=clips.index)
        if self.when not in clips:
            raise ValueError(f"gold.rules.{self.name}: `when` column {self.when!r} is in none of gold's inputs")
        return clips[self.when].eq(True)

    def passes(self, values: pd.Series) -> pd.Series:
        if self.is_null is not None:
            return values.isna() if self.is_null else values.notna()
        num = pd.to_numeric(values, errors="coerce")
        ok = num.notna()
        if self.min is not None:
            ok &= num >= self.min
        if self.max is not None:
            ok &= num <= self.max
        return ok


@dataclass
class SplitParams:
    """Identity-disjoint split: the test split's target is ``min(test_clips, max_test_fraction * gold)``."""

    test_clips: int = 2048
    max_test_fraction: float = 0.2
    seed: int = 7

    def __post_init__(self) -> None:
        validate("gold.split", [
            (self.test_clips >= 0, f"test_clips must be >= 0, got {self.test_clips}"),
            (0 <= self.max_test_fraction <= 1, f"max_test_fraction must be in [0, 1], got {self.max_test_fraction}"),
        ])


@dataclass
class Selection:
    """Result of ``select``: the gold rows and one quarantine row per (clip, failed rule)."""

    gold: pd.DataFrame
    rejected: pd.DataFrame = field(default_factory=pd.DataFrame)


def parse_rank(rank_by: list[str]) -> tuple[list[str], list[bool]]:
    """``["sharpness_face desc", "clip_id"]`` -> columns and ascending flags."""
    cols, asc = [], []
    for item in rank_by:
        parts = str(item).split()
        if len(parts) not in (1, 2) or (len(parts) == 2 and parts[1].lower() not in ("asc", "desc")):
            raise ValueError(f"gold.rank_by: {item!r} is not `<column> [asc|desc]`")
        cols.append(parts[0])
        asc.append(len(parts) == 1 or parts[1].lower() == "asc")
    return cols, asc


def _fmt(value: Any) -> str | None:
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA:
        return "null"
    if isinstance(value, float | np.floating):
        return f"{float(value):.4g}"
    return str(value)


def apply_rules(clips: pd.DataFrame, rules: list[Rule], ready: pd.DataFrame) -> tuple[pd.Series, pd.DataFrame]:
    """Which clips pass every rule, and the failures as rows (clip_id, video_id, rule, value, threshold).

    ``ready`` holds one boolean column per rule (same index as ``clips``): False where the rule's
    input stage has no good row for the clip (its own quarantine row explains), so the rule is not
    judged there; such a clip cannot pass either."""
    passed = pd.Series(True, index=clips.index)
    failures = []
    for rule in rules:
        values = clips[rule.column] if rule.column in clips else pd.Series(None, index=clips.index, dtype=object)
        applies = rule.applies(clips)
        ok = rule.passes(values) | ~applies
        judged = ready[rule.name]
        bad = judged & ~ok
        passed &= ok & judged
        if bad.any():
            failures.append(pd.DataFrame({
                "clip_id": clips.loc[bad, "clip_id"], "video_id": clips.loc[bad, "video_id"],
                "rule": rule.name, "value": values[bad].map(_fmt), "threshold": rule.threshold,
            }))
    cols = ["clip_id", "video_id", "rule", "value", "threshold"]
    return passed, pd.concat(failures, ignore_index=True) if failures else pd.DataFrame(columns=cols)


def cap_per_identity(passing: pd.DataFrame, max_clips: int | None, rank_by: list[str]) -> pd.Series:
    """Rank of each clip within its identity (1 = best by ``rank_by``); ``max_clips=None`` = no cap."""
    cols, asc = parse_rank(rank_by)
    missing = [c for c in cols if c not in passing]
    if missing:
        raise ValueError(f"gold.rank_by: unknown column(s) {', '.join(missing)}")
    ordered = passing.sort_values(cols, ascending=asc, na_position="last", kind="stable")
    return ordered.groupby("identity_id", sort=False).cumcount().add(1).reindex(passing.index)


def _hash_order(ids: list[str], seed: int) -> list[str]:
    return sorted(ids, key=lambda i: hashlib.sha1(f"{seed}:{i}".encode()).hexdigest())


def assign_splits(gold: pd.DataFrame, previous: pd.DataFrame | None, params: SplitParams) -> pd.Series:
    """Split per clip: identities seen in ``previous`` gold keep their split (majority, should an
    identity re-cluster merge two); new identities go to test in hash order while test is short."""
    known: dict[str, str] = {}
    if previous is not None and len(previous):
        votes = previous.groupby(["identity_id", "split"]).size().reset_index(name="n")
        votes = votes.sort_values(["identity_id", "n", "split"], ascending=[True, False, True])
        known = dict(votes.drop_duplicates("identity_id")[["identity_id", "split"]].itertuples(index=False))
    sizes = gold.groupby("identity_id").size()
    target = min(params.test_clips, math.floor(params.max_test_fraction * len(gold)))
    split = {i: known[i] for i in sizes.index if i in known}
    test = int(sum(sizes[i] for i, s in split.items() if s == "test"))
    for ident in _hash_order([i for i in sizes.index if i not in known], params.seed):
        if test + sizes[ident] <= target:
            split[ident] = "test"
            test += int(sizes[ident])
        else:
            split[ident] = "train"
    return gold["identity_id"].map(split)
