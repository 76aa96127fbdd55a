"""Evaluation sets declared as data: held-out gold clips per dataset (``source``) and cross-dataset
sets in a declared clip ratio (the paper: 2,048 test videos per dataset; HDTF + CelebV-HQ at 1:3).

An evaluation set is a clips mix of ``facevid.udfs.train.mixing`` (same selection, order and
report) with test-set defaults::

    {name: cross_hdtf_celebvhq, sources: {hdtf: 1, celebv_hq: 3}, clips: 2048, seed: 7}

Keys: ``name``, ``sources`` (a mapping source -> weight, or a list: each source's natural share),
``split`` (default ``test``; null = every split), ``clips`` (the total, default 2048, capped by
what exists: the result's ``notes`` say so), ``seed`` (default 7), ``missing`` (error | skip).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd

from facevid.udfs.base import validate
from facevid.udfs.train.mixing import MixResult, MixSpec, select_mix

EVAL_CLIPS = 2048  # test videos per dataset in the paper
EVAL_SEED = 7
KEYS = ("name", "sources", "split", "clips", "seed", "missing")


def eval_set_spec(decl: Mapping[str, Any], name: str | None = None, prefix: str = "eval_sets") -> MixSpec:
    """Validate an evaluation set declaration into the clips mix that selects it."""
    if not isinstance(decl, Mapping):
        raise ValueError(f"{prefix}.{name or '?'}: an evaluation set is a mapping, got {type(decl).__name__}")
    name = name if name is not None else decl.get("name")
    unknown = sorted(set(decl) - set(KEYS))
    clips = decl.get("clips", EVAL_CLIPS)
    validate(f"{prefix}.{name}", [
        (not unknown, f"{', '.join(map(str, unknown))}: unknown key (known: {', '.join(KEYS)})"),
        (isinstance(clips, int) and not isinstance(clips, bool) and clips > 0,
         f"clips: a positive integer is required, got {clips!r}"),
    ])
    mix = {k: v for k, v in decl.items() if k != "clips"}
    mix.setdefault("split", "test")
    mix.setdefault("seed", EVAL_SEED)
    return MixSpec.from_dict({**mix, "policy": "proportional", "unit": "clips", "max_clips": clips},
                             name=name, prefix=prefix)


def load_eval_sets(block: Mapping[str, Any] | None, prefix: str = "eval_sets") -> dict[str, MixSpec]:
    """Every set of an ``eval_sets:`` block (name -> declaration), validated."""
    if block is None:
        return {}
    validate(prefix, [(isinstance(block, Mapping), f": a mapping name -> set is required, got {type(block).__name__}")])
    return {name: eval_set_spec(decl, name=str(name), prefix=prefix) for name, decl in block.items()}


def select_eval_set(gold: pd.DataFrame, spec: MixSpec | Mapping[str, Any]) -> MixResult:
    """The clips of one evaluation set (a declaration or a validated spec)."""
    return select_mix(gold, spec if isinstance(spec, MixSpec) else eval_set_spec(spec))


def per_source_eval_sets(gold: pd.DataFrame, clips: int = EVAL_CLIPS, seed: int = EVAL_SEED,
                         split: str = "test") -> dict[str, MixResult]:
    """One evaluation set per source in gold (``test_<source>``): up to ``clips`` of its ``split``."""
    has = gold if split is None else gold[gold["split"] == split]
    return {s: select_eval_set(gold, {"name": f"test_{s}", "sources": [s], "clips": clips, "seed": seed,
                                      "split": split})
            for s in sorted(has["source"].dropna().unique())}
