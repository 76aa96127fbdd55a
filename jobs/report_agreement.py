"""The card's agreement tables: the caption backend's attributes graded against the labels a source
declared (``labels:`` in ``pipeline.yml``, kept on ``bronze.files.declared_labels``).

A gold clip's declared labels come from its video (``video_id``; of several files with labels,
the smallest URI's): the whole-video line, overridden attribute by attribute by the span line
that overlaps the clip most, where each span line belongs to the one clip of its video it
overlaps most (among ``silver.clips``, so a span whose best clip left gold grades nothing; ties:
the earlier clip). Values compare case-insensitively. Per attribute, source and backend:

- one value (ethnicity, emotion): ``labelled`` clips (a declared value), ``answered`` (the backend
  gave one), ``accuracy`` = matches / labelled (no answer counts as wrong);
- many values (appearance, lighting, action): per label, over the labelled clips (a missing
  answer is the empty set), TP = in both, FP = answered only, FN = declared only, precision,
  recall, F1 = 2TP / (2TP + FP + FN); ``micro_f1`` from the summed counts, ``macro_f1`` the mean
  of the per-label F1 over every label either side used.

All on the engine; what comes to the driver is bounded by sources x backends x attributes x labels.
"""

from __future__ import annotations

import operator
from functools import reduce
from typing import Any

import numpy as np
import pandas as pd
from pyspark.sql import Window
from pyspark.sql import functions as F

from facevid.jobs.stages.bronze.manifest import LABEL_ATTRIBUTES, MANY, SPAN

ALL = "(all)"
SUMMARY = ["source", "backend", "attribute", "kind", "labelled", "answered", "accuracy", "micro_precision",
           "micro_recall", "micro_f1", "macro_f1"]
PER_LABEL = ["source", "backend", "attribute", "label", "tp", "fp", "fn", "precision", "recall", "f1"]


def _type(attr: str) -> str:
    return "array<string>" if LABEL_ATTRIBUTES[attr] == MANY else "string"


def labels_schema() -> str:
    """``from_json`` schema of ``declared_labels`` (``facevid.jobs.stages.bronze.manifest``)."""
    fields = [f"{a}: {_type(a)}" for a in LABEL_ATTRIBUTES]
    span = ", ".join([f"{c}: double" for c in SPAN] + fields)
    return ", ".join([f"{a} {_type(a)}" for a in LABEL_ATTRIBUTES] + [f"spans array<struct<{span}>>"])


def _norm(col: Any, attr: str) -> Any:
    """Lower case, trimmed; empty strings are no value."""
    if LABEL_ATTRIBUTES[attr] == MANY:
        return F.array_distinct(F.filter(F.transform(col, lambda x: F.lower(F.trim(x))), lambda x: x != ""))
    return F.when(F.trim(col) != "", F.lower(F.trim(col)))


def clip_labels(ctx: Any, gold: Any) -> Any:
    """(clip_id, <attribute>...) of the gold clips whose video declared labels, or ``None`` when no
    source declares any (bronze.files without the column, or all null)."""
    if gold is None or not ctx.lake.exists("bronze.files"):
        return None
    files = ctx.current("bronze.files")
    if "declared_labels" not in files.columns:
        return None
    files = files.filter(F.col("error").isNull() & F.col("declared_labels").isNotNull())
    if not files.limit(1).count():
        return None
    first = files.groupBy("video_id").agg(F.min("uri").alias("uri"))
    parsed = files.join(first, ["video_id", "uri"]).select("video_id", F.from_json("declared_labels", labels_schema())
                                                           .alias("d"))
    clips = gold.select("clip_id", "video_id")
    cands = gold
    if ctx.lake.exists("silver.clips"):
        cands = ctx.current("silver.clips").filter(F.col("error").isNull())
    cands = cands.select("clip_id", "video_id", F.col("start_s").alias("c0"), F.col("end_s").alias("c1"))
    spans = parsed.select("video_id", F.posexplode("d.spans").alias("span", "s"))
    hit = (spans.join(cands, "video_id").withColumn("ov", F.least("c1", "s.end_s") - F.greatest("c0", "s.start_s"))
           .filter(F.col("ov") > 0))
    per_span = Window.partitionBy("video_id", "span").orderBy(F.desc("ov"), "c0", "clip_id")
    per_clip = Window.partitionBy("clip_id").orderBy(F.desc("ov"), "s.start_s", "span")
    best = (hit.withColumn("r", F.row_number().over(per_span)).filter(F.col("r") == 1)
            .withColumn("r", F.row_number().over(per_clip)).filter(F.col("r") == 1)
            .select("clip_id", *[F.col(f"s.{a}").alias(f"s_{a}") for a in LABEL_ATTRIBUTES]))
    whole = parsed.select("video_id", *[F.col(f"d.{a}").alias(f"w_{a}") for a in LABEL_ATTRIBUTES])
    out = (clips.join(whole, "video_id", "left").join(best, "clip_id", "left")
           .select("clip_id", *[F.coalesce(f"s_{a}", f"w_{a}").alias(a) for a in LABEL_ATTRIBUTES]))
    return out.filter(reduce(operator.or_, [F.col(a).isNotNull() for a in LABEL_ATTRIBUTES]))


def _ratio(num: Any, den: Any) -> Any:
    num, den = np.asarray(num, dtype=float), np.asarray(den, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1), np.nan)


