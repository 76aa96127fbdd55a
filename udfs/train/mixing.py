"""Dataset mixes: gold clips selected by ``source`` in a declared ratio (the DH-FaceVid-1K paper mixes
its data 1:1 with public sets and evaluates across datasets at 1:3).

A mix is data (``MixSpec.from_dict``, validated at load: a bad key is a ``ValueError`` naming it)::

    {name: dh_celebv_1to1, split: train, policy: equal_duration, sources: [dh_facevid, celebv_text],
     seed: 7, max_hours: 100}
    {name: hdtf_celebvhq, split: test, policy: proportional, unit: clips, sources: {hdtf: 1, celebv_hq: 3},
     max_clips: 2048, seed: 7}

``select_mix(gold, spec)`` takes gold rows as a pandas frame (``clip_id``, ``source``, ``duration_s``,
``split`` when the mix names one, ``ethnicity`` optional) and returns the chosen clip ids and a report.

- **Amounts.** Each listed source ``i`` has an amount ``a_i`` of eligible clips (seconds for
  ``unit: duration``, clips for ``unit: clips``) and a weight ``w_i``: the declared one,
  1 for every source under ``equal_duration`` (the paper's 1:1 in hours), ``a_i`` itself for
  ``proportional`` with a list (each source's natural share). Targets are ``w_i * k`` with the
  largest ``k`` the sources allow (``min a_i / w_i``), lowered so that the total stays within
  ``max_hours`` / ``max_clips``. Clip targets are whole numbers (largest remainders).
- **Order.** Every clip's rank is a seeded 64-bit hash of its ``clip_id`` (blake2b of
  ``"<seed>:<clip_id>"``, ties by ``clip_id``): a source contributes the longest prefix of its
  rank order within its target, so the achieved duration is below the target by less than one
  clip. The order never depends on the other clips: a clip added to a source lands at its own
  rank; when that is before the cut it pushes out clips from the tail totalling less than its own
  duration plus one clip, else nothing changes. Adding clips only ever raises the targets (the
  limiting source grows, or stays), so earlier picks of the other sources stay.
- **Identities.** Sources are disjoint and gold already keeps an identity in one split and caps
  its clips, so a mix needs no identity logic of its own.
- **Missing sources.** A listed source without eligible clips is a ``ValueError`` unless the mix
  says ``missing: skip``; then it contributes zero, leaves the ratio of the others, and the
  report says so.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from facevid.udfs.base import validate

POLICIES = ("equal_duration", "proportional")
UNITS = ("duration", "clips")
SPLITS = ("train", "test")
MISSING = ("error", "skip")
KEYS = ("name", "split", "policy", "sources", "seed", "max_hours", "max_clips", "unit", "missing")
NOT_ANNOTATED = "(not annotated)"
EPS_S = 1e-6  # seconds: float slack when a prefix meets its target exactly


@dataclass(frozen=True)
class MixSpec:
    """A validated mix (see the module docstring); ``weights`` is None for natural shares."""

    name: str
    sources: tuple[str, ...]
    weights: tuple[float, ...] | None = None
    policy: str = "proportional"
    split: str | None = None
    seed: int = 0
    unit: str = "duration"
    max_hours: float | None = None
    max_clips: int | None = None
    missing: str = "error"
    prefix: str = "mixes"  # where the declaration lives, for messages (``mixes.<name>.<key>``)

    @classmethod
    def from_dict(cls, decl: Mapping[str, Any], name: str | None = None, prefix: str = "mixes") -> MixSpec:
        """Validate a declaration (``name`` from its key in a ``mixes:`` block, or its ``name``)."""
        if not isinstance(decl, Mapping):
            raise ValueError(f"{prefix}.{name or '?'}: a mix is a mapping, got {type(decl).__name__}")
        name = name if name is not None else decl.get("name")
        where = f"{prefix}.{name}"
        validate(prefix, [(isinstance(name, str) and name != "", f"{name}.name: a non-empty string is required")])
        unknown = sorted(set(decl) - set(KEYS))
        validate(where, [(not unknown, f"{', '.join(map(str, unknown))}: unknown key (known: {', '.join(KEYS)})"),
                         (decl.get("name", name) == name, f"name: {decl.get('name')!r} differs from its key {name!r}")])
        policy = decl.get("policy", "proportional")
        unit = decl.get("unit", "duration")
        split = decl.get("split")
        seed = decl.get("seed", 0)
        missing = decl.get("missing", "error")
        max_hours, max_clips = decl.get("max_hours"), decl.get("max_clips")
        validate(where, [
            (policy in POLICIES, f"policy: {policy!r} is not one of {', '.join(POLICIES)}"),
            (unit in UNITS, f"unit: {unit!r} is not one of {', '.join(UNITS)}"),
            (split is None or split in SPLITS, f"split: {split!r} is not one of {', '.join(SPLITS)} or null"),
            (isinstance(seed, int) and not isinstance(seed, bool), f"seed: an integer is required, got {seed!r}"),
            (missing in MISSING, f"missing: {missing!r} is not one of {', '.join(MISSING)}"),
            (policy != "equal_duration" or unit == "duration",
             "unit: equal_duration balances hours; for equal clip counts use policy proportional with unit clips"),
            (max_hours is None or (_number(max_hours) and max_hours > 0),
             f"max_hours: a positive number is required, got {max_hours!r}"),
            (max_clips is None or (isinstance(max_clips, int) and not isinstance(max_clips, bool) and max_clips > 0),
             f"max_clips: a positive integer is required, got {max_clips!r}"),
            (max_hours is None or unit == "duration", "max_hours: caps a duration mix; a clips mix takes max_clips"),
            (max_clips is None or unit == "clips", "max_clips: caps a clips mix; a duration mix takes max_hours"),
        ])
        sources, weights = _sources(where, decl.get("sources"))
        if policy == "equal_duration" and weights is not None:
            validate(where, [(len(set(weights)) == 1, "sources: equal_duration gives every source the same hours; "
                              f"the weights {dict(zip(sources, weights, strict=True))} differ (use policy proportional)")])
        if policy == "equal_duration":
            weights = (1.0,) * len(sources)
        return cls(name=name, sources=sources, weights=weights, policy=policy, split=split, seed=seed, unit=unit,
                   max_hours=None if max_hours is None else float(max_hours), max_clips=max_clips, missing=missing,
                   prefix=prefix)

    @property
    def where(self) -> str:
        return f"{self.prefix}.{self.name}"

    @property
    def cap(self) -> float | None:
        """The total cap in the mix's unit (seconds or clips), or None."""
        return self.max_hours * 3600.0 if self.max_hours is not None else self.max_clips


