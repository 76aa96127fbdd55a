"""``gold.select`` -> ``gold.clips``: the dataset, decided from silver scores by declared rules.

Score, then decide: no model runs here, so changing a threshold in ``pipeline.yml`` and
re-running rebuilds gold in seconds. Every clip that does not reach gold gets one quarantine row
per failed rule (``gold.<rule>``, measured value, threshold). The candidate gold table passes the
Great Expectations gate (``facevid.jobs.gate``) before it is committed; a failed gate leaves the previous
gold version current and the job exits non-zero.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from pyspark.sql import functions as F

from facevid.jobs.config import ConfigError, StageSpec
from facevid.jobs.lineage import BOOKKEEPING
from facevid.jobs.stages.base import TableOp, register
from facevid.udfs.base import validate
from facevid.udfs.curation.gold import (
    Rule,
    SplitParams,
    apply_rules,
    assign_splits,
    cap_per_identity,
    parse_rank,
)
from facevid.udfs.curation.verdicts import RestorationPolicy, apply_restoration, apply_verdicts

GOLD_COLUMNS: dict[str, str] = {
    "clip_id": "string", "video_id": "string", "source": "string", "license": "string",
    "video_uri": "string", "start_s": "double", "end_s": "double", "duration_s": "double", "fps": "double",
    "width": "int", "height": "int", "identity_id": "string", "identity_origin": "string",
    "identity_clip_count": "int", "quality_rank": "int", "split": "string",
    "crop_uri": "string", "crop_side": "int", "crop_size": "int", "has_audio": "boolean",
    "n_tracks": "int", "face_frac": "double", "multi_face_frac": "double", "face_px": "double",
    "face_area_frac": "double", "sharpness_face": "double", "sharpness_frame": "double",
    "brightness_mean": "double", "dark_frac": "double", "bright_frac": "double", "border_px": "int",
    "ocr_chars": "int", "motion_mean": "double", "motion_global": "double", "static_frac": "double",
    "yaw_deg": "double", "pitch_deg": "double", "roll_deg": "double", "frontal_frac": "double",
    "aesthetic": "double", "iqa": "double", "fiqa": "double", "age": "double",
    # annotations (silver.captions; arrays stay arrays) and audio-visual signals (silver.av)
    "ethnicity": "string", "appearance": "array<string>", "lighting": "array<string>",
    "action": "array<string>", "emotion": "string", "caption": "string", "caption_backend": "string",
    "caption_model": "string", "av_offset_ms": "double", "av_confidence": "double", "av_sync_z": "double",
    "av_sync_reliable": "boolean", "speech_frac": "double",
    "has_speech": "boolean", "blink_count": "int", "nod_count": "int", "shake_count": "int",
    "n_frames": "int",  # frames in crop_uri
    # restoration (silver.restored): crop_uri is the file gold publishes (the restored one unless the
    # policy falls back), unrestored_uri the crop, restoration one of none|restored|pending|rejected
    "unrestored_uri": "string", "restored_uri": "string", "restoration": "string", "restore_backend": "string",
    "eye_score": "double", "eye_flagged": "boolean",
    # review (review.verdicts): reviewed values replace model values; the models' changed ones stay here
    "age_group": "string", "reviewed_fields": "array<string>", "model_annotations": "string",
    "published_at": "timestamp",
}
# input columns renamed on the way into gold (the captions table's generic names)
RENAMES = {"backend": "caption_backend", "model": "caption_model"}


def _carried(field: Any) -> bool:
    """Scalars and arrays of strings (attributes) come to the driver; tracks and series stay."""
    kind = field.dataType.typeName()
    if kind == "array":
        return field.dataType.elementType.typeName() == "string"
    return kind not in ("map", "struct")


@dataclass
class GateParams:
    """What the gate promises about gold (independent of how selection got there)."""

    identity_max_clips: int = 10
    silver_identity_share: float = 0.95
    max_shrink: float = 0.05  # a candidate dropping more of the published clips fails (unless --allow-shrink)
    suites: list[str] | None = None  # suite files (names without .yml); None = every file

    def __post_init__(self) -> None:
        validate("gold.gate", [
            (self.identity_max_clips >= 1, f"identity_max_clips must be >= 1, got {self.identity_max_clips}"),
            (0 <= self.silver_identity_share <= 1, "silver_identity_share must be in [0, 1]"),
            (0 <= self.max_shrink <= 1, f"max_shrink must be in [0, 1], got {self.max_shrink}"),
        ])


@dataclass
class GoldParams:
    """Rules, the per-identity cap and its ranking, the split, and the gate."""

    rules: dict[str, Any] = field(default_factory=dict)
    per_identity_max_clips: int | None = 10
    rank_by: list[str] = field(default_factory=lambda: ["sharpness_face desc", "clip_id"])
    split: Any = field(default_factory=dict)
    gate: Any = field(default_factory=dict)
    expectations_path: str | None = None
    result_dir: str = "_validation"  # validation results: relative = under the files root (the lake root of a path lake)
    restoration: Any = field(default_factory=dict)  # RestorationPolicy: on_flag, on_reject
    verdicts: str = "review.verdicts"  # reviewers' verdicts, read when the table exists

    @property
    def side_inputs(self) -> tuple[str, ...]:
        """Tables read besides the inputs (their versions are logged with the run)."""
        return (self.verdicts,)

    def __post_init__(self) -> None:
        self.restoration = (self.restoration if isinstance(self.restoration, RestorationPolicy)
                            else RestorationPolicy(**(self.restoration or {})))
        if not isinstance(self.rules, dict):
            raise ValueError("gold.rules must map rule names to {column, min, max} or {column, is_null}")
        self.rules = {name: r if isinstance(r, Rule) else Rule.parse(name, r) for name, r in self.rules.items()}
        self.split = self.split if isinstance(self.split, SplitParams) else SplitParams(**(self.split or {}))
        self.gate = self.gate if isinstance(self.gate, GateParams) else GateParams(**(self.gate or {}))
        parse_rank(self.rank_by)
        validate("gold", [
            (self.per_identity_max_clips is None or self.per_identity_max_clips >= 1,
             f"per_identity_max_clips must be >= 1 or null, got {self.per_identity_max_clips}"),
            (self.expectations_path is None or Path(self.expectations_path).is_dir(),
             f"expectations_path {self.expectations_path} is not a local directory"),
            (isinstance(self.result_dir, str) and bool(self.result_dir.strip("/")),
             f"result_dir must name a folder, got {self.result_dir!r}"),
        ])


LEDGER_TYPES = {"clip_id": "string", "identity_id": "string", "split": "string", "published_at": "timestamp",
                "run_id": "string"}


def _load(ctx: Any, table: str, key: str) -> pd.DataFrame:
    """Current rows of an input table, one per key, with a ``_row`` marker and ``_error``; only its
    scalar columns come to the driver (tracks, embeddings and hashes stay in the lake)."""
    sdf = ctx.current(table)
    keep = [f.name for f in sdf.schema.fields if _carried(f) and (f.name == "error" or f.name not in BOOKKEEPING)]
    df = sdf.select(*keep).toPandas().rename(columns={"error": "_error", **RENAMES})  # bounded: scalars + attribute arrays per clip (class docstring)
    df["_row"] = True
    return df.drop_duplicates(key)


@register
class SelectGold(TableOp):
    """Declared rules over the joined silver tables, at most N clips per identity (best first by
    ``rank_by``), a sticky identity-disjoint train/test split; gated by Great Expectations.

    On the driver: one row per clip of the joined silver scores (no track, embedding, hash or
    signal-series arrays; ~60 scalars, the attribute arrays and the caption, about 3 KB a clip,
    ~0.8 GB at 270k clips), because the per-identity cap,
    the sticky split and the Great Expectations gate decide over the whole candidate table."""

    name = "gold.select"
    default_input = ["silver.clips", "silver.faces", "silver.quality", "silver.crops", "silver.identities",
                     "bronze.videos", "silver.av", "silver.captions"]
    default_output = "gold.clips"
    rejections = "gold.rejections"
    ledger = "gold.ledger"
    key = "clip_id"
    columns = GOLD_COLUMNS
    params_cls = GoldParams

    def build(self, ctx: Any, spec: StageSpec, previous: pd.DataFrame | None) -> pd.DataFrame:
        self._merged, self._spec = self.merge(ctx, spec), spec
        params: GoldParams = spec.params
        verdicts = self.read_verdicts(ctx, spec)
        clips, excluded = apply_restoration(self._merged, verdicts, params.restoration)
        clips = self._recaption(ctx, apply_verdicts(clips, verdicts, self._many(ctx)))
        self._merged = clips
        rules = list(params.rules.values())
        if "identity_id" not in {r.column for r in rules}:
            rules.append(Rule(name="identity", column="identity_id", is_null=False))
        ready = pd.DataFrame({r.name: self._ready(clips, r.column) for r in rules}, index=clips.index)
        passed, failures = apply_rules(clips, rules, ready)
        gold = clips[passed].copy()
        gold["quality_rank"] = cap_per_identity(gold, params.per_identity_max_clips, params.rank_by)
        if params.per_identity_max_clips is not None:
            over = gold["quality_rank"] > params.per_identity_max_clips
            failures = pd.concat([failures, pd.DataFrame({
                "clip_id": gold.loc[over, "clip_id"], "video_id": gold.loc[over, "video_id"],
                "rule": "per_identity_max_clips", "value": gold.loc[over, "quality_rank"].astype(str),
                "threshold": f"rank <= {params.per_identity_max_clips} by {', '.join(params.rank_by)}",
            })], ignore_index=True)
            gold = gold[~over]
        if len(excluded):
            failures = pd.concat([failures, excluded.assign(
                rule="restoration", threshold=f"restoration accepted (on_flag/on_reject: "
                f"{params.restoration.on_flag}/{params.restoration.on_reject})")], ignore_index=True)
            gold = gold[~gold["clip_id"].isin(excluded["clip_id"])]
        gold["identity_clip_count"] = gold.groupby("identity_id")["clip_id"].transform("size")
        ledger = self.read_ledger(ctx)
        gold["split"] = assign_splits(gold, ledger, params.split)
        now = pd.Timestamp.now(tz="UTC")
        first = dict(zip(ledger["clip_id"], ledger["published_at"], strict=True))
        gold["published_at"] = gold["clip_id"].map(lambda c: first.get(c, now))
        self._failures = self._with_incomplete(clips, passed, failures)
        for col in GOLD_COLUMNS:
            if col not in gold:
                gold[col] = None
        return gold[list(GOLD_COLUMNS)].reset_index(drop=True)

    def merge(self, ctx: Any, spec: StageSpec) -> pd.DataFrame:
        """Good clips of the first input left-joined with every other input's current rows;
        ``_row_<i>``/``_error_<i>`` say whether input ``i`` has a row and whether it is an error."""
        clips = ctx.current(spec.inputs[0]).filter("error IS NULL").toPandas()  # bounded: scalar clip rows (class docstring)
        clips = clips.drop(columns=[c for c in BOOKKEEPING if c in clips])
        self._owner: dict[str, int] = {c: 0 for c in clips.columns}
        for i, table in enumerate(spec.inputs[1:], start=1):
            key = "clip_id" if "clip_id" in ctx.lake.read(table).columns else "video_id"
            other = _load(ctx, table, key).rename(columns={"_row": f"_row_{i}", "_error": f"_error_{i}"})
            new = [c for c in other.columns if c not in clips.columns or c == key]
            self._owner.update({c: i for c in new if c != key and not c.startswith("_")})
            clips = clips.merge(other[new], on=key, how="left")
        return clips

    def read_verdicts(self, ctx: Any, spec: StageSpec) -> pd.DataFrame:
        """The latest verdict per (clip, field) of ``review.verdicts`` (empty when nobody reviewed yet)."""
        from pyspark.sql import Window

        table = spec.params.verdicts
        if not ctx.lake.exists(table):
            return pd.DataFrame(columns=["verdict_id", "clip_id", "field", "verdict", "reviewer_value", "model_value",
                                         "reviewed_at"])
        w = Window.partitionBy("clip_id", "field").orderBy(F.col("reviewed_at").desc(), F.col("verdict_id").desc())
        last = ctx.current(table).withColumn("_n", F.row_number().over(w)).filter("_n = 1").drop("_n")
        return last.select("verdict_id", "clip_id", "field", "verdict", "reviewer_value", "model_value",
                           "reviewed_at").toPandas()  # bounded: one row per reviewed (clip, field)

    def _vocabulary(self, ctx: Any) -> Any:
        """The vocabulary the captions were made with."""
        from facevid.jobs.gate import caption_vocabulary

        return caption_vocabulary(ctx.cfg)

    def _many(self, ctx: Any) -> set[str]:
        """The list-valued attributes."""
        return {a for a, c in self._vocabulary(ctx).cardinality().items() if c == "many"}

    def _recaption(self, ctx: Any, clips: pd.DataFrame) -> pd.DataFrame:
        """Clips whose caption was composed from the attributes (the signals backend) and whose
        attributes a reviewer corrected get the sentence of the corrected values; a VLM's own
        sentence stays as written (README "Review")."""
        from facevid.udfs.annotate.sentence import compose_caption

        fix = clips["model_annotations"].notna() & clips.get("caption_backend", pd.Series(None, index=clips.index)
                                                              ).eq("signals")
        if fix.any():
            vocab = self._vocabulary(ctx)
            attrs = list(vocab.cardinality())
            clips.loc[fix, "caption"] = [compose_caption({a: r.get(a) for a in attrs}, vocab)
                                         for r in clips.loc[fix].to_dict("records")]
        return clips

    def _ready(self, clips: pd.DataFrame, column: str) -> pd.Series:
        """True where the table that owns ``column`` has a good row for the clip."""
        if column not in self._owner:
            raise ConfigError(f"stage {self._spec.name}: rule column {column!r} is in none of its inputs "
                              f"({', '.join(self._spec.inputs)})")
        i = self._owner[column]
        if i == 0:
            return pd.Series(True, index=clips.index)
        return clips[f"_row_{i}"].eq(True) & clips[f"_error_{i}"].isna()

    def _with_incomplete(self, clips: pd.DataFrame, passed: pd.Series, failures: pd.DataFrame) -> pd.DataFrame:
        """Clips kept out only because an input has no row for them yet (e.g. a stage not run)."""
        n = len(self._spec.inputs)
        missing = pd.DataFrame({t: ~clips[f"_row_{i}"].eq(True) for i, t in enumerate(self._spec.inputs) if i},
                               index=clips.index) if n > 1 else pd.DataFrame(index=clips.index)
        errored = pd.Series(False, index=clips.index)
        for i in range(1, n):
            errored |= clips[f"_row_{i}"].eq(True) & clips[f"_error_{i}"].notna()
        lone = ~passed & ~clips["clip_id"].isin(failures["clip_id"]) & ~errored & missing.any(axis=1)
        if lone.any():
            tables = missing[lone].apply(lambda r: ", ".join(t for t, m in r.items() if m), axis=1)
            failures = pd.concat([failures, pd.DataFrame({
                "clip_id": clips.loc[lone, "clip_id"], "video_id": clips.loc[lone, "video_id"],
                "rule": "incomplete", "value": "no row in " + tables, "threshold": "a row in every input"})],
                ignore_index=True)
        return failures

    def quarantine_rows(self, spec: StageSpec, table: pd.DataFrame) -> pd.DataFrame:
        f = self._failures
        return pd.DataFrame({"key": f["clip_id"], "video_id": f["video_id"], "clip_id": f["clip_id"],
                             "rule": spec.name + "." + f["rule"], "value": f["value"], "threshold": f["threshold"],
                             "error": None})

    def check(self, ctx: Any, spec: StageSpec, table: pd.DataFrame) -> None:
        from facevid.jobs.gate import gate_gold

        gate_gold(ctx, spec, table)

    def read_ledger(self, ctx: Any) -> pd.DataFrame:
        """The publication ledger: one row per clip ever published (its identity, the split it was
        published in, when). Append-only, so a gold version bump or a rebuild never moves a published
        identity to another split nor changes a clip's ``published_at``."""
        if not ctx.lake.exists(self.ledger):
            return pd.DataFrame(columns=list(LEDGER_TYPES))
        return ctx.current(self.ledger).toPandas()  # bounded: 4 short columns per published clip

    def record(self, ctx: Any, spec: StageSpec, table: pd.DataFrame) -> int:
        """Append the clips this gold publishes for the first time to the ledger (before gold is
        committed: a run that dies in between finds them there and publishes the same splits)."""
        from facevid.jobs.adapter import conform

        known = set(self.read_ledger(ctx)["clip_id"])
        new = table[~table["clip_id"].isin(known)]
        if not len(new):
            return 0
        rows = conform(new[["clip_id", "identity_id", "split", "published_at"]].assign(run_id=ctx.run_id)
                       .reset_index(drop=True), LEDGER_TYPES)
        ddl = ", ".join(f"{c} {t}" for c, t in LEDGER_TYPES.items())
        ctx.lake.append(self.ledger, ctx.spark.createDataFrame(rows, ddl))
        return 1
