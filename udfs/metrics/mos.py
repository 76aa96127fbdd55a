"""People's ratings of generated videos (MOS, the paper's 25-rater study, Table 3): CSV import with
line-exact validation, per (model, dataset, criterion) means with 95% confidence intervals.

**CSV.** Identifier columns ``rater, model, dataset, video_id`` and either a long format
(``criterion, score``: one rating a line) or a wide one (one column per criterion, e.g.
``adherence, naturalness, visual_quality, overall``; an empty cell is a criterion not rated).
Every other column, an unknown criterion, an empty identifier, a score that is not a number, off
the declared scale (default 1-5) or not whole (``integer``), and a second rating of the same
(rater, model, dataset, video, criterion) is a ``ValueError`` naming the line (the header is line 1).

**Confidence interval.** Ratings are crossed: every rater scores many videos and every video is
scored by many raters, so they are not independent. A rater's leniency shifts all of that rater's
scores and a video's quality all of its scores; the MOS should generalise to other raters AND other
videos. A t-interval over all ratings treats them as independent and is far too narrow when rater
or video effects are large; a t-interval over per-video means (``t_videos``) covers the videos but
treats the raters as fixed. The default, ``bootstrap``, is a two-way ("pigeonhole", Owen 2007)
percentile bootstrap: each draw resamples raters and videos independently with replacement and
takes the mean of the ratings in the drawn cells (weighted by how often each rater and video was
drawn); ``n_boot`` draws from ``numpy.random.default_rng(seed)``, the same for every group, so
results are reproducible. It handles incomplete designs (raters who saw a subset), and it is
slightly conservative (its variance counts the residual about twice; Owen 2007), the safe side
for a study of ~25 raters. With one rater (or one video) it resamples the other factor only.
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np
import pandas as pd

from facevid.udfs.base import validate

CRITERIA = ("adherence", "naturalness", "visual_quality", "overall")
ID_COLUMNS = ("rater", "model", "dataset", "video_id")
LONG_COLUMNS = ("criterion", "score")
METHODS = ("bootstrap", "t_videos")
RATING_COLUMNS = [*ID_COLUMNS, "criterion", "score", "line"]
SUMMARY_COLUMNS = ["model", "dataset", "criterion", "n", "raters", "videos", "mean", "std", "ci_low", "ci_high",
                   "half_width", "level", "method"]


@dataclass(frozen=True)
class MosSpec:
    """The study's declared criteria and scale, and how intervals are computed."""

    criteria: tuple[str, ...] = CRITERIA
    scale: tuple[float, float] = (1.0, 5.0)
    integer: bool = True  # Likert points only
    method: str = "bootstrap"  # "bootstrap" (raters x videos) | "t_videos" (t over per-video means)
    level: float = 0.95
    n_boot: int = 2000
    seed: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "criteria", tuple(self.criteria))
        object.__setattr__(self, "scale", tuple(self.scale))
        validate("mos", [
            (len(self.criteria) > 0 and len(set(self.criteria)) == len(self.criteria)
             and all(isinstance(c, str) and c for c in self.criteria), "criteria: distinct non-empty names required"),
            (not set(self.criteria) & {*ID_COLUMNS, *LONG_COLUMNS},
             f"criteria: a criterion cannot be named like a column ({', '.join((*ID_COLUMNS, *LONG_COLUMNS))})"),
            (len(self.scale) == 2 and self.scale[0] < self.scale[1], f"scale: (low, high) required, got {self.scale}"),
            (self.method in METHODS, f"method: {self.method!r} is not one of {', '.join(METHODS)}"),
            (0 < self.level < 1, f"level: must be in (0, 1), got {self.level}"),
            (self.n_boot >= 100, f"n_boot: at least 100 draws, got {self.n_boot}"),
        ])


