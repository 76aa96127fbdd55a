"""One clip's audio-visual signals: a single decode pass (video and audio) -> landmarks, face
signals, voice activity, loudness and the ``SyncInput`` for the lip-sync backend.

Landmark grid: ``rate = min(params.fps, the clip's nominal rate)``; grid frame ``k`` is at
``t0 + k / rate`` where ``t0`` is the clip's first video frame. When ``rate`` is below the
clip's rate the first frame at/after each grid time is fitted; otherwise (and for variable
frame rates whose average is below ``fps``) every frame is. The per-frame series are then
linearly interpolated onto the grid (NaN where a neighbour's fit is occluded), so frame ``k`` of
every series (and of ``SyncInput``) is at ``k / rate`` seconds, and audio sample 0 at ``t0``.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

import av
import numpy as np

from facevid.udfs.av import audio as A
from facevid.udfs.av import face_signals as F
from facevid.udfs.av.landmarks import FaceTrack, Fitter, load_predictor, predictor_file
from facevid.udfs.av.params import AvParams
from facevid.udfs.av.sync_api import SyncInput, SyncResult
from facevid.udfs.base import StageError
from facevid.udfs.media.video import EPS, VideoSpan

AV_COLUMNS: dict[str, str] = {
    "landmarks_fps": "double",
    "n_frames": "int",
    "occlusion_frac": "double",
    "mouth_open": "array<float>",
    "mouth_open_var": "double",
    "ear_left": "array<float>",
    "ear_right": "array<float>",
    "blink_count": "int",
    "wink_count": "int",
    "smile_score": "double",
    "smile_frac": "double",
    "yaw": "array<float>",
    "pitch": "array<float>",
    "roll": "array<float>",
    "nod_count": "int",
    "shake_count": "int",
    "tilt_count": "int",
    "head_motion_deg": "double",
    "has_audio": "boolean",
    "speech_frac": "double",
    "has_speech": "boolean",
    "loudness_lufs": "double",
    "av_offset_ms": "double",
    "av_confidence": "double",
    # z-score of the sync peak against mismatched audio (the correlation backend; null for others)
    "av_sync_z": "double",
    # has_speech and av_sync_z >= params.sync_min_z and the peak inside the search range: an
    # offset to judge (gold's lip_sync rule uses it as `when`); null when not assessed
    "av_sync_reliable": "boolean",
    "av_backend": "string",
    "av_note": "string",
    "av_ms": "double",
}


@dataclass
class Prepared:
    """A clip after the CPU work: its columns so far and what the sync backend needs."""

    columns: dict[str, Any]
    sync: SyncInput | None  # None: no audio
    prepare_ms: float


@dataclass
class _Decoded:
    times: list[float] = field(default_factory=list)
    points: list[np.ndarray] = field(default_factory=list)
    boxes: list[np.ndarray] = field(default_factory=list)
    seen: list[bool] = field(default_factory=list)
    crops: list[np.ndarray] = field(default_factory=list)
    audio: A.AudioTrack = field(default_factory=A.AudioTrack)
    has_audio: bool = False
    t0: float = math.nan
    last: float = math.nan
    rate: float = 25.0
    width: float = 0.0


def _seconds(value: Any) -> float | None:
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else float(value)


def decode(path: str, row: dict[str, Any], track: FaceTrack, fitter: Fitter, fps: float) -> _Decoded:
    """The one decode pass: fitted video frames on the landmark grid and the span's audio."""
    start, end = _seconds(row.get("start_s")) or 0.0, _seconds(row.get("end_s"))
    d = _Decoded()
    with VideoSpan(path, start, end, audio=True) as span:
        d.has_audio = span.audio is not None
        nominal = float(span.fps)
        d.rate = min(fps, nominal)
        every = nominal > fps * 1.001  # subsample to the grid; else fit every frame
        next_t = -math.inf
        for t, frame in span.frames(audio=d.has_audio):
            if isinstance(frame, av.AudioFrame):
                d.audio.add(t, frame)
                if span.video_done and math.isfinite(t) and t > d.last + 1.0 / nominal:
                    break
                continue
            if math.isnan(d.t0):
                d.t0 = t
            d.last = t
            if every:
                if t < next_t - EPS:
                    continue
                next_t = d.t0 + (math.floor((t - d.t0) * d.rate + 1e-6) + 1) / d.rate
            pts, box, crop = fitter.fit(frame, t)
            d.times.append(t)
            d.points.append(pts)
            d.boxes.append(box)
            d.seen.append(track.seen_at(t))
            if crop is not None:
                d.crops.append(crop)
            d.width = fitter.width
    if not d.times:
        raise StageError("decode", f"no video frames in [{start}, {end}) of {path}")
    return d