def _with_all(df: pd.DataFrame, keys: list[str], sums: list[str]) -> pd.DataFrame:
    """``df`` plus ``(all)``-source rows summing ``sums`` over sources (when there are several)."""
    if df.empty or df["source"].nunique() < 2:
        return df
    total = df.groupby(["backend", *keys], as_index=False)[sums].sum().assign(source=ALL)
    return pd.concat([df, total], ignore_index=True)


def agreement(ctx: Any, gold: Any) -> tuple[pd.DataFrame, pd.DataFrame] | None:
    """(summary per source, backend and attribute; per-label counts of the many-valued attributes),
    or ``None`` when no source declares labels or gold has no attribute columns."""
    attrs = [a for a in LABEL_ATTRIBUTES if gold is not None and a in gold.columns]
    labels = clip_labels(ctx, gold) if attrs else None
    if labels is None:
        return None
    backend = F.col("caption_backend") if "caption_backend" in gold.columns else F.lit(None).cast("string")
    pred = gold.select("clip_id", "source", F.coalesce(backend, F.lit("(unknown)")).alias("backend"),
                       *[_norm(F.col(a), a).alias(f"p_{a}") for a in attrs])
    j = pred.join(labels.select("clip_id", *[_norm(F.col(a), a).alias(f"d_{a}") for a in attrs]), "clip_id")
    one = [a for a in attrs if LABEL_ATTRIBUTES[a] != MANY]
    many = [a for a in attrs if LABEL_ATTRIBUTES[a] == MANY]
    counts, labelled = [], []
    for a in attrs:
        sub = j.filter(F.col(f"d_{a}").isNotNull())
        stats = [F.count(F.lit(1)).alias("labelled"), F.count(f"p_{a}").alias("answered")]
        if a in one:
            stats.append(F.sum((F.col(f"p_{a}") == F.col(f"d_{a}")).cast("int")).alias("correct"))
        else:
            stats.append(F.lit(None).cast("long").alias("correct"))
        labelled.append(sub.groupBy("source", "backend").agg(*stats).withColumn("attribute", F.lit(a)))
        if a in many:
            p, d = F.coalesce(f"p_{a}", F.array().cast("array<string>")), F.col(f"d_{a}")
            lab = sub.select("source", "backend", p.alias("p"), d.alias("d"),
                             F.explode(F.array_union(p, d)).alias("label"))
            inp, ind = F.array_contains("p", F.col("label")), F.array_contains("d", F.col("label"))
            counts.append(lab.groupBy("source", "backend", "label").agg(
                F.sum((inp & ind).cast("int")).alias("tp"), F.sum((inp & ~ind).cast("int")).alias("fp"),
                F.sum((~inp & ind).cast("int")).alias("fn")).withColumn("attribute", F.lit(a)))
    summary = labelled[0]
    for df in labelled[1:]:
        summary = summary.unionByName(df)
    summary = summary.toPandas()  # bounded: sources x backends x attributes
    per_label = pd.DataFrame(columns=["source", "backend", "attribute", "label", "tp", "fp", "fn"])
    if counts:
        frame = counts[0]
        for df in counts[1:]:
            frame = frame.unionByName(df)
        per_label = frame.toPandas()  # bounded: sources x backends x labels of the many-valued attributes
    return _scores(summary, per_label)


def _scores(summary: pd.DataFrame, per_label: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Accuracy, micro and macro F1 from the counts (with ``(all)`` sources where several)."""
    summary = _with_all(summary.fillna({"correct": 0}), ["attribute"], ["labelled", "answered", "correct"])
    per_label = _with_all(per_label, ["attribute", "label"], ["tp", "fp", "fn"])
    for c in ("tp", "fp", "fn"):
        per_label[c] = per_label[c].astype(int)
    per_label["precision"] = _ratio(per_label["tp"], per_label["tp"] + per_label["fp"])
    per_label["recall"] = _ratio(per_label["tp"], per_label["tp"] + per_label["fn"])
    per_label["f1"] = _ratio(2 * per_label["tp"], 2 * per_label["tp"] + per_label["fp"] + per_label["fn"])
    keys = ["source", "backend", "attribute"]
    micro = per_label.groupby(keys, as_index=False).agg(tp=("tp", "sum"), fp=("fp", "sum"), fn=("fn", "sum"),
                                                        macro_f1=("f1", "mean"))
    micro["micro_precision"] = _ratio(micro["tp"], micro["tp"] + micro["fp"])
    micro["micro_recall"] = _ratio(micro["tp"], micro["tp"] + micro["fn"])
    micro["micro_f1"] = _ratio(2 * micro["tp"], 2 * micro["tp"] + micro["fp"] + micro["fn"])
    out = summary.merge(micro.drop(columns=["tp", "fp", "fn"]), on=keys, how="left")
    one = out["attribute"].map(LABEL_ATTRIBUTES) != MANY
    out["kind"] = np.where(one, "one", "many")
    out["accuracy"] = np.where(one, _ratio(out["correct"], out["labelled"]), np.nan)
    for c in ("labelled", "answered"):
        out[c] = out[c].astype(int)
    order = {a: i for i, a in enumerate(LABEL_ATTRIBUTES)}
    out = out.assign(_all=out["source"].eq(ALL), _a=out["attribute"].map(order))
    out = out.sort_values(["_all", "source", "backend", "_a"], ignore_index=True)[SUMMARY]
    per_label = per_label.assign(_all=per_label["source"].eq(ALL), _a=per_label["attribute"].map(order))
    per_label = per_label.sort_values(["_all", "source", "backend", "_a", "label"], ignore_index=True)[PER_LABEL]
    return out, per_label