def _score(text: str, spec: MosSpec, where: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{where}: score {text!r} is not a number") from None
    lo, hi = spec.scale
    if not math.isfinite(value) or not lo <= value <= hi:
        raise ValueError(f"{where}: score {text!r} is outside the scale {lo:g}-{hi:g}")
    if spec.integer and value != int(value):
        raise ValueError(f"{where}: score {text!r} is not a whole point of the scale")
    return value


def read_ratings(source: str | Path | IO[str], spec: MosSpec | None = None) -> pd.DataFrame:
    """Ratings from a CSV file (path or open text) as a long frame: rater, model, dataset, video_id,
    criterion, score, line (the record's line in the file)."""
    spec = spec or MosSpec()
    name = str(source) if isinstance(source, str | Path) else getattr(source, "name", "<csv>")
    with (open(source, newline="", encoding="utf-8-sig") if isinstance(source, str | Path)
          else io.StringIO(source.read())) as fh:
        reader = csv.reader(fh)
        header = [h.strip() for h in next(reader, [])]
        if not header:
            raise ValueError(f"{name} line 1: no header")
        missing = [c for c in ID_COLUMNS if c not in header]
        dupes = sorted({h for h in header if header.count(h) > 1})
        long = all(c in header for c in LONG_COLUMNS)
        rest = [h for h in header if h not in ID_COLUMNS and (not long or h not in LONG_COLUMNS)]
        if missing or dupes:
            raise ValueError(f"{name} line 1: " + (f"missing column(s) {', '.join(missing)}" if missing
                                                   else f"column(s) {', '.join(dupes)} twice"))
        if long and rest:
            raise ValueError(f"{name} line 1: unknown column(s) {', '.join(rest)} (a long file has "
                             f"{', '.join((*ID_COLUMNS, *LONG_COLUMNS))})")
        if not long and not rest:
            raise ValueError(f"{name} line 1: neither criterion, score columns nor criteria columns "
                             f"({', '.join(spec.criteria)})")
        unknown = [h for h in rest if h not in spec.criteria]
        if unknown:
            raise ValueError(f"{name} line 1: unknown criterion column(s) {', '.join(unknown)} "
                             f"(declared: {', '.join(spec.criteria)})")
        out: list[tuple[Any, ...]] = []
        seen: dict[tuple[str, ...], int] = {}
        for record in reader:
            line = reader.line_num
            where = f"{name} line {line}"
            if not any(v.strip() for v in record):
                continue
            if len(record) != len(header):
                raise ValueError(f"{where}: {len(record)} fields, the header has {len(header)}")
            row = dict(zip(header, (v.strip() for v in record), strict=True))
            empty = [c for c in ID_COLUMNS if not row[c]]
            if empty:
                raise ValueError(f"{where}: empty {', '.join(empty)}")
            if long:
                if row["criterion"] not in spec.criteria:
                    raise ValueError(f"{where}: unknown criterion {row['criterion']!r} "
                                     f"(declared: {', '.join(spec.criteria)})")
                cells = [(row["criterion"], row["score"])]
                if not row["score"]:
                    raise ValueError(f"{where}: empty score")
            else:
                cells = [(c, row[c]) for c in rest if row[c]]
            ids = tuple(row[c] for c in ID_COLUMNS)
            for criterion, text in cells:
                key = (*ids, criterion)
                if key in seen:
                    raise ValueError(f"{where}: a second rating of {criterion} for rater {ids[0]}, model {ids[1]}, "
                                     f"dataset {ids[2]}, video {ids[3]} (first on line {seen[key]})")
                seen[key] = line
                out.append((*ids, criterion, _score(text, spec, f"{where}: {criterion}"), line))
    return pd.DataFrame(out, columns=RATING_COLUMNS).astype({"score": float, "line": int})


def bootstrap_ci(raters: Any, videos: Any, scores: Any, level: float = 0.95, n_boot: int = 2000,
                 seed: int = 0) -> tuple[float, float]:
    """The two-way percentile bootstrap interval of the mean rating (raters and videos resampled
    independently, with replacement; see the module docstring). NaN for one rater of one video."""
    r_idx, r_names = pd.factorize(pd.Series(raters), sort=True)
    v_idx, v_names = pd.factorize(pd.Series(videos), sort=True)
    s = np.asarray(scores, float)
    total = np.zeros((len(r_names), len(v_names)))
    count = np.zeros_like(total)
    np.add.at(total, (r_idx, v_idx), s)
    np.add.at(count, (r_idx, v_idx), 1.0)
    rng = np.random.default_rng(seed)
    n_r, n_v = total.shape
    if n_r < 2 and n_v < 2:
        return math.nan, math.nan
    wr = rng.multinomial(n_r, np.full(n_r, 1.0 / n_r), size=n_boot).astype(float)
    wv = rng.multinomial(n_v, np.full(n_v, 1.0 / n_v), size=n_boot).astype(float)
    num = ((wr @ total) * wv).sum(axis=1)
    den = ((wr @ count) * wv).sum(axis=1)
    draws = num[den > 0] / den[den > 0]  # an incomplete design can draw no rated cell: such draws are dropped
    lo, hi = np.quantile(draws, [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi)


def t_interval_videos(videos: Any, scores: Any, level: float = 0.95) -> tuple[float, float, float]:
    """(mean of per-video means, low, high): Student's t over the per-video mean ratings
    (NaN bounds with fewer than 2 videos)."""
    from scipy import stats

    means = pd.Series(np.asarray(scores, float)).groupby(np.asarray(videos)).mean().to_numpy()
    centre = float(means.mean())
    if len(means) < 2:
        return centre, math.nan, math.nan
    half = float(stats.t.ppf((1 + level) / 2, len(means) - 1) * means.std(ddof=1) / math.sqrt(len(means)))
    return centre, centre - half, centre + half


def aggregate(ratings: pd.DataFrame, spec: MosSpec | None = None) -> pd.DataFrame:
    """Per (model, dataset, criterion): n ratings, raters, videos, mean and std (ddof 1) of the
    ratings, the interval (``ci_low``, ``ci_high``, ``half_width`` = its larger distance from the
    mean), ``level`` and ``method``. Long format, ready for Delta or MLflow."""
    spec = spec or MosSpec()
    rows = []
    for (model, dataset, criterion), g in ratings.groupby(["model", "dataset", "criterion"], sort=False):
        mean = float(g["score"].mean())
        if spec.method == "bootstrap":
            lo, hi = bootstrap_ci(g["rater"], g["video_id"], g["score"], spec.level, spec.n_boot, spec.seed)
            method = f"bootstrap raters x videos (B={spec.n_boot}, seed={spec.seed})"
        else:
            _, lo, hi = t_interval_videos(g["video_id"], g["score"], spec.level)
            method = "t over per-video means"
        rows.append({"model": model, "dataset": dataset, "criterion": criterion, "n": len(g),
                     "raters": g["rater"].nunique(), "videos": g["video_id"].nunique(), "mean": mean,
                     "std": float(g["score"].std(ddof=1)) if len(g) > 1 else math.nan, "ci_low": lo, "ci_high": hi,
                     "half_width": max(mean - lo, hi - mean), "level": spec.level, "method": method})
    out = pd.DataFrame(rows, columns=SUMMARY_COLUMNS)
    order = {c: i for i, c in enumerate(spec.criteria)}
    return out.sort_values(["model", "dataset", "criterion"], key=lambda c: c.map(order) if c.name == "criterion"
                           else c, ignore_index=True)


def mos_table(summary: pd.DataFrame, criteria: tuple[str, ...] = CRITERIA, digits: int = 2) -> pd.DataFrame:
    """The paper's Table 3 layout: a row per (model, dataset), a column per criterion holding
    ``"mean ± half_width"`` (empty where a criterion was not rated)."""
    cells = summary.assign(cell=[f"{m:.{digits}f} ± {h:.{digits}f}" if math.isfinite(h) else f"{m:.{digits}f}"
                                 for m, h in zip(summary["mean"], summary["half_width"], strict=True)])
    table = cells.pivot(index=["model", "dataset"], columns="criterion", values="cell")
    table = table.reindex(columns=[c for c in criteria if c in table.columns]).fillna("")
    table.columns.name = None
    return table.reset_index()
