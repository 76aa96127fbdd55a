"""The dataset card's annotation sections, computed on the engine from ``gold.clips``.

Attribute distributions per source and split (arrays exploded: a clip counts once for each tag it
has), talking and speech shares, the lip-sync offset histogram of clips with speech and the
caption keyword cloud (the paper's Figure 3). Each is one Spark aggregate whose result is bounded
(vocabulary x sources x splits, sources, histogram bins, the top words); no clip row reaches the
driver. Every function takes gold as a DataFrame and tolerates the annotation columns being
absent (today's gold): it returns ``None`` or an empty frame, and the card says so.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

import pandas as pd
from pyspark.sql import functions as F

from facevid.jobs.report import bar_png, finish_png, gold_spec, html_img, html_table
from facevid.jobs.report_agreement import agreement
from facevid.jobs.stages.bronze.manifest import LABEL_ATTRIBUTES, MANY

ANNOTATION_COLUMNS = (*LABEL_ATTRIBUTES, "caption", "caption_backend", "av_offset_ms", "av_confidence",
                      "speech_frac", "has_speech")
UNSET = "(unset)"  # a one-valued attribute that is null, a many-valued one that is null or empty
ALL = "(all)"
TALK_ACTIONS = ("Talk", "Speak")  # the vocabulary's two words for a talking clip
MAX_BINS = 60
BIN_MS = 40.0  # one video frame at 25 fps: the lip-sync search's step


def gold_frame(ctx: Any) -> Any:
    """``gold.clips`` as a DataFrame, or ``None`` when gold was never built."""
    return ctx.current("gold.clips") if ctx.lake.exists("gold.clips") else None


def has_annotations(gold: Any) -> bool:
    return gold is not None and any(c in gold.columns for c in ANNOTATION_COLUMNS)


def _values(gold: Any, attr: str) -> Any:
    """(source, split, value) of one attribute; arrays exploded, unset values as ``UNSET``."""
    col = F.col(attr)
    if LABEL_ATTRIBUTES[attr] == MANY:
        tags = F.array_distinct(col)
        value = F.explode(F.when(F.coalesce(F.size(tags), F.lit(0)) > 0, tags).otherwise(F.array(F.lit(UNSET))))
    else:
        value = F.coalesce(F.when(F.trim(col) != "", col), F.lit(UNSET))
    return gold.select("source", "split", F.lit(attr).alias("attribute"), value.alias("value"))


def attribute_distributions(gold: Any) -> pd.DataFrame:
    """Clips per attribute value, source and split, with ``share`` = clips / the group's clips, plus
    ``(all)`` rows per source, per split and overall (columns attribute, source, split, value,
    clips, share)."""
    cols = ["attribute", "source", "split", "value", "clips", "share"]
    attrs = [a for a in LABEL_ATTRIBUTES if gold is not None and a in gold.columns]
    if not attrs:
        return pd.DataFrame(columns=cols)
    stacked = _values(gold, attrs[0])
    for attr in attrs[1:]:
        stacked = stacked.unionByName(_values(gold, attr))
    counts = stacked.groupBy("attribute", "source", "split", "value").agg(F.count(F.lit(1)).alias("clips"))
    per = counts.toPandas()  # bounded: vocabulary size x sources x splits
    totals = gold.groupBy("source", "split").agg(F.count(F.lit(1)).alias("n")).toPandas()  # bounded: sources x splits
    frames = []
    for keys in (["source", "split"], ["source"], ["split"], []):
        part = per.groupby(["attribute", *keys, "value"], as_index=False)["clips"].sum()
        n = totals.groupby(keys, as_index=False)["n"].sum() if keys else pd.DataFrame({"n": [totals["n"].sum()]})
        part = part.merge(n, on=keys) if keys else part.assign(n=int(n["n"].iloc[0]))
        for k in ("source", "split"):
            if k not in keys:
                part[k] = ALL
        frames.append(part)
    out = pd.concat(frames, ignore_index=True)
    out["clips"] = out["clips"].astype(int)
    out["share"] = out["clips"] / out["n"]
    return out[cols].sort_values(["attribute", "source", "split", "clips", "value"],
                                 ascending=[True, True, True, False, True], ignore_index=True)


def distribution_table(dist: pd.DataFrame, attr: str) -> pd.DataFrame:
    """One attribute as a page table: a row per value, ``clips (share)`` for every source/split."""
    d = dist[dist["attribute"] == attr]
    if d.empty:
        return pd.DataFrame()
    d = d.assign(group=[ALL if (s, p) == (ALL, ALL) else f"{s} / {p}" for s, p in zip(d["source"], d["split"],
                                                                                      strict=True)],
                 cell=[f"{c} ({v:.0%})" for c, v in zip(d["clips"], d["share"], strict=True)])
    d = d[(d["source"] == ALL) == (d["split"] == ALL)]  # overall and per source/split (not the margins)
    table = d.pivot(index="value", columns="group", values="cell").fillna("0")
    order = d[d["group"] == ALL].sort_values(["clips", "value"], ascending=[False, True])["value"].tolist()
    order = [v for v in order if v != UNSET] + [v for v in order if v == UNSET]
    groups = [ALL] + sorted(g for g in table.columns if g != ALL)
    table = table.reindex(index=order, columns=groups)
    table.columns.name = None
    return table.reset_index()


def speech_shares(gold: Any) -> pd.DataFrame:
    """Per source and overall: clips, clips whose speech was measured and with speech (share of the
    measured), mean ``speech_frac``, clips with an action annotation and those talking
    (``TALK_ACTIONS``; share of the annotated)."""
    if gold is None or not {"has_speech", "action"} & set(gold.columns):
        return pd.DataFrame()
    aggs = [F.count(F.lit(1)).alias("clips")]
    if "has_speech" in gold.columns:
        aggs += [F.count("has_speech").alias("speech_measured"),
                 F.sum(F.col("has_speech").cast("int")).alias("with_speech")]
    if "speech_frac" in gold.columns:
        aggs.append(F.avg("speech_frac").alias("mean_speech_frac"))
    if "action" in gold.columns:
        talk = F.arrays_overlap("action", F.array(*[F.lit(a) for a in TALK_ACTIONS]))
        aggs += [F.count("action").alias("action_annotated"), F.sum(F.coalesce(talk, F.lit(False)).cast("int"))
                 .alias("talking")]
    per = gold.groupBy("source").agg(*aggs).unionByName(gold.agg(*aggs).withColumn("source", F.lit(ALL)))
    out = per.toPandas()  # bounded: one row per source
    out = out.assign(_all=out["source"].eq(ALL)).sort_values(["_all", "source"], ignore_index=True).drop(columns="_all")
    if "with_speech" in out:
        out["speech_share"] = out["with_speech"] / out["speech_measured"].where(out["speech_measured"] > 0)
    if "talking" in out:
        out["talk_share"] = out["talking"] / out["action_annotated"].where(out["action_annotated"] > 0)
    first = ["source", "clips", "speech_measured", "with_speech", "speech_share", "mean_speech_frac",
             "action_annotated", "talking", "talk_share"]
    return out[[c for c in first if c in out]]


def lipsync_histogram(gold: Any, bin_ms: float = BIN_MS) -> dict[str, Any] | None:
    """``av_offset_ms`` of the clips with speech, binned on the engine: bins of ``bin_ms`` centred
    on multiples of it (0 is a bin centre), widened to at most ``MAX_BINS``. Returns ``n_speech``,
    ``n_measured`` (with speech and an offset: the counts sum to it), ``centres``, ``counts``,
    ``width``; ``None`` without the columns."""
    if gold is None or not {"has_speech", "av_offset_ms"} <= set(gold.columns):
        return None
    speech = gold.filter(F.col("has_speech"))
    measured = speech.filter(F.col("av_offset_ms").isNotNull() & ~F.isnan("av_offset_ms"))
    stats = measured.agg(F.count(F.lit(1)).alias("n"), F.min("av_offset_ms").alias("lo"),
                         F.max("av_offset_ms").alias("hi")).first()
    n_speech = speech.count()
    width = float(bin_ms)
    if stats["n"]:
        while (stats["hi"] - stats["lo"]) / width + 1 > MAX_BINS:
            width *= 2
    index = F.floor(F.col("av_offset_ms") / F.lit(width) + F.lit(0.5)).cast("long")
    known = (F.coalesce(F.col("av_sync_reliable"), F.lit(False)) if "av_sync_reliable" in gold.columns
             else F.lit(False))
    bins = measured.groupBy(index.alias("bin")).agg(F.count(F.lit(1)).alias("clips"),
                                                    F.sum(known.cast("int")).alias("known")).orderBy("bin")
    got = bins.toPandas() if stats["n"] else pd.DataFrame({"bin": [], "clips": [], "known": []})  # bounded: <= MAX_BINS bins
    return {"n_speech": int(n_speech), "n_measured": int(stats["n"]), "width": width,
            "centres": (got["bin"].astype(float) * width).tolist(), "counts": got["clips"].astype(int).tolist(),
            "significant": got["known"].fillna(0).astype(int).tolist()}


def lipsync_png(plt: Any, out: Path, hist: dict[str, Any] | None, bounds: tuple[float | None, float | None],
                name: str = "lipsync.png") -> str | None:
    """The histogram as a bar plot with the gold rule's bounds (when one is declared) drawn."""
    if not hist or not hist["n_measured"]:
        return None
    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=100)
    known = hist.get("significant") or [0] * len(hist["counts"])
    rest = [c - k for c, k in zip(hist["counts"], known, strict=True)]
    ax.bar(hist["centres"], rest, width=hist["width"] * 0.9, color="#a8c0d8",
           label=f"clips with speech (n={hist['n_measured']}): offset not significant")
    ax.bar(hist["centres"], known, bottom=rest, width=hist["width"] * 0.9, color="#4878a8",
           label=f"significant (av_sync_reliable, n={sum(known)}): judged by the rule")
    return finish_png(plt, fig, ax, out, name, "lip-sync offset (positive: audio later than video)",
                      "av_offset_ms", bounds, "rule {:g} ms")


