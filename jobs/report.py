"""``facevid report``: the dataset card, an HTML page with PNG plots, built from the lake's tables.

Sections: lineage (Delta versions read, latest runs), hours and clips per source and split,
duration / resolution / faces-per-frame histograms, quality distributions with the gold rules'
thresholds drawn, clips per identity with the cap, the funnel (clips each rule removed) and
example frames per bucket; the annotation sections (attributes, caption keywords, speech, lip-sync,
agreement with declared labels) come from ``facevid.jobs.report_annotations``, image quality per
source (learned aesthetic/IQA/FIQA scores) from ``facevid.jobs.report_quality``. Every section
tolerates missing tables and columns.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

TABLES = ("bronze.videos", "silver.clips", "silver.faces", "silver.quality", "silver.crops", "silver.identities",
          "gold.clips")


# left in the lake: the annotation sections aggregate them on the engine (facevid.jobs.report_annotations)
ANNOTATION_TEXT = ("caption", "appearance", "lighting", "action", "raw_answer", "oov")


def pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def load_tables(ctx: Any) -> dict[str, pd.DataFrame]:
    """The rows of every table that exists, the quarantine view and the run log. The card plots
    every clip, so these come to the driver (without the track and embedding arrays)."""
    from facevid.jobs.quarantine import quarantine_frame

    out = {}
    for t in TABLES:
        if ctx.lake.exists(t):
            out[t] = ctx.current(t).drop("track_boxes", "track_landmarks", "track_scores", "track_t",
                                         "embedding", "frame_hashes", *ANNOTATION_TEXT).toPandas()  # bounded: scalar columns, one row per clip, for the plots
    quarantine = quarantine_frame(ctx)
    if quarantine is not None:
        out["quarantine"] = quarantine.toPandas()  # bounded: one row per rejection, counted in the funnel
    if ctx.lake.exists("meta.runs"):
        out["meta.runs"] = ctx.lake.read("meta.runs").toPandas()  # bounded: one row per stage run (lineage)
    return out


def gold_spec(ctx: Any) -> Any:
    return next((s for s in ctx.cfg.stages.values() if s.op == "gold.select"), None)


def split_summary(tables: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Clips, hours and identities per source and split of gold."""
    gold = tables.get("gold.clips")
    if gold is None or gold.empty:
        return pd.DataFrame(columns=["source", "split", "clips", "hours", "identities"])
    g = gold.groupby(["source", "split"]).agg(clips=("clip_id", "size"), hours=("duration_s", "sum"),
                                              identities=("identity_id", "nunique")).reset_index()
    g["hours"] = (g["hours"] / 3600).round(4)
    return g


def funnel(tables: dict[str, pd.DataFrame]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(stage counts from videos to gold, clips per quarantine rule with example values)."""
    def n(t: str, cond: Any = None) -> int | None:
        df = tables.get(t)
        if df is None:
            return None
        return int(len(df) if cond is None else cond(df).sum())

    stages = pd.DataFrame([
        ("videos ingested", n("bronze.videos")),
        ("videos probed OK", n("bronze.videos", lambda d: d["error"].isna())),
        ("clips", n("silver.clips", lambda d: d["error"].isna())),
        ("clips with a face", n("silver.faces", lambda d: d["error"].isna() & (d["face_frac"] > 0))),
        ("clips with a crop", n("silver.crops", lambda d: d["error"].isna())),
        ("gold clips", n("gold.clips")),
    ], columns=["step", "count"])
    q = tables.get("quarantine")
    if q is None or q.empty:
        return stages, pd.DataFrame(columns=["rule", "clips", "examples", "threshold"])
    rules = q.groupby("rule").agg(clips=("key", "nunique"), examples=("value", lambda v: ", ".join(
        sorted({str(x) for x in v if x is not None})[:4])), threshold=("threshold", "first")).reset_index()
    return stages, rules.sort_values(["clips", "rule"], ascending=[False, True], ignore_index=True)


def rule_lines(ctx: Any, tables: dict[str, pd.DataFrame]) -> list[dict[str, Any]]:
    """For each numeric gold rule: its silver values, bounds and the share of clips failing."""
    spec = gold_spec(ctx)
    if spec is None:
        return []
    out = []
    for rule in spec.params.rules.values():
        if rule.is_null is not None:
            continue
        for t in ("silver.quality", "silver.faces", "silver.crops", "silver.clips"):
            df = tables.get(t)
            if df is not None and rule.column in df:
                vals = pd.to_numeric(df.loc[df["error"].isna(), rule.column], errors="coerce").dropna()
                if len(vals):
                    fail = pd.Series(False, index=vals.index)
                    if rule.min is not None:
                        fail |= vals < rule.min
                    if rule.max is not None:
                        fail |= vals > rule.max
                    out.append({"rule": rule.name, "column": rule.column, "table": t, "values": vals.to_numpy(),
                                "min": rule.min, "max": rule.max, "fail_share": float(fail.mean())})
                break
    return out


def identity_counts(tables: dict[str, pd.DataFrame], cap: int) -> dict[str, Any]:
    ids = tables.get("silver.identities")
    if ids is None or ids.empty:
        return {}
    per = ids.groupby("identity_id").size()
    share = float(per[per <= cap].sum() / per.sum())
    gold = tables.get("gold.clips")
    return {"silver": per.to_numpy(), "share": share, "cap": cap,
            "gold": None if gold is None or gold.empty else gold.groupby("identity_id").size().to_numpy()}


def html_table(df: pd.DataFrame | None) -> str:
    if df is None or df.empty:
        return '<p class="na">not available</p>'
    return df.to_html(index=False, escape=True, float_format=lambda v: f"{v:.4g}", na_rep="")


def html_img(name: str | None, alt: str) -> str:
    return f'<img src="{name}" alt="{html.escape(alt)}">' if name else f'<p class="na">{html.escape(alt)}: not available</p>'


def hist_png(plt: Any, out: Path, name: str, series: dict[str, np.ndarray], title: str, xlabel: str,
          lines: tuple[float | None, float | None] = (None, None)) -> str | None:
    series = {k: v for k, v in series.items() if v is not None and len(v)}
    if not series:
        return None
    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=100)
    for label, values in series.items():
        ax.hist(values, bins=20, alpha=0.6, label=f"{label} (n={len(values)})")
    return finish_png(plt, fig, ax, out, name, title, xlabel, lines, "threshold {:g}")


def finish_png(plt: Any, fig: Any, ax: Any, out: Path, name: str, title: str, xlabel: str,
               lines: tuple[float | None, float | None] = (None, None), line_label: str = "{:g}") -> str:
    """Threshold lines (dashed low, dotted high), titles and legend; save ``out/name``; close."""
    for x, style in zip(lines, ("--", ":"), strict=True):
        if x is not None:
            ax.axvline(x, color="red", linestyle=style, label=line_label.format(x))
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("clips")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / name)
    plt.close(fig)
    return name


def bar_png(plt: Any, out: Path, name: str, labels: list[str], values: list[float], title: str) -> str | None:
    if not labels:
        return None
    fig, ax = plt.subplots(figsize=(6, 0.4 * len(labels) + 1.2), dpi=100)
    ax.barh(labels[::-1], values[::-1], color="#4878a8")
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(out / name)
    plt.close(fig)
    return name
