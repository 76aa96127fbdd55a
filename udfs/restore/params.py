"""The restore stage's parameters (``stages.restore.params`` in ``pipeline.yml``) and which clips
it restores (``select``)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from facevid.udfs.base import validate
from facevid.udfs.media.encode import X264_PRESETS

BACKENDS = ("enhance", "none", "spandrel")


@dataclass(frozen=True)
class Selection:
    """Restore the clips whose ``column`` lies in ``[min, max]`` (a null value is not selected), or
    every clip (``column`` None: ``select: all``)."""

    column: str | None = None
    min: float | None = None
    max: float | None = None

    @classmethod
    def parse(cls, value: Any) -> Selection:
        if value == "all":
            return cls()
        if not isinstance(value, dict) or set(value) - {"column", "min", "max"} or not value.get("column"):
            raise ValueError(f"restore.select must be 'all' or {{column, max and/or min}}, got {value!r}")
        lo, hi = value.get("min"), value.get("max")
        if lo is None and hi is None:
            raise ValueError(f"restore.select on {value['column']} needs a max and/or a min")
        return cls(str(value["column"]), None if lo is None else float(lo), None if hi is None else float(hi))

    def decide(self, row: dict[str, Any]) -> tuple[bool, str]:
        """``(selected, reason)`` for an input row."""
        if self.column is None:
            return True, "selected: all"
        raw = row.get(self.column)
        value = None if raw is None or (isinstance(raw, float) and math.isnan(raw)) else float(raw)
        if value is None:
            return False, f"not selected: {self.column} is null"
        if self.max is not None and value > self.max:
            return False, f"not selected: {self.column} {value:.4g} > max {self.max:g}"
        if self.min is not None and value < self.min:
            return False, f"not selected: {self.column} {value:.4g} < min {self.min:g}"
        bounds = " and ".join(b for b in (f"<= max {self.max:g}" if self.max is not None else "",
                                          f">= min {self.min:g}" if self.min is not None else "") if b)
        return True, f"selected: {self.column} {value:.4g} {bounds}"


@dataclass
class RestoreParams:
    """Which clips, which restorer, the alignment, the encoder and the eye screen."""

    backend: str = "enhance"
    # sharpness_face (quality: Laplacian variance of the face at 128 px) of the shared gold clips:
    # 39-949; under 100 restores the three softest of ten
    select: Any = field(default_factory=lambda: {"column": "sharpness_face", "max": 100.0})
    dir: str = "restored"  # relative to the files root; an absolute path or URI is used as is
    # alignment (facevid.udfs.restore.align / landmarks)
    face_size: int = 512
    feather: float = 0.05
    min_face_px: int = 64
    smooth: int = 3
    landmarks_path: str | None = None
    # enhance
    denoise: float = 10.0
    sharpen: float = 0.6
    sharpen_sigma: float = 1.5
    # spandrel
    model_path: str | None = None
    fidelity: float = 0.5
    allow_noncommercial: bool = False
    dtype: str = "auto"
    device: str = "auto"
    frame_batch: int = 8
    # encoding of the restored file
    crf: int = 18
    preset: str = "veryfast"
    audio_kbps: int = 128
    # eye screen (facevid.udfs.restore.eyes)
    eye_frames: int = 3
    eye_level: float = 0.35
    seed: int = 7

    def __post_init__(self) -> None:
        Selection.parse(self.select)
        validate("restore", [
            (self.backend in BACKENDS, f"backend must be one of {', '.join(BACKENDS)}, got {self.backend!r}"),
            (self.backend != "spandrel" or bool(self.model_path),
             "model_path: the spandrel backend needs a weights file (a GFPGAN, RestoreFormer or CodeFormer "
             "checkpoint; local, dbfs:/, /Volumes/ or s3://)"),
            (bool(self.dir) and not self.dir.endswith(".mp4"), f"dir must name a folder, got {self.dir!r}"),
            (self.face_size >= 32 and self.face_size % 32 == 0, f"face_size must be a multiple of 32, got {self.face_size}"),
            (0 < self.feather < 0.25, f"feather must be in (0, 0.25), got {self.feather}"),
            (self.min_face_px >= 16, f"min_face_px must be >= 16, got {self.min_face_px}"),
            (self.smooth >= 1, f"smooth must be >= 1 (frames), got {self.smooth}"),
            (self.denoise >= 0 and self.sharpen >= 0 and self.sharpen_sigma > 0,
             "denoise and sharpen must be >= 0 and sharpen_sigma > 0"),
            (0 <= self.fidelity <= 1, f"fidelity must be in [0, 1], got {self.fidelity}"),
            (self.dtype in ("auto", "float32", "float16", "bfloat16"),
             f"dtype must be auto, float32, float16 or bfloat16, got {self.dtype!r}"),
            (self.device in ("auto", "cpu", "cuda"), f"device must be auto, cpu or cuda, got {self.device!r}"),
            (self.frame_batch >= 1, f"frame_batch must be >= 1, got {self.frame_batch}"),
            (0 <= self.crf <= 51, f"crf must be in [0, 51], got {self.crf}"),
            (self.preset in X264_PRESETS, f"preset must be one of {X264_PRESETS}, got {self.preset!r}"),
            (8 <= self.audio_kbps <= 512, f"audio_kbps must be in [8, 512], got {self.audio_kbps}"),
            (self.eye_frames >= 0 and self.eye_level > 0, "eye_frames must be >= 0 and eye_level > 0"),
        ])

    @property
    def selection(self) -> Selection:
        return Selection.parse(self.select)

    def output_params(self, arch: str | None, dtype: str | None) -> dict[str, Any]:
        """The parameters that shape a restored file's bytes (the ``restore_params`` column)."""
        out: dict[str, Any] = {"face_size": self.face_size, "feather": self.feather, "min_face_px": self.min_face_px,
                               "smooth": self.smooth, "crf": self.crf, "preset": self.preset,
                               "audio_kbps": self.audio_kbps, "landmarks_path": self.landmarks_path}
        if self.backend == "enhance":
            out.update(denoise=self.denoise, sharpen=self.sharpen, sharpen_sigma=self.sharpen_sigma)
        elif self.backend == "spandrel":
            out.update(dtype=dtype, **({"fidelity": self.fidelity} if arch == "CodeFormer" else {}))
        return out

    def content_state(self) -> dict[str, Any]:
        """What the weights file holds (part of the stage fingerprint: new weights at the same path
        re-run the stage). A local file is hashed; an ``s3://`` one is named by its URI."""
        if self.backend != "spandrel" or not self.model_path:
            return {}
        from pathlib import Path

        from facevid.udfs.media.storage import is_s3, to_local
        from facevid.udfs.models.runtime import weights_hash

        local = None if is_s3(self.model_path) else to_local(self.model_path)
        return {"weights": weights_hash(local) if local and Path(local).is_file() else self.model_path}