def _number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def _sources(where: str, raw: Any) -> tuple[tuple[str, ...], tuple[float, ...] | None]:
    """``sources`` as names and weights (None for a list)."""
    if isinstance(raw, Mapping):
        names = tuple(raw)
        bad = [f"{k}: {v!r}" for k, v in raw.items() if not (_number(v) and v > 0)]
        validate(where, [(len(names) > 0, "sources: at least one source is required"),
                         (all(isinstance(k, str) and k for k in names), "sources: names must be non-empty strings"),
                         (not bad, f"sources: weights must be positive numbers ({', '.join(bad)})")])
        return names, tuple(float(raw[k]) for k in names)
    validate(where, [(isinstance(raw, list | tuple) and len(raw) > 0,
                      f"sources: a list of source names or a mapping source -> weight is required, got {raw!r}")])
    dupes = sorted({s for s in raw if list(raw).count(s) > 1}, key=str)
    validate(where, [(all(isinstance(s, str) and s for s in raw), "sources: names must be non-empty strings"),
                     (not dupes, f"sources: {', '.join(map(str, dupes))} listed twice")])
    return tuple(raw), None


def load_mixes(block: Mapping[str, Any] | None, prefix: str = "mixes") -> dict[str, MixSpec]:
    """Every mix of a ``mixes:`` block (name -> declaration), validated."""
    if block is None:
        return {}
    validate(prefix, [(isinstance(block, Mapping), f": a mapping name -> mix is required, got {type(block).__name__}")])
    return {name: MixSpec.from_dict(decl, name=str(name), prefix=prefix) for name, decl in block.items()}


def rank_keys(clip_ids: Any, seed: int) -> np.ndarray:
    """The seeded rank of each clip id: a 64-bit blake2b hash of ``"<seed>:<clip_id>"``."""
    return np.array([int.from_bytes(hashlib.blake2b(f"{seed}:{c}".encode(), digest_size=8).digest(), "big")
                     for c in clip_ids], dtype=np.uint64)


