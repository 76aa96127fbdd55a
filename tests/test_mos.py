"""People's ratings (facevid.udfs.metrics.mos): CSV import in both layouts, errors naming the line,
aggregation against hand-computed values and scipy, and the interval's behaviour on simulated
crossed rater x video studies (coverage, more raters -> narrower)."""

from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from facevid.udfs.metrics.mos import (
    MosSpec,
    aggregate,
    bootstrap_ci,
    mos_table,
    read_ratings,
    t_interval_videos,
)

# 2 raters x 3 videos of model "ours" on dataset "dh" (+ one rating of "base"); the same study twice
WIDE = """rater,model,dataset,video_id,adherence,naturalness,visual_quality,overall
r1,ours,dh,v1,4,3,5,4
r1,ours,dh,v2,2,2,3,2
r1,ours,dh,v3,5,4,4,5
r2,ours,dh,v1,5,,4,4
r2,ours,dh,v2,3,3,3,3
r2,ours,dh,v3,4,4,5,5
r1,base,dh,v1,,,,1
"""


def long_csv(wide: str) -> str:
    df = pd.read_csv(io.StringIO(wide))
    melted = df.melt(id_vars=["rater", "model", "dataset", "video_id"], var_name="criterion", value_name="score")
    return melted.dropna(subset=["score"]).astype({"score": int}).to_csv(index=False)


def test_wide_and_long_files_read_the_same(tmp_path: Path) -> None:
    path = tmp_path / "ratings.csv"
    path.write_text(WIDE)
    wide = read_ratings(path)
    long = read_ratings(io.StringIO(long_csv(WIDE)))
    assert len(wide) == len(long) == 6 * 4 - 1 + 1
    key = ["model", "rater", "video_id", "criterion"]
    cols = ["rater", "model", "dataset", "video_id", "criterion", "score"]
    pd.testing.assert_frame_equal(wide.sort_values(key)[cols].reset_index(drop=True),
                                  long.sort_values(key)[cols].reset_index(drop=True))
    assert wide.loc[(wide["rater"] == "r2") & (wide["video_id"] == "v1"), "line"].unique().tolist() == [5]
    assert set(wide.loc[wide["model"] == "base", "criterion"]) == {"overall"}


def test_aggregates_match_hand_computed_values() -> None:
    ratings = read_ratings(io.StringIO(WIDE))
    t_spec = MosSpec(method="t_videos")
    s = aggregate(ratings, t_spec).set_index(["model", "criterion"])
    # adherence of ours: r1 (4, 2, 5), r2 (5, 3, 4): 6 ratings, mean 23/6, std sqrt(17/6 / 5)
    a = s.loc[("ours", "adherence")]
    assert (a["n"], a["raters"], a["videos"]) == (6, 2, 3)
    assert a["mean"] == pytest.approx(23 / 6) and a["std"] == pytest.approx(math.sqrt((41 / 6) / 5))
    # per-video means 4.5, 2.5, 4.5: centre 23/6, sd sqrt(4/3), t(0.975, 2) = 4.302652729911275 (tables)
    half = 4.302652729911275 * math.sqrt(4 / 3) / math.sqrt(3)
    assert (a["ci_low"], a["ci_high"], a["half_width"]) == pytest.approx((23 / 6 - half, 23 / 6 + half, half))
    assert (a["ci_low"], a["ci_high"]) == pytest.approx(stats.t.interval(0.95, 2, loc=23 / 6,
                                                                          scale=stats.sem([4.5, 2.5, 4.5])))
    # naturalness: r2 did not rate v1 -> 5 ratings (3, 2, 4, 3, 4); per-video means 3, 2.5, 4
    n = s.loc[("ours", "naturalness")]
    assert (n["n"], n["mean"], n["std"]) == pytest.approx((5, 16 / 5, math.sqrt(2.8 / 4)))
    centre, lo, hi = t_interval_videos(["v1", "v2", "v3"], [3, 2.5, 4])
    assert (n["ci_low"], n["ci_high"]) == pytest.approx((lo, hi)) and centre == pytest.approx(19 / 6)
    assert n["half_width"] == pytest.approx(max(16 / 5 - lo, hi - 16 / 5))
    one = s.loc[("base", "overall")]  # one rating: no spread, no interval
    assert one["n"] == 1 and math.isnan(one["std"]) and math.isnan(one["ci_low"])
    assert list(s.loc["ours"].index) == ["adherence", "naturalness", "visual_quality", "overall"]


