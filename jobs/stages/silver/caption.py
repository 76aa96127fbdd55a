"""``caption.annotate`` -> ``silver.captions``: structured attributes and one caption sentence per clip."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from facevid.jobs.config import ConfigError, StageSpec
from facevid.jobs.stages.base import BatchOp, clip_join_frame, register
from facevid.udfs.annotate.captioner import (
    CAPTION_COLUMNS,
    CaptionParams,
    backend_key,
    load_backend,
    prepare_item,
)

if TYPE_CHECKING:
    from facevid.jobs.runner import Context

SIGNALS_REQUIRES = ("has_speech", "speech_frac", "mouth_open_var", "smile_frac", "ear_left", "ear_right",
                    "landmarks_fps", "wink_count", "nod_count", "shake_count", "tilt_count", "brightness_mean")


@register
class AnnotateClips(BatchOp):
    """The paper's attribute table filled per clip by the declared backend (``vlm``: a VLM from a
    weights path, batched on GPU when the stage has a GPU share; ``signals``: the CPU default that
    sets only what the av and quality signals measure). Input: the crops table first (frames come
    from the crop), then the tables the backend reads (``silver.av``, ``silver.quality``), joined on
    ``clip_id``. An answer that does not parse is a transient ``parse`` error row (``caption.parse``
    in quarantine): a new prompt version or model retries it."""

    name = "caption.annotate"
    default_input = ["silver.crops", "silver.av", "silver.quality"]
    default_output = "silver.captions"
    input_key = "clip_id"
    key = "clip_id"
    passthrough = ("clip_id", "video_id")
    columns = CAPTION_COLUMNS
    params_cls = CaptionParams
    requires = ("crop_uri",)

    def input_frame(self, ctx: Context, spec: StageSpec) -> Any:
        return clip_join_frame(ctx, spec)

    def check_input(self, spec: StageSpec, frame: Any) -> None:
        super().check_input(spec, frame)
        if spec.params.backend == "signals":
            missing = [c for c in SIGNALS_REQUIRES if c not in frame.columns]
            if missing:
                raise ConfigError(f"stage {spec.name}: the signals backend reads {', '.join(missing)}: list the av "
                                  f"and quality tables in its input (now {', '.join(spec.inputs)})")

    def preflight(self, spec: StageSpec) -> None:
        """Model files exist before the run starts (``facevid run`` calls this before the engine;
        an ``s3://`` model folder is checked when an executor downloads it)."""
        from pathlib import Path

        from facevid.udfs.media.storage import is_s3, to_local

        p = spec.params
        if p.backend == "vlm" and not is_s3(p.model_path):
            from facevid.udfs.annotate.vlm import resolve_model_path

            try:
                resolve_model_path(p.model_path)
            except FileNotFoundError as exc:
                raise ConfigError(f"stage {spec.name}: {exc}") from None
        if p.emotion_model_path and not is_s3(p.emotion_model_path) and not Path(to_local(p.emotion_model_path)).is_file():
            raise ConfigError(f"stage {spec.name}: stages.{spec.name}.params.emotion_model_path "
                              f"{p.emotion_model_path} does not exist (an ONNX emotion classifier)")

    def model_key(self, spec: StageSpec, device: str) -> tuple:
        return backend_key(spec.params, device)

    def load(self, spec: StageSpec, device: str) -> Any:
        return load_backend(spec.params, device)

    def row_fn(self, spec: StageSpec):  # type: ignore[override]
        self.preflight(spec)  # also for callers of the runner that skip the CLI
        return super().row_fn(spec)

    def prepare(self, row: dict[str, Any], params: Any) -> Any:
        return prepare_item(row, params)

    def infer(self, model: Any, items: list[Any], params: Any) -> list[dict[str, Any]]:
        return model.infer(items)