@dataclass
class MixResult:
    """The chosen clips (in seeded rank order, sources interleaved) and what the mix achieved."""

    spec: MixSpec
    clip_ids: list[str]
    report: pd.DataFrame  # one row per listed source (see ``select_mix``)
    ethnicity: pd.DataFrame  # one row per source x ethnicity of the eligible clips
    notes: list[str] = field(default_factory=list)

    def params(self) -> dict[str, Any]:
        """Flat facts to log (MLflow params)."""
        s = self.spec
        hours = float(self.report["hours"].sum())
        return {"mix": s.name, "mix_policy": s.policy, "mix_unit": s.unit, "mix_split": s.split or "all",
                "mix_seed": s.seed, "mix_sources": ",".join(s.sources), "mix_clips": len(self.clip_ids),
                "mix_hours": round(hours, 6)}


def _eligible(gold: pd.DataFrame, spec: MixSpec) -> pd.DataFrame:
    need = ["clip_id", "source", "duration_s"] + (["split"] if spec.split else [])
    missing = [c for c in need if c not in gold.columns]
    if missing:
        raise ValueError(f"{spec.where}: gold lacks column(s) {', '.join(missing)}")
    rows = gold[gold["source"].isin(spec.sources)]
    if spec.split:
        rows = rows[rows["split"] == spec.split]
    rows = rows.copy()
    dupes = rows.loc[rows["clip_id"].duplicated(), "clip_id"]
    if len(dupes):
        raise ValueError(f"{spec.where}: gold has clip_id {dupes.iloc[0]!r} more than once")
    dur = pd.to_numeric(rows["duration_s"], errors="coerce")
    bad = rows.loc[~(np.isfinite(dur) & (dur > 0)), "clip_id"]
    if len(bad):
        raise ValueError(f"{spec.where}: clip {bad.iloc[0]!r} has no positive duration_s ({len(bad)} such clips)")
    rows["duration_s"] = dur.astype(float)
    rows["_rank"] = rank_keys(rows["clip_id"], spec.seed)
    eth = rows["ethnicity"] if "ethnicity" in rows.columns else pd.Series(None, index=rows.index, dtype=object)
    rows["_ethnicity"] = eth.where(eth.notna() & (eth.astype(str).str.strip() != ""), NOT_ANNOTATED).astype(str)
    return rows.sort_values(["_rank", "clip_id"], kind="stable")


def _whole(targets: np.ndarray, available: np.ndarray) -> np.ndarray:
    """Clip targets as whole numbers summing to ``floor(sum)`` (largest remainders, then listed order)."""
    total = math.floor(targets.sum() + 1e-9)
    base = np.minimum(np.floor(targets + 1e-9), available).astype(int)
    order = sorted(range(len(targets)), key=lambda i: (-(targets[i] - base[i]), i))
    for i in order:
        if base.sum() >= total:
            break
        if base[i] < available[i]:
            base[i] += 1
    return base


