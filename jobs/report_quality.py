"""The dataset card's "Image quality per source" section (the paper's Figure 4: VBench-style aesthetic
and imaging quality per dataset), computed on the engine from ``gold.clips``.

The quality stage's learned scores (``aesthetic``, ``iqa``, ``fiqa``: ONNX models set by
``stages.quality.params.<score>_path``) are summarised per source by one Spark aggregate: scored
clips, mean and the exact quantiles min / q25 / median / q75 / max (Spark's ``percentile``, linear
interpolation like pandas' default). Only one row per source reaches the driver. The card draws a box
per source (box = quartiles, line = median, whiskers = min and max, marker = mean). A score that no
gold clip has says "not configured" (no model path) or "no scores in gold yet" (a model is set but
gold was built before it ran). Gold carries the score columns; an older gold without them is joined
with ``silver.quality`` on ``clip_id``.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

import pandas as pd
from pyspark.sql import functions as F

from facevid.jobs.report import html_img, html_table

SCORES = {"aesthetic": "aesthetic quality", "iqa": "imaging quality (IQA)", "fiqa": "face image quality (FIQA)"}
QUANTILES = {"min": 0.0, "q25": 0.25, "median": 0.5, "q75": 0.75, "max": 1.0}
COLUMNS = ["source", "clips", "scored", "mean", *QUANTILES]


def quality_frame(ctx: Any) -> Any:
    """Gold's ``source`` and score columns as a DataFrame (scores gold lacks joined from
    ``silver.quality``), or ``None`` without gold."""
    if not ctx.lake.exists("gold.clips"):
        return None
    gold = ctx.current("gold.clips")
    lacking = [s for s in SCORES if s not in gold.columns]
    if lacking and ctx.lake.exists("silver.quality"):
        silver = ctx.current("silver.quality")
        joined = [s for s in lacking if s in silver.columns]
        if joined:
            gold = gold.join(silver.select("clip_id", *joined), "clip_id", "left")
    return gold.select("source", *[s for s in SCORES if s in gold.columns])


def score_quantiles(frame: Any, score: str) -> pd.DataFrame:
    """Per source: gold clips, clips with a finite ``score``, its mean and quantiles (``COLUMNS``);
    quantiles are NaN for a source without scores."""
    if frame is None or score not in frame.columns:
        return pd.DataFrame(columns=COLUMNS)
    value = F.when(~F.isnan(F.col(score)), F.col(score))  # NaN is no score (null stays null)
    agg = frame.groupBy("source").agg(F.count(F.lit(1)).alias("clips"), F.count(value).alias("scored"),
                                      F.avg(value).alias("mean"),
                                      F.percentile(value, list(QUANTILES.values())).alias("q"))
    got = agg.toPandas()  # bounded: one row per source
    qs = pd.DataFrame([list(q) if q is not None else [float("nan")] * len(QUANTILES) for q in got["q"]],
                      columns=list(QUANTILES), index=got.index)
    out = pd.concat([got.drop(columns="q"), qs], axis=1)
    out[["clips", "scored"]] = out[["clips", "scored"]].astype(int)
    return out.sort_values("source", ignore_index=True)[COLUMNS]


def box_png(plt: Any, out: Path, stats: pd.DataFrame, score: str, name: str | None = None) -> str | None:
    """Boxes per source from the quantiles (no clip values needed)."""
    stats = stats[stats["scored"] > 0]
    if stats.empty:
        return None
    boxes = [{"label": f"{r.source}\n(n={r.scored})", "whislo": r.min, "q1": r.q25, "med": r.median, "q3": r.q75,
              "whishi": r.max, "mean": r.mean, "fliers": []} for r in stats.itertuples()]
    fig, ax = plt.subplots(figsize=(max(5.0, 1.4 * len(boxes) + 2), 3.8), dpi=100)
    ax.bxp(boxes, showmeans=True, showfliers=False)
    for i, r in enumerate(stats.itertuples(), start=1):
        ax.text(i + 0.28, r.median, f"median {r.median:.3g}", fontsize=8, va="center")
    ax.set_title(f"{SCORES.get(score, score)} per source", fontsize=11)
    ax.set_ylabel(score)
    ax.set_xlim(0.5, len(boxes) + 0.9)
    ax.set_xlabel("box: quartiles; whiskers: min and max; triangle: mean", fontsize=8)
    fig.tight_layout()
    name = name or f"quality_{score}.png"
    fig.savefig(out / name)
    plt.close(fig)
    return name


def _configured(ctx: Any, score: str) -> bool:
    spec = next((s for s in ctx.cfg.stages.values() if s.op == "quality.score"), None)
    return bool(spec is not None and getattr(spec.params, f"{score}_path", None))


def quality_sections(ctx: Any, out: Path, plt: Any) -> list[str]:
    """The card's HTML for "Image quality per source" (and its PNGs under ``out``)."""
    parts = ["<h2>Image quality per source</h2>",
             "<p>The quality stage's learned scores of gold clips per source (the paper's Figure 4): "
             "quartiles, median, min/max and mean over the scored clips.</p>"]
    frame = quality_frame(ctx)
    if frame is None:
        return [*parts, '<p class="na">not available (no gold yet)</p>']
    for score, title in SCORES.items():
        stats = score_quantiles(frame, score)
        parts.append(f"<h3>{html.escape(title)} (<code>{score}</code>)</h3>")
        if stats.empty or not stats["scored"].any():
            why = ("no scores in gold yet (a model is set: re-run the quality and gold stages)"
                   if _configured(ctx, score) else
                   f"not configured (set stages.quality.params.{score}_path to an ONNX image scorer)")
            parts.append(f'<p class="na">{score}: {html.escape(why)}</p>')
            continue
        parts += [html_img(box_png(plt, out, stats, score), f"{score} per source"), html_table(stats)]
    return parts
