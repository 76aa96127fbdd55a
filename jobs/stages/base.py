"""What a stage op declares: its tables, keys, columns, typed params and a pure row function.

Input frames carry ``_input_fp``, each row's input fingerprint (``facevid.jobs.lineage``): the driving
table's ``fingerprint`` column, or the joined tables' fingerprints for a multi-input stage.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import pandas as pd
from pyspark.sql import functions as F

from facevid.jobs.lineage import BOOKKEEPING, INPUT_FP
from facevid.udfs.base import RowFn

if TYPE_CHECKING:
    from facevid.jobs.config import StageSpec
    from facevid.jobs.runner import Context


@dataclass(frozen=True)
class NoParams:
    """For ops without parameters."""


registry: dict[str, type[Op]] = {}


def register(cls: type[Op]) -> type[Op]:
    """Class decorator: make an op available to ``pipeline.yml`` as ``udf: <cls.name>``."""
    if cls.name in registry:
        raise ValueError(f"op {cls.name} registered twice")
    registry[cls.name] = cls
    return cls


class Op:
    """A stage implementation. Subclasses set the class attributes and ``row_fn``.

    The runner feeds rows of ``input_frame`` whose ``input_key`` has no output row at the stage's
    current version through ``row_fn`` (in ``mapInPandas``); output rows carry the ``passthrough``
    input columns, the op's ``columns``, plus ``error``, ``stage_version`` and ``processed_at``.
    """

    name: ClassVar[str]
    default_input: ClassVar[str | list[str] | None] = None
    default_output: ClassVar[str]
    input_key: ClassVar[str]  # incremental unit: present in input and output
    key: ClassVar[str]  # unique per output row
    passthrough: ClassVar[tuple[str, ...]]
    columns: ClassVar[dict[str, str]]
    params_cls: ClassVar[type] = NoParams
    requires: ClassVar[tuple[str, ...]] = ()  # input columns the row function reads
    prune: ClassVar[bool] = True  # remove output rows whose input row is gone

    def input_frame(self, ctx: Context, spec: StageSpec) -> Any:
        """Rows to process: the input table's rows without errors, with their fingerprint."""
        assert spec.input is not None
        return good_rows(ctx.current(spec.input)).withColumnRenamed("fingerprint", INPUT_FP)

    def check_input(self, spec: StageSpec, frame: Any) -> None:
        """Declared inputs are checked against the input frame before any work."""
        from facevid.jobs.config import ConfigError

        missing = [c for c in (self.input_key, *self.passthrough, *self.requires, INPUT_FP)
                   if c not in frame.columns and c != self.key]
        if missing:
            raise ConfigError(f"stage {spec.name}: its input ({', '.join(spec.inputs) or 'the sources'}) lacks "
                              f"column(s) {', '.join(missing)} that {self.name} needs")

    def row_fn(self, spec: StageSpec) -> RowFn:
        raise NotImplementedError


def good_rows(df: Any) -> Any:
    """A table's rows without errors and without bookkeeping columns (``fingerprint`` kept)."""
    drop = [c for c in BOOKKEEPING if c != "fingerprint" and c in df.columns]
    return df.filter(F.col("error").isNull()).drop(*drop)


CLIP_CONTEXT = ("video_uri", "start_s", "end_s", "duration_s", "fps", "width", "height", "source")


def clip_track_frame(ctx: Context, spec: StageSpec) -> Any:
    """Input of per-clip stages that work on the face track: ``silver.faces`` rows (no error)
    joined with their clip's media context (``CLIP_CONTEXT`` columns of ``silver.clips``).

    ``spec.inputs`` is ``[<faces table>, <clips table>]``."""
    if len(spec.inputs) < 2:
        raise ValueError(f"stage {spec.name}: input must list the faces table and the clips table")
    faces = good_rows(ctx.current(spec.inputs[0])).withColumnRenamed("fingerprint", "_fp0")
    clips = good_rows(ctx.current(spec.inputs[1])).select("clip_id", *CLIP_CONTEXT, F.col("fingerprint").alias("_fp1"))
    joined = faces.join(clips, "clip_id", "inner")
    return joined.withColumn(INPUT_FP, F.concat_ws(":", "_fp0", "_fp1")).drop("_fp0", "_fp1")