def select_mix(gold: pd.DataFrame, spec: MixSpec) -> MixResult:
    """Choose gold clips for ``spec``. ``report`` columns: source, weight, target_share, target (hours
    or clips), clips, hours, achieved_share (in the unit), available_clips, available_hours,
    limiting (this source bounded the mix), note. ``ethnicity`` columns: source, ethnicity
    (``(not annotated)`` when null), available_clips, clips, hours, clip_share, hour_share (within
    the source's chosen clips). Raises ``ValueError`` for a listed source without eligible clips
    (unless ``missing: skip``) or bad gold rows."""
    rows = _eligible(gold, spec)
    by_src = {s: rows[rows["source"] == s] for s in spec.sources}
    in_unit = (lambda d: float(d["duration_s"].sum())) if spec.unit == "duration" else (lambda d: float(len(d)))
    avail = np.array([in_unit(by_src[s]) for s in spec.sources])
    where_split = f" in split {spec.split}" if spec.split else ""
    empty = [s for s, a in zip(spec.sources, avail, strict=True) if a == 0]
    notes: list[str] = []
    if empty and spec.missing == "error":
        present = sorted(gold["source"].dropna().unique().tolist()) if "source" in gold.columns else []
        raise ValueError(f"{spec.where}.sources: {', '.join(empty)} has no clips{where_split} in gold "
                         f"(sources there: {', '.join(map(str, present)) or 'none'}; declare missing: skip "
                         "to mix the others)")
    if empty:
        notes.append(f"no clips{where_split} for {', '.join(empty)}: skipped (missing: skip), contributes 0")
    active = avail > 0
    if not active.any():
        raise ValueError(f"{spec.where}.sources: none of {', '.join(spec.sources)} has clips{where_split} in gold")
    w = np.array(spec.weights, float) if spec.weights is not None else avail.copy()
    w = np.where(active, w, 0.0)
    ratio = np.where(active, avail / np.where(w > 0, w, 1.0), np.inf)
    k = float(ratio.min())
    limiting = active & np.isclose(ratio, k, rtol=1e-12, atol=0)
    fmt = (lambda a: f"{a / 3600:.4g} h") if spec.unit == "duration" else (lambda a: f"{int(a)} clips")
    if spec.cap is not None and k * w.sum() > spec.cap:
        k = spec.cap / w.sum()
        limiting[:] = False
        notes.append(f"capped at {fmt(spec.cap)} ({'max_hours' if spec.unit == 'duration' else 'max_clips'})")
    elif spec.cap is not None:
        lim = ", ".join(f"{s} ({fmt(a)}{where_split})" for s, a, m in zip(spec.sources, avail, limiting,
                                                                        strict=True) if m)
        notes.append(f"asked {fmt(spec.cap)}, got {fmt(k * w.sum())}: limited by {lim}")
    targets = w * k
    if spec.unit == "clips":
        targets = _whole(targets, avail).astype(float)
    picks = []
    for s, t in zip(spec.sources, targets, strict=True):
        d = by_src[s]
        n = int(t) if spec.unit == "clips" else int(np.searchsorted(d["duration_s"].cumsum().to_numpy(), t + EPS_S,
                                                                     side="right"))
        picks.append(d.iloc[:n])
    chosen = pd.concat(picks).sort_values(["_rank", "clip_id"], kind="stable")
    achieved = np.array([in_unit(p) for p in picks])
    to_unit = 3600.0 if spec.unit == "duration" else 1.0
    report = pd.DataFrame({
        "source": list(spec.sources), "weight": w, "target_share": w / w.sum(), "target": targets / to_unit,
        "clips": [len(p) for p in picks], "hours": [p["duration_s"].sum() / 3600 for p in picks],
        "achieved_share": achieved / achieved.sum() if achieved.sum() > 0 else np.zeros(len(picks)),
        "available_clips": [len(by_src[s]) for s in spec.sources],
        "available_hours": [by_src[s]["duration_s"].sum() / 3600 for s in spec.sources],
        "limiting": limiting, "note": ["no clips: skipped" if not a else "" for a in active]})
    return MixResult(spec=spec, clip_ids=chosen["clip_id"].tolist(), report=report,
                     ethnicity=_ethnicity(rows, chosen, spec.sources), notes=notes)


def _ethnicity(rows: pd.DataFrame, chosen: pd.DataFrame, sources: tuple[str, ...]) -> pd.DataFrame:
    cols = ["source", "ethnicity", "available_clips", "clips", "hours", "clip_share", "hour_share"]
    if rows.empty:
        return pd.DataFrame(columns=cols)
    avail = rows.groupby(["source", "_ethnicity"]).size().rename("available_clips")
    got = chosen.groupby(["source", "_ethnicity"]).agg(clips=("clip_id", "size"), seconds=("duration_s", "sum"))
    out = pd.concat([avail, got], axis=1).fillna(0).reset_index().rename(columns={"_ethnicity": "ethnicity"})
    out[["available_clips", "clips"]] = out[["available_clips", "clips"]].astype(int)
    out["hours"] = out.pop("seconds") / 3600
    per = out.groupby("source")[["clips", "hours"]].transform("sum")
    out["clip_share"] = (out["clips"] / per["clips"].where(per["clips"] > 0)).fillna(0.0)
    out["hour_share"] = (out["hours"] / per["hours"].where(per["hours"] > 0)).fillna(0.0)
    out["_order"] = out["source"].map({s: i for i, s in enumerate(sources)})
    out["_na"] = out["ethnicity"] == NOT_ANNOTATED
    return out.sort_values(["_order", "_na", "clips", "ethnicity"], ascending=[True, True, False, True],
                           ignore_index=True)[cols]