def test_two_way_bootstrap_on_a_2x2_study_by_hand() -> None:
    # cells r1v1=1, r1v2=2, r2v1=3, r2v2=5. Each factor draws {r1,r1}, {r1,r2}, {r2,r2} with p 1/4, 1/2, 1/4;
    # the lowest mean (1: only r1 and only v1) and the highest (5) each have p 1/16 > 2.5%, so the 95%
    # percentile interval is [1, 5]. The nine (rater draw, video draw) means and their CDF: 1 (1/16),
    # 1.5 (3/16), 2 (6/16), 2.75 (10/16), 3 (11/16), 3.5 (13/16), 4 (15/16), 5: the 50% interval is [2, 3.5]
    raters, videos, scores = ["r1", "r1", "r2", "r2"], ["v1", "v2", "v1", "v2"], [1, 2, 3, 5]
    assert bootstrap_ci(raters, videos, scores, 0.95, 4000, seed=1) == (1.0, 5.0)
    assert bootstrap_ci(raters, videos, scores, 0.5, 4000, seed=1) == (2.0, 3.5)
    assert bootstrap_ci(raters, videos, scores, 0.95, 4000, seed=1) == bootstrap_ci(raters, videos, scores, 0.95,
                                                                                   4000, seed=1)


def test_one_rater_bootstrap_matches_scipys_percentile_bootstrap() -> None:
    scores = np.random.default_rng(5).integers(1, 6, 40).astype(float)
    ours = bootstrap_ci(["r"] * 40, [f"v{i}" for i in range(40)], scores, 0.95, 20000, seed=2)
    ref = stats.bootstrap((scores,), np.mean, method="percentile", n_resamples=20000, rng=np.random.default_rng(3))
    assert ours == pytest.approx((ref.confidence_interval.low, ref.confidence_interval.high), abs=0.04)


def simulate(rng: np.random.Generator, raters: int, videos: int, sd_rater: float = 0.8, sd_video: float = 0.5,
             sd_noise: float = 0.7, mu: float = 3.0) -> pd.DataFrame:
    """A fully crossed study: score = mu + rater effect + video effect + noise (continuous scale)."""
    r = rng.normal(0, sd_rater, raters)[:, None]
    v = rng.normal(0, sd_video, videos)[None, :]
    s = mu + r + v + rng.normal(0, sd_noise, (raters, videos))
    ri, vi = np.meshgrid(range(raters), range(videos), indexing="ij")
    return pd.DataFrame({"rater": ri.ravel(), "video_id": vi.ravel(), "score": s.ravel()})


def test_the_interval_covers_the_true_mean_over_new_raters_and_videos() -> None:
    """Over 150 simulated studies of 25 raters x 30 videos the two-way bootstrap covers mu about 95%
    of the time; a t-interval over all ratings (independent ratings) or over per-video means (raters
    fixed) covers far less: why the bootstrap is the default."""
    rng = np.random.default_rng(0)
    hits = {"bootstrap": 0, "t_videos": 0, "t_ratings": 0}
    runs = 150
    for _ in range(runs):
        d = simulate(rng, 25, 30)
        lo, hi = bootstrap_ci(d["rater"], d["video_id"], d["score"], 0.95, 800, seed=0)
        hits["bootstrap"] += lo <= 3.0 <= hi
        _, lo, hi = t_interval_videos(d["video_id"], d["score"])
        hits["t_videos"] += lo <= 3.0 <= hi
        lo, hi = stats.t.interval(0.95, len(d) - 1, loc=d["score"].mean(), scale=stats.sem(d["score"]))
        hits["t_ratings"] += lo <= 3.0 <= hi
    cover = {k: v / runs for k, v in hits.items()}
    assert 0.9 <= cover["bootstrap"] <= 1.0, cover
    assert cover["t_videos"] < 0.8 and cover["t_ratings"] < 0.5, cover


def test_more_raters_narrow_the_interval() -> None:
    rng = np.random.default_rng(4)
    d = simulate(rng, 40, 30)
    widths = []
    for n in (4, 10, 40):
        sub = d[d["rater"] < n]
        lo, hi = bootstrap_ci(sub["rater"], sub["video_id"], sub["score"], 0.95, 2000, seed=0)
        widths.append(hi - lo)
    assert widths[0] > widths[1] > widths[2], widths


