"""``av.signals`` -> ``silver.av``: audio-visual signals and lip sync per clip (a batch op).

``prepare`` (the prefetch thread, CPU): one decode pass of the clip's video and audio, dlib
68-point landmarks on the main face track, the face signals, voice activity and loudness
(``facevid.udfs.av.clip``). ``infer``: the lip-sync backend (``params.sync``: ``correlation`` on
numpy, or ``syncnet`` with weights on the picked device) on up to ``resources.batch`` clips.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from facevid.jobs.config import ConfigError, StageSpec
from facevid.jobs.stages.base import BatchOp, clip_track_frame, register
from facevid.udfs.av.clip import AV_COLUMNS, Prepared, finish, prepare_clip
from facevid.udfs.av.landmarks import predictor_file
from facevid.udfs.av.params import AvParams
from facevid.udfs.av.sync import needs_faces, sync_backend
from facevid.udfs.base import RowFn, StageError
from facevid.udfs.media.storage import local_path

if TYPE_CHECKING:
    from facevid.jobs.runner import Context


@register
class AvSignals(BatchOp):
    """Mouth, eyes, smile, head pose, occlusion, speech, loudness and the audio-visual offset of
    each clip's main face track. Clips without a track are ``no_face`` error rows; clips without
    an audio stream get null audio columns and ``av_note`` "no audio"."""

    name = "av.signals"
    default_input = ["silver.faces", "silver.clips"]
    default_output = "silver.av"
    input_key = "clip_id"
    key = "clip_id"
    passthrough = ("clip_id", "video_id")
    requires = ("video_uri", "start_s", "end_s", "track_t", "track_boxes")
    columns = AV_COLUMNS
    params_cls = AvParams

    def input_frame(self, ctx: Context, spec: StageSpec) -> Any:
        return clip_track_frame(ctx, spec)

    def preflight(self, spec: StageSpec) -> None:
        """The landmark model and the sync backend exist before the run starts."""
        p: AvParams = spec.params
        if predictor_file(p.landmarks_path) is None:
            raise ConfigError(f"stage {spec.name}: no 68-point landmark model: set stages.{spec.name}.params."
                              f"landmarks_path to dlib's shape_predictor_68_face_landmarks.dat, or install "
                              f"face-recognition-models (the `local` extra)")
        try:
            needs_faces(p.sync)
        except ValueError as exc:
            raise ConfigError(f"stage {spec.name}: {exc}") from exc

    def row_fn(self, spec: StageSpec) -> RowFn:
        self.preflight(spec)  # also for callers of the runner that skip the CLI
        return super().row_fn(spec)

    def model_key(self, spec: StageSpec, device: str) -> tuple:
        p: AvParams = spec.params
        if p.sync == "syncnet":
            return (self.name, p.sync, p.syncnet_path, p.syncnet_batch, device)
        return (self.name, p.sync, p.max_offset_frames, p.sync_window_s, p.min_sync_frames, p.sync_null_curves)

    def load(self, spec: StageSpec, device: str) -> Any:
        return sync_backend(spec.params.sync, spec.params, device)

    def prepare(self, row: dict[str, Any], params: AvParams) -> Prepared:
        with local_path(row["video_uri"]) as path:
            return prepare_clip(path, row, params, with_faces=needs_faces(params.sync))

    def infer(self, model: Any, items: list[Prepared], params: AvParams) -> list[dict[str, Any]]:
        t0 = time.perf_counter()
        todo = [it.sync for it in items if it.sync is not None]
        results = list(model.score(todo)) if todo else []
        if len(results) != len(todo):
            raise StageError("bug", f"sync backend {model.name} returned {len(results)} results for {len(todo)} clips")
        share = (time.perf_counter() - t0) * 1000.0 / max(1, len(todo))
        out, it_results = [], iter(results)
        for it in items:
            result = next(it_results) if it.sync is not None else None
            out.append(finish(it, result, model.name, share if result is not None else 0.0, params.sync_min_z))
        return out
