"""``restore.faces`` -> ``silver.restored``: face restoration of the crops, with an eye-artifact screen."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from facevid.jobs.config import ConfigError, StageSpec
from facevid.jobs.stages.base import BatchOp, clip_join_frame, register
from facevid.udfs.base import RowFn
from facevid.udfs.restore.backends import check_weights, load_restorer, restorer_key
from facevid.udfs.restore.clip import RESTORED_COLUMNS, Prepared, finish, prepare
from facevid.udfs.restore.params import RestoreParams

if TYPE_CHECKING:
    from facevid.jobs.runner import Context


@register
class RestoreFaces(BatchOp):
    """Each crop's face restored by the declared backend (``enhance``: the CPU default; ``spandrel``:
    GFPGAN, RestoreFormer or CodeFormer weights, batched on the GPU when the stage has a GPU share;
    ``none``) on the clips ``select`` picks, written to ``<files root>/<dir>/<clip_id>/<digest>.mp4``
    (immutable, see ``facevid.udfs.restore.clip``) with the crop's size, timestamps and audio. Every
    input clip gets a row; clips not restored say why. Input: the crops table first, then the faces
    table (the main track places the landmarks) and the tables ``select`` reads (quality's
    ``sharpness_face`` by default), joined on ``clip_id``."""

    name = "restore.faces"
    default_input = ["silver.crops", "silver.faces", "silver.quality"]
    default_output = "silver.restored"
    input_key = "clip_id"
    key = "clip_id"
    passthrough = ("clip_id", "video_id")
    columns = RESTORED_COLUMNS
    params_cls = RestoreParams
    requires = ("crop_uri", "crop_x", "crop_y", "crop_side", "crop_size", "t_first", "n_frames", "track_t",
                "track_boxes")
    root: str | None = None  # resolved folder of the restored files, set by input_frame (the runner calls it first)

    def input_frame(self, ctx: Context, spec: StageSpec) -> Any:
        self.root = ctx.cfg.file_uri(spec.params.dir)
        return clip_join_frame(ctx, spec)

    def check_input(self, spec: StageSpec, frame: Any) -> None:
        super().check_input(spec, frame)
        column = spec.params.selection.column
        if column is not None and column not in frame.columns:
            raise ConfigError(f"stage {spec.name}: select reads {column}, which its input "
                              f"({', '.join(spec.inputs)}) lacks: list the table that has it")

    def preflight(self, spec: StageSpec) -> None:
        """The weights exist, hold a supported architecture, and its licence is confirmed, before
        the run starts (an ``s3://`` file is checked when an executor downloads it)."""
        from facevid.udfs.av.landmarks import predictor_file
        from facevid.udfs.media.storage import is_s3

        p: RestoreParams = spec.params
        if p.backend == "none":
            return
        try:
            if predictor_file(p.landmarks_path) is None:
                raise ValueError(f"stages.{spec.name}.params.landmarks_path: no 68-point landmark model (set it to "
                                 f"dlib's shape_predictor_68_face_landmarks.dat, or install face-recognition-models)")
            if p.backend == "spandrel" and not is_s3(p.model_path or ""):
                check_weights(p.model_path, p.allow_noncommercial)
        except (FileNotFoundError, ValueError) as exc:
            raise ConfigError(f"stage {spec.name}: {exc}") from None

    def row_fn(self, spec: StageSpec) -> RowFn:
        if self.root is None:
            raise RuntimeError(f"stage {spec.name}: input_frame must run before row_fn (it resolves the files root)")
        self.preflight(spec)  # also for callers of the runner that skip the CLI
        return super().row_fn(spec)

    def model_key(self, spec: StageSpec, device: str) -> tuple:
        return restorer_key(spec.params, device)

    def load(self, spec: StageSpec, device: str) -> Any:
        return load_restorer(spec.params, device)

    def prepare(self, row: dict[str, Any], params: RestoreParams) -> Prepared:
        assert self.root is not None
        return prepare(row, params, self.root)

    def infer(self, model: Any, items: list[Prepared], params: RestoreParams) -> list[dict[str, Any]]:
        assert self.root is not None
        return [finish(item, model, params, self.root) for item in items]