def caption_words(gold: Any, top_n: int = 200, stopwords: frozenset[str] | None = None) -> pd.DataFrame:
    """The ``top_n`` most frequent caption words (lower case, letters and inner apostrophes, at
    least 3 letters, ``'s`` dropped, stop words removed: wordcloud's list by default), counted on
    the engine; columns word, count (ties by word)."""
    if gold is None or "caption" not in gold.columns:
        return pd.DataFrame(columns=["word", "count"])
    if stopwords is None:
        from wordcloud import STOPWORDS

        stopwords = frozenset(STOPWORDS)
    text = F.regexp_replace(F.lower(F.col("caption")), r"[^\p{L}']+", " ")
    words = gold.filter(F.col("caption").isNotNull()).select(F.explode(F.split(text, " ")).alias("w"))
    word = F.regexp_replace(F.regexp_replace(F.col("w"), r"'s$", ""), r"^'+|'+$", "")
    counts = (words.select(word.alias("word")).filter(F.length("word") >= 3)
              .filter(~F.col("word").isin(*sorted(stopwords))).groupBy("word").agg(F.count(F.lit(1)).alias("count"))
              .orderBy(F.desc("count"), "word").limit(top_n))
    return counts.toPandas()  # bounded: top_n words


def wordcloud_png(out: Path, words: pd.DataFrame, name: str = "wordcloud.png", seed: int = 0) -> str | None:
    """The keyword cloud of ``caption_words`` (deterministic: a fixed ``random_state``)."""
    if words.empty:
        return None
    from wordcloud import WordCloud

    cloud = WordCloud(width=800, height=400, background_color="white", random_state=seed,
                      max_words=len(words), prefer_horizontal=0.9)
    cloud.generate_from_frequencies(dict(zip(words["word"], words["count"].astype(int), strict=True)))
    cloud.to_file(str(out / name))
    return name