def to_grid(times: np.ndarray, values: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """Linear interpolation of ``values`` (at ``times``, along axis 0) at ``grid``; NaN where a
    neighbour is NaN; edge values held."""
    if len(times) == 1:
        return np.repeat(values[:1], len(grid), axis=0)
    j = np.clip(np.searchsorted(times, grid, side="right") - 1, 0, len(times) - 2)
    w = np.clip((grid - times[j]) / np.maximum(times[j + 1] - times[j], 1e-9), 0.0, 1.0)
    w = w.reshape(-1, *([1] * (values.ndim - 1)))
    a, b = values[j], values[j + 1]
    out = a + (b - a) * w  # NaN where either neighbour is NaN ...
    return np.where(w == 0.0, a, np.where(w == 1.0, b, out))  # ... unless the grid time is on a frame


def prepare_clip(path: str, row: dict[str, Any], params: AvParams, with_faces: bool = False) -> Prepared:
    """Decode, fit and measure one clip (``silver.faces`` row + clip context); raises
    ``StageError`` (``no_face``, ``decode``) for rows that cannot be measured."""
    t_start = time.perf_counter()
    track = FaceTrack(row)
    weights = predictor_file(params.landmarks_path)
    if weights is None:
        raise StageError("missing", "no 68-point landmark model (set landmarks_path or install face-recognition-models)")
    fitter = Fitter(load_predictor(weights), track, params.face_crop_scale if with_faces else None)
    d = decode(path, row, track, fitter, params.fps)
    times, pts = np.asarray(d.times), np.stack(d.points)
    boxes, seen = np.stack(d.boxes), np.asarray(d.seen, bool)
    n = int(math.floor((d.last - d.t0) * d.rate + 1e-6)) + 1
    if len(times) < 2:
        raise StageError("too_short", f"{len(times)} landmark frame in the clip: no signals", value=len(times),
                         threshold=2)
    grid = d.t0 + np.arange(n) / d.rate
    occluded = F.fit_quality(pts, boxes, seen, params.jump)
    size = np.sqrt(boxes[:, 2] * boxes[:, 3])
    poses = np.array([F.head_pose(p, d.width) or (math.nan,) * 3 for p in pts])
    raw = np.column_stack([F.mouth_open(pts, size), F.eye_aspect(pts), F.smile_ratio(pts), poses])
    raw[occluded] = np.nan
    on_grid = to_grid(times, raw, grid)
    nearest = np.clip(np.searchsorted(times, grid - 0.5 / max(d.rate, 1e-9)), 0, len(times) - 1)
    columns: dict[str, Any] = {"landmarks_fps": d.rate, "n_frames": n}
    columns.update(F.summarise(on_grid[:, 0], on_grid[:, 1:3], on_grid[:, 3], on_grid[:, 4:7], occluded[nearest],
                               d.rate, params))
    columns.update(has_audio=d.has_audio, speech_frac=None, has_speech=None, loudness_lufs=None)
    sync = None
    if d.has_audio:
        samples = d.audio.aligned(d.t0, n / d.rate)
        vad = A.voice_activity(samples, params.vad_mode)
        speech_frac = float(vad.mean()) if len(vad) else 0.0
        columns.update(speech_frac=speech_frac, has_speech=speech_frac >= params.min_speech_frac,
                       loudness_lufs=A.loudness_lufs(samples))
        faces = np.stack(d.crops)[nearest] if with_faces and d.crops else None
        sync = SyncInput(fps=d.rate, mouth_open=on_grid[:, 0].astype(np.float64), audio=samples,
                         sample_rate=A.SAMPLE_RATE, faces=faces, speech=A.per_frame(vad, d.rate, n))
    return Prepared(columns, sync, (time.perf_counter() - t_start) * 1000.0)


def finish(prep: Prepared, result: SyncResult | None, backend: str, infer_ms: float,
           min_z: float | None = None) -> dict[str, Any]:
    """The ``AV_COLUMNS`` row of a prepared clip and its sync result; ``min_z``: the floor of
    ``av_sync_z`` for ``av_sync_reliable`` (None: ``AvParams.sync_min_z``'s default)."""
    row = dict(prep.columns)
    row.update(av_sync_z=None, av_sync_reliable=None)
    if prep.sync is None:
        row.update(av_offset_ms=None, av_confidence=None, av_note="no audio")
    else:
        assert result is not None
        floor = AvParams.sync_min_z if min_z is None else min_z
        row.update(av_offset_ms=result.offset_ms, av_confidence=result.confidence, av_note=result.note,
                   av_sync_z=result.z)
        if row.get("has_speech") is False or result.offset_ms is None:
            row["av_sync_reliable"] = False
        elif result.z is not None:
            row["av_sync_reliable"] = bool(row.get("has_speech")) and result.note is None and result.z >= floor
    row.update(av_backend=backend, av_ms=prep.prepare_ms + infer_ms)
    return row
