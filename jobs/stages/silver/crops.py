"""``crops.write`` -> ``silver.crops``: the fixed-square face crop of each clip as an H.264 mp4 file."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from facevid.jobs.config import StageSpec
from facevid.jobs.stages.base import ClipTrackOp, register
from facevid.udfs.base import RowFn
from facevid.udfs.face.crops import CROPS_COLUMNS, CropParams, crops_row

if TYPE_CHECKING:
    from facevid.jobs.runner import Context


@register
class WriteCrops(ClipTrackOp):
    """One square per clip around the smoothed main face track, resized to ``size`` and written to
    ``<files root>/<dir>/<clip_id>/<digest>.mp4`` (immutable, see ``facevid.udfs.face.crops``) with the clip's audio
    (an absolute or URI ``dir`` is used as is; the files root is the lake root of a path lake,
    ``files:`` of a ``uc:`` lake). Squares under ``min_crop_px`` source
    pixels and clips without a face track are error rows (no file)."""

    name = "crops.write"
    default_output = "silver.crops"
    columns = CROPS_COLUMNS
    params_cls = CropParams
    root: str | None = None  # resolved crop folder, set by input_frame (the runner calls it first)

    def input_frame(self, ctx: Context, spec: StageSpec) -> Any:
        self.root = ctx.cfg.file_uri(spec.params.dir)
        return super().input_frame(ctx, spec)

    def row_fn(self, spec: StageSpec) -> RowFn:
        if self.root is None:
            raise RuntimeError(f"stage {spec.name}: input_frame must run before row_fn (it resolves the files root)")
        params, root = spec.params, self.root

        def crops(row: dict[str, Any]) -> dict[str, Any]:
            return crops_row(row, params, root)

        return crops
