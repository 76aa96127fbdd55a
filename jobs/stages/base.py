"""What a stage op declares: its tables, keys, columns, typed params and a pure row function."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

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
    default_input: ClassVar[str | None] = None
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
