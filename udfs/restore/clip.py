"""Restore one clip's face crop: select, align every frame, restore, paste back, encode, measure.

``prepare`` (CPU, in the batch op's prefetch thread) decides whether the clip is restored
(``select``; ``backend: none`` restores nothing) and fits the landmarks of every crop frame
(``facevid.udfs.restore.landmarks``); the ``enhance`` backend needs no model, so it finishes the clip
there too. ``finish`` runs a learned restorer on the clips prepared for it. Restoring a clip is one
``transcode`` pass over the crop (``facevid.udfs.media.encode``): ``frame_batch`` frames at a time,
each usable frame's face warped to the template, the faces restored together, pasted back; the
output keeps the crop's size, frame timestamps and audio.

Files are immutable (``facevid.udfs.media.artifacts``): ``<root>/<clip_id>/<digest>.mp4``, the digest
over the crop file's URI (crops are content-addressed), the backend, the architecture, the weights
hash, the parameters that shape the bytes, the landmark model's hash, the eye screen's frame
choice (the marker keeps its scores), ``CODE_VERSION`` and PyAV's version; encoded into a temporary
file, published in one step, then its ``<digest>.json`` marker (the row's values), so a re-run with
the same inputs reuses the file. ``eye_flagged`` is decided again from the kept ``eye_score`` at
the current ``eye_level``: a new level re-restores nothing.

Measures (restored clips): ``sharpness_*`` the median Laplacian variance of the gray face box
scaled to ``SHARPNESS_SIDE`` px (``silver.quality``'s ``sharpness_face`` measure, here on the crop
before and after); ``flicker_*`` the mean absolute frame-to-frame luma change inside the face box
(0-255, consecutive aligned frames), ``flicker_added`` = after - before (the temporal change
restoration added: per-frame restorers can shimmer); the eye screen (``facevid.udfs.restore.eyes``)
on the first aligned frame and ``eye_frames`` seeded random ones.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import av
import cv2
import numpy as np

from facevid.udfs.annotate.frames import frame_plan
from facevid.udfs.base import StageError
from facevid.udfs.curation.quality_measures import box_roi, face_sharpness
from facevid.udfs.media.artifacts import content_digest, produce
from facevid.udfs.media.encode import transcode
from facevid.udfs.media.storage import local_path
from facevid.udfs.restore.align import paste_back, similarity, template, warp_face
from facevid.udfs.restore.backends import EnhanceRestorer
from facevid.udfs.restore.eyes import EyeScreen
from facevid.udfs.restore.landmarks import CropFaces, fit_crop
from facevid.udfs.restore.params import RestoreParams

RESTORED_COLUMNS: dict[str, str] = {
    "restored": "boolean",  # a restored file exists for the clip (restored_uri)
    "restored_uri": "string",  # <files root>/<dir>/<clip_id>/<digest>.mp4; null when not restored
    "restore_backend": "string",  # enhance | spandrel | none
    "restore_arch": "string",  # bilateral+unsharp | GFPGAN | RestoreFormer | CodeFormer (spandrel's detection)
    "restore_weights_hash": "string",  # SHA-256 (16 hex) of the weights file; null without weights
    "restore_params": "string",  # JSON: the parameters that shaped the file (RestoreParams.output_params)
    "restore_reason": "string",  # why the clip was (not) restored: the select rule and its value, ...
    "frames_total": "int",  # frames in the crop (restored clips: decoded and re-encoded)
    "frames_aligned": "int",  # frames with a usable face, aligned and restored (the others pass through)
    "sharpness_before": "double",  # median Laplacian variance of the face box at 128 px, crop ...
    "sharpness_after": "double",  # ... and restored file
    "flicker_before": "double",  # mean |luma change| between consecutive frames in the face box, 0-255
    "flicker_after": "double",
    "flicker_added": "double",  # flicker_after - flicker_before
    "eye_score": "double",  # eye-artifact score (facevid.udfs.restore.eyes): max over the screened frames
    "eye_left": "double",  # the image-left eye's largest change
    "eye_right": "double",  # the image-right eye's largest change
    "eye_detail": "string",  # JSON: level and per-frame parts (struct, edge, iris per eye; asym; score)
    "eye_flagged": "boolean",  # eye_score > eye_level: queue for human review
    "restore_bytes": "bigint",
    "restore_ms": "double",
}
CODE_VERSION = 1  # bump when the restoring/encoding code changes the bytes it writes
SHARPNESS_SIDE = 128  # silver.quality's face_side default: the numbers are comparable


@dataclass
class Prepared:
    """A clip after the CPU step: its row, why it is (not) restored, its landmarks, or its finished
    output row (``done``)."""

    row: dict[str, Any]
    reason: str
    faces: CropFaces | None = None
    done: dict[str, Any] | None = None
    t0: float = field(default_factory=time.perf_counter)


@lru_cache(maxsize=4)
def landmarks_hash(landmarks_path: str | None) -> str | None:
    from facevid.udfs.av.landmarks import predictor_file
    from facevid.udfs.models.runtime import weights_hash

    return weights_hash(predictor_file(landmarks_path))


def not_restored(item: Prepared, params: RestoreParams, reason: str) -> dict[str, Any]:
    """The row of a clip that keeps its crop: no file, no measures."""
    n = item.faces.n if item.faces is not None else item.row.get("n_frames")
    return {**{k: None for k in RESTORED_COLUMNS}, "restored": False, "restore_backend": params.backend,
            "restore_reason": reason, "frames_total": None if n is None else int(n),
            "frames_aligned": len(item.faces.usable) if item.faces is not None else None,
            "restore_ms": (time.perf_counter() - item.t0) * 1000.0}


def prepare(row: dict[str, Any], params: RestoreParams, root: str) -> Prepared:
    """Selection and landmarks (and, for ``enhance``, the whole clip): see the module docstring."""
    selected, reason = params.selection.decide(row)
    item = Prepared(row, reason)
    if params.backend == "none":
        item.done = not_restored(item, params, f"backend none (restoration off); {reason}")
        return item
    if not selected:
        item.done = not_restored(item, params, reason)
        return item
    item.faces = fit_crop(str(row["crop_uri"]), row, params.min_face_px, params.landmarks_path)
    if not item.faces.usable:
        item.done = not_restored(item, params, f"{reason}; no frame with a usable face")
    elif params.backend == "enhance":
        item.done = restore_clip(item, EnhanceRestorer(params.denoise, params.sharpen, params.sharpen_sigma),
                                 params, root)
    return item


def finish(item: Prepared, restorer: Any, params: RestoreParams, root: str) -> dict[str, Any]:
    """The output row of a prepared clip (restoring it with ``restorer`` when still to do)."""
    return item.done if item.done is not None else restore_clip(item, restorer, params, root)


class _Work:
    """The per-batch frame function of one clip: align, restore, paste back, and measure."""

    def __init__(self, faces: CropFaces, restorer: Any, params: RestoreParams, eye_at: set[int]) -> None:
        self.faces, self.restorer, self.params, self.eye_at = faces, restorer, params, eye_at
        dst = template(params.face_size)
        self.warps = [similarity(p, dst) if p is not None else None for p in faces.aligned_points(params.smooth)]
        self.sharp: tuple[list[float], list[float]] = ([], [])
        self.flick: tuple[list[float], list[float]] = ([], [])
        self.prev: tuple[int, np.ndarray, np.ndarray] | None = None
        self.eyes = EyeScreen(params.eye_level)

    def process(self, indices: list[int], frames: list[np.ndarray]) -> list[np.ndarray]:
        if indices[-1] >= self.faces.n:
            raise StageError("decode", f"the crop decodes to more frames than the landmark pass saw ({self.faces.n})")
        todo = [j for j, i in enumerate(indices) if self.warps[i] is not None]
        out = list(frames)
        if todo:
            size = self.params.face_size
            aligned = np.stack([warp_face(frames[j], self.warps[indices[j]], size) for j in todo])
            restored = self.restorer.restore(aligned)
            for j, face in zip(todo, restored, strict=True):
                out[j] = paste_back(frames[j], face, self.warps[indices[j]], self.params.feather)
        for j in todo:
            self.measure(indices[j], frames[j], out[j])
        return out

    def measure(self, i: int, before: np.ndarray, after: np.ndarray) -> None:
        gb, ga = cv2.cvtColor(before, cv2.COLOR_RGB2GRAY), cv2.cvtColor(after, cv2.COLOR_RGB2GRAY)
        roi = box_roi(self.faces.boxes[i], 1.0, gb.shape)
        if roi is not None:
            x0, y0, x1, y1 = roi
            for k, g in enumerate((gb, ga)):
                self.sharp[k].append(face_sharpness(g[y0:y1, x0:x1], SHARPNESS_SIDE))
            if self.prev is not None and self.prev[0] == i - 1:
                for k, (g, p) in enumerate(zip((gb, ga), self.prev[1:], strict=True)):
                    self.flick[k].append(float(cv2.absdiff(g[y0:y1, x0:x1], p[y0:y1, x0:x1]).mean()))
        self.prev = (i, gb, ga)
        if i in self.eye_at:
            self.eyes.add(before, after, self.faces.points[i], i, self.faces.times[i])

    def columns(self) -> dict[str, Any]:
        med = [float(np.median(v)) if v else None for v in self.sharp]
        flick = [float(np.mean(v)) if v else None for v in self.flick]
        return {"sharpness_before": med[0], "sharpness_after": med[1], "flicker_before": flick[0],
                "flicker_after": flick[1],
                "flicker_added": None if None in flick else flick[1] - flick[0],  # type: ignore[operator]
                **self.eyes.columns()}


def eye_frames(faces: CropFaces, n_random: int, seed: int, key: str) -> set[int]:
    """The first aligned frame and ``n_random`` seeded random, non-consecutive aligned ones."""
    usable = faces.usable
    return {usable[k] for k in frame_plan(len(usable), n_random, seed, key)}


def flag_eyes(measured: dict[str, Any], level: float) -> dict[str, Any]:
    """The flag of a measured ``eye_score`` at ``level`` (score, then decide: a new level re-decides
    without re-restoring)."""
    score = measured.get("eye_score")
    if score is None:
        return {"eye_flagged": None}
    detail = json.loads(measured["eye_detail"]) if measured.get("eye_detail") else {}
    return {"eye_flagged": bool(score > level), "eye_detail": json.dumps({**detail, "level": level}, sort_keys=True)}


def restored_uri(root: str, clip_id: str, digest: str) -> str:
    return f"{root}/{clip_id}/{digest}.mp4"


def restore_clip(item: Prepared, restorer: Any, params: RestoreParams, root: str) -> dict[str, Any]:
    """Restore a prepared clip into its immutable file (reused when its marker exists)."""
    row, faces = item.row, item.faces
    assert faces is not None
    clip_id = str(row["clip_id"])
    spec = params.output_params(restorer.arch, getattr(restorer, "dtype", None))
    digest = content_digest({"code": CODE_VERSION, "av": av.__version__, "crop": str(row["crop_uri"]),
                             "backend": params.backend, "arch": restorer.arch, "weights": restorer.weights_hash,
                             "params": spec, "landmarks": landmarks_hash(params.landmarks_path),
                             "screen": [params.eye_frames, params.seed]})  # the marker's measures too
    uri = restored_uri(root, clip_id, digest)

    def make(tmp: str) -> dict[str, Any]:
        work = _Work(faces, restorer, params, eye_frames(faces, params.eye_frames, params.seed, clip_id))
        with local_path(str(row["crop_uri"])) as path:
            enc = transcode(path, tmp, work.process, params.frame_batch, params.crf, params.preset, params.audio_kbps)
        if enc["n_frames"] != faces.n:
            raise StageError("decode", f"{enc['n_frames']} frames re-encoded, {faces.n} seen by the landmark pass")
        return {"restored": True, "restored_uri": uri, "restore_backend": params.backend, "restore_arch": restorer.arch,
                "restore_weights_hash": restorer.weights_hash, "restore_params": json.dumps(spec, sort_keys=True),
                "restore_reason": item.reason, "frames_total": faces.n, "frames_aligned": len(faces.usable),
                **work.columns(), "restore_ms": (time.perf_counter() - item.t0) * 1000.0}

    # the temporary file in the root: a failed attempt leaves no folder behind
    out, reused = produce(uri, root, RESTORED_COLUMNS, make, "restore_bytes")
    if reused:  # the marker's measures, this run's flag level, reason and time
        out |= {**flag_eyes(out, params.eye_level), "restore_reason": item.reason,
                "restore_ms": (time.perf_counter() - item.t0) * 1000.0}
    return out
