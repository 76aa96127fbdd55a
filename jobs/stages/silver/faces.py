"""``faces.detect`` -> ``silver.faces``: sampled-frame face detection + IoU tracking per clip."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from facevid.jobs.config import StageSpec
from facevid.jobs.stages.base import Op, register
from facevid.udfs.base import RowFn
from facevid.udfs.face.faces import FACES_COLUMNS, FacesParams, faces_row
from facevid.udfs.media.storage import local_path
from facevid.udfs.models.detectors import cuda_devices


@register
class DetectFaces(Op):
    """Faces per sampled frame, tracks, the smoothed main track (boxes, landmarks, scores),
    face size in source pixels. The detector is loaded once per worker thread."""

    name = "faces.detect"
    default_input = "silver.clips"
    default_output = "silver.faces"
    input_key = "clip_id"
    key = "clip_id"
    passthrough = ("clip_id", "video_id")
    columns = FACES_COLUMNS
    params_cls = FacesParams

    def row_fn(self, spec: StageSpec) -> RowFn:
        params = spec.params
        if spec.resources.gpu > 0 and params.device == "cpu" and cuda_devices() > 0:
            params = replace(params, device="cuda")  # a GPU share was declared and one is visible

        def faces(row: dict[str, Any]) -> dict[str, Any]:
            with local_path(row["video_uri"]) as path:
                return faces_row({**row, "uri": path}, params)

        return faces
