"""What a stage op declares: its tables, keys, columns, typed params and a pure row function."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import pandas as pd

from udfs.base import RowFn

if TYPE_CHECKING:
    from jobs.config import StageSpec
    from jobs.runner import Context


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

    def input_frame(self, ctx: Context, spec: StageSpec) -> Any:
        """Rows to process: the input table's current-version rows without errors."""
        assert spec.input is not None
        return ctx.current(spec.input).filter("error IS NULL")

    def row_fn(self, spec: StageSpec) -> RowFn:
        raise NotImplementedError

    def quarantine_measure(self, spec: StageSpec) -> tuple[str, str]:
        """SQL expressions for quarantine ``value`` and ``threshold`` of an error row."""
        return "trim(substring(error, instr(error, ':') + 1))", "CAST(NULL AS STRING)"


CLIP_CONTEXT = ("video_uri", "start_s", "end_s", "duration_s", "fps", "width", "height", "source")


def clip_track_frame(ctx: Context, spec: StageSpec) -> Any:
    """Input of per-clip stages that work on the face track: ``silver.faces`` rows (no error)
    joined with their clip's media context (``CLIP_CONTEXT`` columns of ``silver.clips``).

    ``spec.inputs`` is ``[<faces table>, <clips table>]``."""
    if len(spec.inputs) < 2:
        raise ValueError(f"stage {spec.name}: input must list the faces table and the clips table")
    faces = ctx.current(spec.inputs[0]).filter("error IS NULL").drop("error", "stage_version", "processed_at")
    clips = ctx.current(spec.inputs[1]).filter("error IS NULL").select("clip_id", *CLIP_CONTEXT)
    return faces.join(clips, "clip_id", "inner")


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
        from udfs.storage import local_path

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

    def build(self, ctx: Context, spec: StageSpec, previous: pd.DataFrame | None) -> pd.DataFrame:
        raise NotImplementedError

    def check(self, ctx: Context, spec: StageSpec, table: pd.DataFrame) -> None:
        """Validate the candidate output before it is committed (default: accept)."""

    def quarantine_rows(self, spec: StageSpec, table: pd.DataFrame) -> pd.DataFrame | None:
        """Rows for ``quarantine`` (columns of ``QUARANTINE_COLUMNS`` minus stage/version/at), or
        ``None`` to mirror the ``error`` column like a row stage."""
        return None


class GateError(RuntimeError):
    """A stage's output failed validation and was not committed."""

    def __init__(self, stage: str, message: str, result_uri: str) -> None:
        super().__init__(f"stage {stage}: {message} (validation result: {result_uri})")
        self.result_uri = result_uri