def clip_join_frame(ctx: Context, spec: StageSpec, key: str = "clip_id") -> Any:
    """Input of per-clip stages over several tables: the good rows of ``spec.inputs[0]`` inner-joined
    on ``key`` with the good rows of every other input (only the columns an earlier input lacks),
    ``_input_fp`` = the inputs' fingerprints joined with ``:``."""
    frame = good_rows(ctx.current(spec.inputs[0])).withColumnRenamed("fingerprint", "_fp0")
    for i, table in enumerate(spec.inputs[1:], start=1):
        other = good_rows(ctx.current(table))
        cols = [c for c in other.columns if c not in frame.columns and c != "fingerprint"]
        frame = frame.join(other.select(key, *cols, F.col("fingerprint").alias(f"_fp{i}")), key, "inner")
    fps = [f"_fp{i}" for i in range(len(spec.inputs))]
    return frame.withColumn(INPUT_FP, F.concat_ws(":", *fps)).drop(*fps)


class ClipTrackOp(Op):
    """A per-clip op over the face track: input ``clip_track_frame``, the clip's video opened as a
    local file, then the pure ``clip_fn(path, row, params)``."""

    default_input = ["silver.faces", "silver.clips"]
    input_key = "clip_id"
    key = "clip_id"
    passthrough = ("clip_id", "video_id")
    clip_fn: ClassVar[Any]  # staticmethod(fn(path, row, params) -> dict)

    def input_frame(self, ctx: Context, spec: StageSpec) -> Any:
        return clip_track_frame(ctx, spec)

    def row_fn(self, spec: StageSpec) -> RowFn:
        from facevid.udfs.media.storage import local_path

        params, fn = spec.params, self.clip_fn

        def run(row: dict[str, Any]) -> dict[str, Any]:
            with local_path(row["video_uri"]) as path:
                return fn(path, row, params)

        return run


class TableOp(Op):
    """A whole-table stage (clustering, selection): reads its inputs and returns the complete
    output table as pandas; the runner overwrites the output in one commit.

    ``build`` gets the output's current rows (or ``None``) so that assignments can stay stable
    across runs. ``check`` may raise ``GateError`` to stop the commit (the previous version stays).
    """

    input_key = ""
    passthrough = ()
    rejections: ClassVar[str | None] = None  # table of the stage's rule rejections (quarantine view)

    def build(self, ctx: Context, spec: StageSpec, previous: pd.DataFrame | None) -> pd.DataFrame:
        raise NotImplementedError

    def check(self, ctx: Context, spec: StageSpec, table: pd.DataFrame) -> None:
        """Validate the candidate output before it is committed (default: accept)."""

    def record(self, ctx: Context, spec: StageSpec, table: pd.DataFrame) -> int:
        """Write what must be durable before the output commits (e.g. gold's ledger); returns commits."""
        return 0

    def quarantine_rows(self, spec: StageSpec, table: pd.DataFrame) -> pd.DataFrame | None:
        """Rows for ``rejections`` (``facevid.jobs.quarantine.REJECTION_TYPES`` minus stage/version/at)."""
        return None


class GateError(RuntimeError):
    """A stage's output failed validation and was not committed."""

    def __init__(self, stage: str, message: str, result_uri: str) -> None:
        super().__init__(f"stage {stage}: {message} (validation result: {result_uri})")
        self.result_uri = result_uri


class BatchOp(Op):
    """A model stage: ``prepare`` (CPU work: decode, crop, resize) runs row by row in a prefetch
    thread while ``infer`` runs the model on up to ``resources.batch`` prepared rows at a time and
    returns exactly one result per row (checked). The model is built once per executor process by
    ``load`` (``facevid.udfs.models.runtime.shared_model``, keyed by ``model_key``: weights and device) on the device
    picked from ``resources.gpu`` and what is visible. A batch that raises is retried row by row, so
    an error lands on the row that caused it."""

    def model_key(self, spec: StageSpec, device: str) -> tuple:
        return (self.name, device)

    def load(self, spec: StageSpec, device: str) -> Any:
        raise NotImplementedError

    def prepare(self, row: dict[str, Any], params: Any) -> Any:
        return row

    def infer(self, model: Any, items: list[Any], params: Any) -> list[dict[str, Any]]:
        raise NotImplementedError

    def row_fn(self, spec: StageSpec) -> RowFn:
        from facevid.jobs.batching import batch_runner

        return batch_runner(self, spec)