NONE_YET = '<p class="na">no annotations yet</p>'


def _rule_bounds(ctx: Any, column: str) -> tuple[float | None, float | None]:
    spec = gold_spec(ctx)
    rule = next((r for r in spec.params.rules.values() if r.column == column), None) if spec else None
    return (rule.min, rule.max) if rule is not None else (None, None)


def annotation_sections(ctx: Any, out: Path, plt: Any) -> list[str]:
    """The card's HTML for the annotation sections (and their PNGs under ``out``)."""
    gold = gold_frame(ctx)
    parts = ["<h2>Annotations: attributes per source and split</h2>"]
    dist = attribute_distributions(gold)
    if dist.empty:
        parts.append(NONE_YET)
    for attr in [a for a in LABEL_ATTRIBUTES if a in set(dist["attribute"])]:
        overall = dist[(dist["attribute"] == attr) & (dist["source"] == ALL) & (dist["split"] == ALL)
                       & (dist["value"] != UNSET)].head(20)
        parts += [f"<h3>{html.escape(attr)} ({'several values' if LABEL_ATTRIBUTES[attr] == MANY else 'one value'}"
                  " per clip)</h3>",
                  html_img(bar_png(plt, out, f"attr_{attr}.png", overall["value"].tolist(), overall["share"].tolist(),
                                   f"{attr}: share of gold clips"), attr),
                  html_table(distribution_table(dist, attr))]
    parts.append("<h2>Caption keywords</h2>")
    words = caption_words(gold)
    parts.append(html_img(wordcloud_png(out, words), "caption keywords") if not words.empty else NONE_YET)
    parts.append("<h2>Talking and speech</h2>")
    speech = speech_shares(gold)
    parts.append(html_table(speech) if not speech.empty else NONE_YET)
    parts.append("<h2>Lip-sync offsets</h2>")
    hist = lipsync_histogram(gold)
    if hist is None:
        parts.append(NONE_YET)
    else:
        parts.append(f"<p>{hist['n_measured']} of {hist['n_speech']} clips with speech have a measured offset "
                     f"(bins of {hist['width']:g} ms).</p>")
        parts.append(html_img(lipsync_png(plt, out, hist, _rule_bounds(ctx, "av_offset_ms")), "lip-sync offsets"))
    parts.append("<h2>Agreement with the labels sources declare</h2>")
    graded = agreement(ctx, gold)
    if graded is None:
        why = NONE_YET if not has_annotations(gold) else \
            '<p class="na">no source declares labels (<code>labels:</code> in pipeline.yml)</p>'
        parts.append(why)
    else:
        summary, per_label = graded
        parts += ["<p>Accuracy for one-valued attributes; micro/macro F1 for many-valued ones "
                  "(a clip without an answer counts as wrong / as no tags).</p>", html_table(summary),
                  "<h3>Per label</h3>", html_table(per_label)]
    return parts
