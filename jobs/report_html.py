"""The dataset card's page: plots from ``facevid.jobs.report`` data, example frames, one self-contained HTML."""

from __future__ import annotations

import html
import time
from pathlib import Path
from typing import Any

import cv2
import pandas as pd

from facevid.jobs.report import (
    bar_png,
    funnel,
    gold_spec,
    hist_png,
    html_img,
    html_table,
    identity_counts,
    load_tables,
    pyplot,
    rule_lines,
    split_summary,
)
from facevid.jobs.report_annotations import annotation_sections
from facevid.jobs.report_quality import quality_sections

CSS = """body{font-family:system-ui,sans-serif;max-width:1000px;margin:2em auto;color:#222}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:3px 8px;font-size:13px}
th{background:#f0f0f0}img{max-width:100%}.thumbs img{width:160px;margin:2px}.na{color:#888}"""


def middle_frame(uri: str, start: float, end: float) -> Any:
    """The frame in the middle of ``[start, end)`` (None when it does not decode)."""
    from facevid.udfs.media.storage import local_path
    from facevid.udfs.media.video import iter_frames

    try:
        with local_path(uri) as path:
            mid = (start + end) / 2 if end > start else start
            return next((f for _, f in iter_frames(path, mid, None, max_side=320)), None)
    except Exception:  # a thumbnail never fails the report
        return None


def examples(tables: dict[str, pd.DataFrame], out: Path, n: int) -> list[tuple[str, list[str]]]:
    """Thumbnails for gold train/test and the top 3 quarantine rules (deterministic: by clip_id)."""
    clips = tables.get("silver.clips")
    if clips is None or n <= 0:
        return []
    clips = clips.set_index("clip_id")
    buckets: list[tuple[str, list[tuple[str, str, float, float]]]] = []
    gold = tables.get("gold.clips")
    if gold is not None and not gold.empty:
        for split in ("train", "test"):
            g = gold[gold["split"] == split].sort_values("clip_id").head(n)
            buckets.append((f"gold {split}", [(r.clip_id, r.crop_uri or r.video_uri, 0.0 if r.crop_uri else r.start_s,
                                               (r.end_s - r.start_s) if r.crop_uri else r.end_s)
                                              for r in g.itertuples()]))
    q = tables.get("quarantine")
    if q is not None and not q.empty:
        q = q[q["clip_id"].isin(clips.index)]
        for rule in q.groupby("rule")["clip_id"].nunique().sort_values(ascending=False).head(3).index:
            ids = sorted(set(q.loc[q["rule"] == rule, "clip_id"]))[:n]
            buckets.append((rule, [(c, clips.at[c, "video_uri"], clips.at[c, "start_s"], clips.at[c, "end_s"])
                                   for c in ids]))
    shown = []
    for label, items in buckets:
        names = []
        for clip_id, uri, start, end in items:
            frame = middle_frame(uri, float(start or 0), float(end or 0))
            if frame is not None:
                name = f"ex_{clip_id}.jpg"
                cv2.imwrite(str(out / name), frame)
                names.append(name)
        shown.append((label, names))
    return shown


def build_report(ctx: Any, out_dir: str | Path, n_examples: int = 4) -> Path:
    """Write ``out_dir/index.html`` and its PNG/JPEG files; returns the HTML path."""
    plt = pyplot()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    t = load_tables(ctx)
    spec = gold_spec(ctx)
    cap = spec.params.gate.identity_max_clips if spec else 10
    versions = pd.DataFrame([(name, ctx.lake.version(name)) for name in (*t.keys(),) if name != "meta.runs"],
                            columns=["table", "delta version"])
    runs = t.get("meta.runs")
    runs = runs.sort_values("started_at").groupby("stage").tail(1)[["stage", "run_id", "status", "started_at",
                                                                   "output_version"]] if runs is not None else None
    videos = t.get("bronze.videos")
    ok = videos[videos["error"].isna()] if videos is not None else None
    parts = [f"<h1>Dataset card</h1><p>lake <code>{html.escape(ctx.cfg.lake)}</code>, generated "
             f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}</p>"]
    if ok is not None:
        parts.append(f"<p>{len(ok)} videos ({ok['duration_s'].sum() / 3600:.3f} h) probed OK of {len(videos)}.</p>")
    parts += ["<h2>Gold: clips and hours per source and split</h2>", html_table(split_summary(t))]
    clips, gold, faces = t.get("silver.clips"), t.get("gold.clips"), t.get("silver.faces")
    parts.append("<h2>Distributions</h2>")
    parts.append(html_img(hist_png(plt, out, "duration.png", {
        "silver": None if clips is None else clips.loc[clips["error"].isna(), "duration_s"].to_numpy(),
        "gold": None if gold is None else gold["duration_s"].to_numpy()}, "clip duration", "seconds"), "durations"))
    parts.append(html_img(hist_png(plt, out, "resolution.png", {"videos": None if ok is None else
                  ok[["width", "height"]].min(axis=1).to_numpy()}, "source resolution", "short side (px)"), "resolution"))
    parts.append(html_img(hist_png(plt, out, "faces.png", {"mean": None if faces is None else faces["faces_mean"].to_numpy(),
                  "max": None if faces is None else faces["faces_max"].to_numpy()}, "faces per frame", "faces"), "faces"))
    parts.append("<h2>Quality scores and the gold thresholds</h2>")
    for r in rule_lines(ctx, t):
        name = hist_png(plt, out, f"rule_{r['rule']}.png", {r["table"]: r["values"]},
                     f"{r['rule']}: {r['column']} ({r['fail_share']:.0%} of clips fail)", r["column"],
                     (r["min"], r["max"]))
        parts.append(html_img(name, r["rule"]))
    parts += quality_sections(ctx, out, plt)
    parts.append("<h2>Identities</h2>")
    ident = identity_counts(t, cap)
    if ident:
        parts.append(f"<p>{ident['share']:.1%} of silver clips come from identities with at most {cap} clips "
                     f"(the paper: at least 95%).</p>")
        parts.append(html_img(hist_png(plt, out, "identities.png", {"silver": ident["silver"], "gold": ident["gold"]},
                                "clips per identity", "clips", (None, cap)), "identities"))
    else:
        parts.append('<p class="na">not available</p>')
    parts += annotation_sections(ctx, out, plt)
    steps, rules = funnel(t)
    parts += ["<h2>The funnel: why clips were lost</h2>", html_table(steps), html_table(rules),
              html_img(bar_png(plt, out, "funnel.png", rules["rule"].tolist(), rules["clips"].tolist(), "clips per rule"),
                   "rules")]
    parts.append("<h2>Examples</h2>")
    for label, names in examples(t, out, n_examples):
        imgs = "".join(f'<img src="{n}" alt="{html.escape(label)}">' for n in names) or "<span class=na>none</span>"
        parts.append(f'<h3>{html.escape(label)}</h3><div class="thumbs">{imgs}</div>')
    parts += ["<h2>Lineage</h2>", html_table(versions), html_table(runs)]
    page = out / "index.html"
    page.write_text(f"<!doctype html><html><head><meta charset='utf-8'><title>FaceVid Lake dataset card</title>"
                    f"<style>{CSS}</style></head><body>{''.join(parts)}</body></html>")
    return page
