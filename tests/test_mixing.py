"""Dataset mixes and evaluation sets (facevid.udfs.train.mixing, facevid.udfs.metrics.evalsets): exact
hours on synthetic gold with known durations, ratios within one clip, seeded stability, adding clips,
bad declarations, and one mix over the real shared videos' gold split into two pseudo-sources."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from facevid.udfs.metrics.evalsets import (
    EVAL_CLIPS,
    eval_set_spec,
    load_eval_sets,
    per_source_eval_sets,
    select_eval_set,
)
from facevid.udfs.train.mixing import NOT_ANNOTATED, MixSpec, load_mixes, rank_keys, select_mix

ETHNICITIES = ["Asian", "White", None, "African"]


def gold(sizes: dict[str, tuple[int, float]], split_every: int = 0, start: int = 0) -> pd.DataFrame:
    """``{source: (clips, seconds each)}``; ethnicity cycles ``ETHNICITIES``; every ``split_every``-th
    clip is test (0: all train)."""
    rows = []
    for src, (n, dur) in sizes.items():
        for i in range(start, start + n):
            rows.append({"clip_id": f"{src}-{i:04d}", "source": src, "duration_s": dur, "identity_id": f"{src}-id{i // 3}",
                         "split": "test" if split_every and i % split_every == 0 else "train",
                         "ethnicity": ETHNICITIES[i % 4]})
    return pd.DataFrame(rows)


def mix(**decl) -> MixSpec:
    return MixSpec.from_dict({"name": "m", **decl})


def by_source(result) -> pd.DataFrame:
    return result.report.set_index("source")


# ---- the two policies: exact hours --------------------------------------------------------------

G3 = {"a": (12, 5.0), "b": (30, 4.0), "c": (10, 10.0)}  # 60 s, 120 s, 100 s


def test_equal_duration_gives_every_source_the_smallest_sources_hours() -> None:
    r = select_mix(gold(G3), mix(policy="equal_duration", sources=["a", "b", "c"], seed=3))
    rep = by_source(r)
    assert rep["hours"].tolist() == pytest.approx([60 / 3600] * 3)
    assert rep["clips"].tolist() == [12, 15, 6] and len(r.clip_ids) == 33 == len(set(r.clip_ids))
    assert rep["target"].tolist() == pytest.approx([60 / 3600] * 3) and rep["achieved_share"].tolist() == \
        pytest.approx([1 / 3] * 3)
    assert rep["limiting"].tolist() == [True, False, False]
    assert rep["available_hours"].tolist() == pytest.approx([60 / 3600, 120 / 3600, 100 / 3600])
    capped = select_mix(gold(G3), mix(policy="equal_duration", sources=["a", "b", "c"], max_hours=60 / 3600))
    assert by_source(capped)["hours"].tolist() == pytest.approx([20 / 3600] * 3)  # max_hours / n each
    assert by_source(capped)["clips"].tolist() == [4, 5, 2] and capped.notes == ["capped at 0.01667 h (max_hours)"]


def test_proportional_by_weights_and_by_natural_share() -> None:
    r = select_mix(gold(G3), mix(sources={"a": 1, "b": 3}))  # k = min(60/1, 120/3) = 40 s
    assert by_source(r)["hours"].tolist() == pytest.approx([40 / 3600, 120 / 3600])
    assert by_source(r)["clips"].tolist() == [8, 30] and by_source(r)["limiting"].tolist() == [False, True]
    assert by_source(r)["target_share"].tolist() == by_source(r)["achieved_share"].tolist() == [0.25, 0.75]
    natural = select_mix(gold(G3), mix(sources=["a", "b", "c"], max_hours=140 / 3600))  # half of 280 s
    assert by_source(natural)["hours"].tolist() == pytest.approx([30 / 3600, 60 / 3600, 50 / 3600])
    assert by_source(natural)["target_share"].tolist() == pytest.approx([60 / 280, 120 / 280, 100 / 280])
    whole = select_mix(gold(G3), mix(sources=["a", "b", "c"]))
    assert sorted(whole.clip_ids) == sorted(gold(G3)["clip_id"])  # no cap: every clip, natural shares
    clips = select_mix(gold(G3), mix(sources={"a": 1, "b": 3}, unit="clips", max_clips=20))
    assert by_source(clips)["clips"].tolist() == [5, 15] and by_source(clips)["target"].tolist() == [5, 15]


def test_ratios_hold_within_one_clip_on_varied_durations() -> None:
    rng = np.random.default_rng(11)
    g = pd.concat([gold({s: (n, 0.0)}) for s, n in (("x", 80), ("y", 150), ("z", 60))], ignore_index=True)
    g["duration_s"] = rng.uniform(2.0, 12.0, len(g)).round(3)
    totals = g.groupby("source")["duration_s"].sum()
    longest = g.groupby("source")["duration_s"].max()
    for spec in (mix(policy="equal_duration", sources=["x", "y", "z"], seed=5),
                 mix(sources={"x": 1, "y": 2, "z": 1}, seed=5), mix(sources={"x": 2, "z": 1}, max_hours=0.05)):
        r = select_mix(g, spec)
        chosen = g.set_index("clip_id").loc[r.clip_ids]
        got = chosen.groupby("source")["duration_s"].sum()
        k = min(totals[s] / w for s, w in zip(spec.sources, spec.weights, strict=True))
        if spec.max_hours:
            k = min(k, spec.max_hours * 3600 / sum(spec.weights))
        for s, w in zip(spec.sources, spec.weights, strict=True):
            assert w * k - longest[s] < got[s] <= w * k + 1e-6, (spec.name, s)
            assert by_source(r).at[s, "hours"] == pytest.approx(got[s] / 3600)
            assert by_source(r).at[s, "target"] == pytest.approx(w * k / 3600)


# ---- order and stability ------------------------------------------------------------------------


def test_seeded_order_is_stable_and_independent_of_row_order() -> None:
    g = gold(G3)
    spec = mix(policy="equal_duration", sources=["a", "b", "c"], seed=7)
    first = select_mix(g, spec)
    again = select_mix(g.sample(frac=1.0, random_state=4), spec)
    assert first.clip_ids == again.clip_ids
    keys = dict(zip(g["clip_id"], rank_keys(g["clip_id"], 7), strict=True))
    assert [keys[c] for c in first.clip_ids] == sorted(keys[c] for c in first.clip_ids)  # seeded rank order
    other = select_mix(g, mix(policy="equal_duration", sources=["a", "b", "c"], seed=8))
    assert set(other.clip_ids) != set(first.clip_ids) and len(other.clip_ids) == len(first.clip_ids)


def test_adding_clips_keeps_earlier_picks() -> None:
    spec = mix(policy="equal_duration", sources=["a", "b", "c"], seed=2)
    before = select_mix(gold(G3), spec)
    grown = pd.concat([gold(G3), gold({"a": (4, 5.0)}, start=100)], ignore_index=True)  # the limiting source grows
    after = select_mix(grown, spec)
    assert set(before.clip_ids) < set(after.clip_ids)
    assert by_source(after)["hours"].tolist() == pytest.approx([80 / 3600] * 3)
    # a non-limiting source grows: its target stays, new clips before the cut push out at most their own
    # duration (here whole clips of 4 s) and nothing else changes
    more_b = pd.concat([gold(G3), gold({"b": (5, 4.0)}, start=100)], ignore_index=True)
    after_b = select_mix(more_b, spec)
    dropped = set(before.clip_ids) - set(after_b.clip_ids)
    added = set(after_b.clip_ids) - set(before.clip_ids)
    assert all(c.startswith("b-01") for c in added) and len(dropped) == len(added) <= 5
    assert all(c.startswith("b-") for c in dropped)
    assert by_source(after_b)["hours"].tolist() == by_source(before)["hours"].tolist()


# ---- report, missing sources, bad input -------------------------------------------------------


def test_ethnicity_report_per_source() -> None:
    r = select_mix(gold(G3), mix(sources={"a": 1, "b": 3}))  # a: clips 0..11 of which 8 picked; b: all 30
    eth = r.ethnicity.set_index(["source", "ethnicity"])
    b = gold(G3).query("source == 'b'")["ethnicity"].fillna(NOT_ANNOTATED).value_counts()
    for e, n in b.items():
        assert eth.at[("b", e), "clips"] == eth.at[("b", e), "available_clips"] == n
        assert eth.at[("b", e), "hours"] == pytest.approx(n * 4.0 / 3600)
    a_ids = [c for c in r.clip_ids if c.startswith("a-")]
    a_eth = pd.Series([ETHNICITIES[int(c[-4:]) % 4] or NOT_ANNOTATED for c in a_ids]).value_counts()
    assert {e: eth.at[("a", e), "clips"] for e in a_eth.index} == a_eth.to_dict()
    assert eth.loc["a", "clip_share"].sum() == pytest.approx(1.0)
    assert list(r.ethnicity["ethnicity"])[3] == NOT_ANNOTATED  # per source: annotated first, then the unknown
    no_col = select_mix(gold(G3).drop(columns="ethnicity"), mix(sources=["a"]))
    assert no_col.ethnicity["ethnicity"].tolist() == [NOT_ANNOTATED] and no_col.ethnicity["clips"].tolist() == [12]


def test_a_source_without_clips_is_an_error_unless_skipped() -> None:
    with pytest.raises(ValueError, match=r"mixes\.m\.sources: hdtf has no clips in split test in gold \(sources "
                                         r"there: a, b, c"):
        select_mix(gold(G3, split_every=3), mix(split="test", sources={"a": 1, "hdtf": 1}))
    r = select_mix(gold(G3), mix(sources={"a": 1, "hdtf": 1, "b": 1}, missing="skip"))
    assert by_source(r)["clips"].tolist() == [12, 0, 15] and by_source(r).at["hdtf", "note"] == "no clips: skipped"
    assert "hdtf" in r.notes[0] and by_source(r)["hours"].tolist() == pytest.approx([60 / 3600, 0, 60 / 3600])


def test_bad_gold_rows_are_clear_errors() -> None:
    g = gold(G3)
    with pytest.raises(ValueError, match="gold lacks column.*duration_s"):
        select_mix(g.drop(columns="duration_s"), mix(sources=["a"]))
    with pytest.raises(ValueError, match="clip_id 'a-0000' more than once"):
        select_mix(pd.concat([g, g.head(1)]), mix(sources=["a"]))
    g.loc[3, "duration_s"] = np.nan
    with pytest.raises(ValueError, match="clip 'a-0003' has no positive duration_s"):
        select_mix(g, mix(sources=["a"]))


@pytest.mark.parametrize(("decl", "message"), [
    ({"sources": ["a"], "polcy": "x"}, r"mixes\.m\.polcy: unknown key"),
    ({"sources": ["a"], "policy": "equal"}, r"mixes\.m\.policy: 'equal' is not one of"),
    ({"sources": ["a"], "unit": "frames"}, r"mixes\.m\.unit: 'frames'"),
    ({"sources": ["a"], "split": "val"}, r"mixes\.m\.split: 'val'"),
    ({"sources": ["a"], "seed": "7"}, r"mixes\.m\.seed: an integer"),
    ({"sources": []}, r"mixes\.m\.sources: a list of source names or a mapping"),
    ({}, r"mixes\.m\.sources: a list"),
    ({"sources": {"a": 1, "b": -3}}, r"mixes\.m\.sources: weights must be positive numbers \(b: -3\)"),
    ({"sources": ["a", "a"]}, r"mixes\.m\.sources: a listed twice"),
    ({"sources": {"a": 1, "b": 3}, "policy": "equal_duration"}, r"mixes\.m\.sources: equal_duration gives"),
    ({"sources": ["a"], "policy": "equal_duration", "unit": "clips"}, r"mixes\.m\.unit: equal_duration balances"),
    ({"sources": ["a"], "max_hours": 0}, r"mixes\.m\.max_hours: a positive number"),
    ({"sources": ["a"], "max_clips": 10}, r"mixes\.m\.max_clips: caps a clips mix"),
    ({"sources": ["a"], "unit": "clips", "max_hours": 1}, r"mixes\.m\.max_hours: caps a duration mix"),
    ({"sources": ["a"], "missing": "warn"}, r"mixes\.m\.missing: 'warn'"),
    ({"sources": ["a"], "name": "other"}, r"mixes\.m\.name: 'other' differs from its key 'm'"),
])
def test_bad_mix_declarations_name_the_key(decl: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        load_mixes({"m": decl})


def test_a_mixes_block_loads() -> None:
    mixes = load_mixes({"dh_1to1": {"split": "train", "policy": "equal_duration", "sources": ["dh", "celebv_text"],
                                    "seed": 7, "max_hours": 100}})
    spec = mixes["dh_1to1"]
    assert (spec.name, spec.weights, spec.cap, spec.split) == ("dh_1to1", (1.0, 1.0), 360000.0, "train")
    with pytest.raises(ValueError, match="mixes.x: a mix is a mapping"):
        load_mixes({"x": ["a"]})


# ---- evaluation sets ----------------------------------------------------------------------------


def test_cross_dataset_eval_set_in_the_papers_1_to_3_clip_ratio() -> None:
    decl = {"name": "cross_hdtf_celebvhq", "sources": {"hdtf": 1, "celebv_hq": 3}, "seed": 7}
    big = gold({"hdtf": (1500, 4.0), "celebv_hq": (6400, 6.0)}, split_every=2)  # 750 and 3200 test clips
    r = select_eval_set(big, decl)
    assert len(r.clip_ids) == EVAL_CLIPS and by_source(r)["clips"].tolist() == [512, 1536]
    assert set(big.set_index("clip_id").loc[r.clip_ids, "split"]) == {"test"} and r.notes == \
        ["capped at 2048 clips (max_clips)"]
    small = gold({"hdtf": (600, 4.0), "celebv_hq": (6400, 6.0)}, split_every=2)  # 300 test clips of hdtf
    r = select_eval_set(small, decl)
    assert by_source(r)["clips"].tolist() == [300, 900]
    assert r.notes == ["asked 2048 clips, got 1200 clips: limited by hdtf (300 clips in split test)"]
    odd = select_eval_set(gold({"a": (10, 1.0), "b": (10, 1.0)}, split_every=2), {"name": "o", "sources": {"a": 1, "b": 2}})
    assert by_source(odd)["clips"].tolist() == [2, 5]  # k = 2.5: targets 2.5 and 5 -> 7 whole clips


def test_per_source_eval_sets_default_to_2048_test_clips_capped_by_what_exists() -> None:
    g = gold({"celebv_text": (5000, 5.0), "dh_facevid": (900, 5.0)}, split_every=2)
    sets = per_source_eval_sets(g)
    assert list(sets) == ["celebv_text", "dh_facevid"]
    assert len(sets["celebv_text"].clip_ids) == 2048 and len(sets["dh_facevid"].clip_ids) == 450
    assert sets["dh_facevid"].notes == ["asked 2048 clips, got 450 clips: limited by dh_facevid (450 clips in split test)"]
    assert sets["dh_facevid"].spec.name == "test_dh_facevid"


@pytest.mark.parametrize(("decl", "message"), [
    ({"sources": ["a"], "clips": 0}, r"eval_sets\.e\.clips: a positive integer"),
    ({"sources": ["a"], "policy": "equal_duration"}, r"eval_sets\.e\.policy: unknown key"),
    ({"sources": ["a"], "split": "dev"}, r"eval_sets\.e\.split: 'dev'"),
    ({"sources": {"a": 0}}, r"eval_sets\.e\.sources: weights must be positive"),
])
def test_bad_eval_set_declarations_name_the_key(decl: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        load_eval_sets({"e": decl})
    spec = eval_set_spec({"name": "ok", "sources": ["a"]})
    assert (spec.split, spec.max_clips, spec.seed, spec.unit) == ("test", 2048, 7, "clips")


# ---- the real shared videos' gold ---------------------------------------------------------------


@pytest.mark.spark
@pytest.mark.e2e
def test_a_mix_over_the_real_gold(full_run) -> None:
    from deltalake import DeltaTable

    ctx, _ = full_run
    g = DeltaTable(ctx.lake.location("gold.clips")).to_pandas()
    assert g["source"].nunique() == 1 and len(g) >= 4  # one source: the shared folder
    ids = sorted(g["identity_id"].unique())
    assert len(ids) >= 2
    g["source"] = g["identity_id"].map({i: ("ps_even" if n % 2 == 0 else "ps_odd") for n, i in enumerate(ids)})
    totals = g.groupby("source")["duration_s"].sum()
    small = totals.idxmin()
    r = select_mix(g, mix(policy="equal_duration", sources=["ps_even", "ps_odd"], seed=7))
    chosen = g.set_index("clip_id").loc[r.clip_ids]
    got = chosen.groupby("source")["duration_s"].sum()
    assert got[small] == pytest.approx(totals[small])  # the smaller pseudo-source whole
    other = "ps_odd" if small == "ps_even" else "ps_even"
    longest = g.loc[g["source"] == other, "duration_s"].max()
    assert totals[small] - longest < got[other] <= totals[small] + 1e-6
    assert by_source(r)["hours"].to_dict() == pytest.approx((got / 3600).to_dict())
    assert by_source(r)["available_clips"].to_dict() == g.groupby("source").size().to_dict()
    assert r.ethnicity["clips"].sum() == len(r.clip_ids)
    assert select_mix(g, mix(policy="equal_duration", sources=["ps_even", "ps_odd"], seed=7)).clip_ids == r.clip_ids