def test_table3_layout() -> None:
    s = aggregate(read_ratings(io.StringIO(WIDE)), MosSpec(seed=3))
    table = mos_table(s)
    assert table.columns.tolist() == ["model", "dataset", "adherence", "naturalness", "visual_quality", "overall"]
    ours = table.set_index("model").loc["ours"]
    adherence = s.set_index(["model", "criterion"]).loc[("ours", "adherence")]
    assert ours["adherence"] == f"{23 / 6:.2f} ± {adherence['half_width']:.2f}"
    base = table.set_index("model").loc["base"]
    assert base["overall"] == "1.00" and base["adherence"] == ""  # one rating; criteria it lacks
    assert s["method"].iloc[0] == "bootstrap raters x videos (B=2000, seed=3)"


@pytest.mark.parametrize(("text", "message"), [
    ("rater,model,dataset,video_id,criterion,score\nr1,m,d,v1,overall,4\nr1,m,d,v1,fun,3\n",
     r"line 3: unknown criterion 'fun'"),
    ("rater,model,dataset,video_id,criterion,score\nr1,m,d,v1,overall,4\n\nr1,m,d,v2,overall,6\n",
     r"line 4: overall: score '6' is outside the scale 1-5"),
    ("rater,model,dataset,video_id,criterion,score\nr1,m,d,v1,overall,good\n", r"line 2: overall: score 'good' is not"),
    ("rater,model,dataset,video_id,criterion,score\nr1,m,d,v1,overall,3.5\n", r"line 2: overall: score '3.5' is not a whole"),
    ("rater,model,dataset,video_id,criterion,score\nr1,m,d,v1,overall,3\nr2,m,d,v1,overall,3\nr1,m,d,v1,overall,4\n",
     r"line 4: a second rating of overall for rater r1, model m, dataset d, video v1 \(first on line 2\)"),
    ("rater,model,dataset,video_id,criterion,score\n,m,d,v1,overall,3\n", r"line 2: empty rater"),
    ("rater,model,dataset,video_id,criterion,score\nr1,m,d,v1,overall,\n", r"line 2: empty score"),
    ("rater,model,dataset,video_id,criterion,score\nr1,m,d,v1,overall\n", r"line 2: 5 fields, the header has 6"),
    ("rater,model,dataset,video_id,criterion,score,prompt\nr1,m,d,v1,overall,3,x\n", r"line 1: unknown column\(s\) prompt"),
    ("rater,model,dataset,video_id,overall,fun\nr1,m,d,v1,3,4\n", r"line 1: unknown criterion column\(s\) fun"),
    ("rater,model,video_id,overall\nr1,m,v1,3\n", r"line 1: missing column\(s\) dataset"),
    ("rater,model,dataset,video_id,overall,naturalness\nr1,m,d,v1,3,2\nr1,m,d,v1,,4\n",
     r"line 3: a second rating of naturalness .*first on line 2"),
    ("rater,model,dataset,video_id\nr1,m,d,v1\n", r"line 1: neither criterion, score columns nor criteria"),
])
def test_malformed_csv_names_the_line(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        read_ratings(io.StringIO(text))


def test_declared_criteria_and_scale() -> None:
    spec = MosSpec(criteria=("realism",), scale=(0, 10), integer=False)
    r = read_ratings(io.StringIO("rater,model,dataset,video_id,realism\nr1,m,d,v1,7.5\nr2,m,d,v1,10\n"), spec)
    assert r["score"].tolist() == [7.5, 10.0]
    with pytest.raises(ValueError, match="line 1: unknown criterion column.*overall.*declared: realism"):
        read_ratings(io.StringIO("rater,model,dataset,video_id,overall\nr1,m,d,v1,3\n"), spec)
    for bad, message in (({"scale": (5, 1)}, "mos.scale"), ({"method": "anova"}, "mos.method"),
                         ({"criteria": ("a", "a")}, "mos.criteria"), ({"criteria": ("score",)}, "mos.criteria"),
                         ({"n_boot": 10}, "mos.n_boot"), ({"level": 95}, "mos.level")):
        with pytest.raises(ValueError, match=message):
            MosSpec(**bad)
