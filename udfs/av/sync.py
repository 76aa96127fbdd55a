"""Lip-sync backends (``facevid.udfs.av.sync_api``) and their registry.

``correlation`` (the CPU default, no weights): the SyncNet recipe with hand-made features. The
video feature is the mouth opening series (``SyncInput.mouth_open``, 3-frame moving average),
the audio feature the speech envelope: RMS of the 300-3000 Hz band (4th-order Butterworth,
zero phase) over each video frame's display interval ``[k / fps, (k + 1) / fps)`` (what is heard
while the frame is seen: a half-frame, 20 ms at 25 fps, after the frame's time; windows centred
on the frame time measured worse: retalking_face3_aoc moved from -16 to -227 ms, the curve has a
second peak there). For every offset ``d``
in ``+-max_offset_frames`` the Pearson correlation of ``mouth[k]`` with ``envelope[k + d]`` is
averaged over windows of ``window_s`` (hop = a tenth of it) that have speech
(``SyncInput.speech`` on a quarter of their frames) and a fit on half of them; the best ``d``
(refined to a fraction of a frame by a parabola through the peak) gives ``offset_ms = d * 1000 /
fps``: positive = the audio is later than the video. ``confidence`` = the peak's margin over the
median of the curve (SyncNet's "confidence": median minus minimum of its distance curve), in
correlation units (0-2).

Measured on the shared clips (25 fps landmarks, ``tests/test_av.py``): windowed level
correlation beat whole-clip correlation, derivatives, onsets, log envelopes, outer-lip and
multi-feature ridge variants, but it is fragile on 5-8 s clips: the curve often has a second
peak. Original / copy with the audio remuxed 400 ms later: retalking_face3_aoc -15 / +401 ms
(confidence 0.238 / 0.221), retalking_face5 -30 / +372, sadtalker_aoc +77 / +468,
retalking_face2 +293 / +396, retalking_face1 +268 / +678, retalking_face4 +600 / -600 (the
search edge); lp_d20 reads +279 ms at the highest confidence seen (0.67) and may really be
off. Confidence on talking clips: 0.18-0.67. Read ``confidence`` before trusting an offset.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np

from facevid.udfs.av.face_signals import smooth
from facevid.udfs.av.sync_api import SyncBackend, SyncInput, SyncResult

if TYPE_CHECKING:
    from facevid.udfs.av.params import AvParams

BAND_HZ = (300.0, 3000.0)
_SMOOTH = 3  # mouth series moving average (frames)
_MIN_SPEECH, _MIN_FIT = 0.25, 0.5  # a window counts with speech on >= 25% and a fit on >= 50% of its frames


def envelope(audio: np.ndarray, sample_rate: int, fps: float, n_frames: int) -> np.ndarray:
    """Band-passed RMS of ``audio`` over each video frame's display interval ``[k / fps, (k + 1) / fps)``
    (``n_frames`` values)."""
    from scipy.signal import butter, sosfiltfilt

    out = np.zeros(n_frames)
    if not np.any(audio):
        return out
    sos = butter(4, BAND_HZ, btype="band", fs=sample_rate, output="sos")
    x = audio.astype(np.float64)
    x = sosfiltfilt(sos, x) if len(x) > 64 else x  # (filtfilt pads 3 x the filter order at each end)
    csum = np.concatenate([[0.0], np.cumsum(x * x)])
    edges = np.minimum(np.round(np.arange(n_frames + 1) * sample_rate / fps).astype(np.int64), len(x))
    n = np.maximum(edges[1:] - edges[:-1], 1)
    return np.sqrt((csum[edges[1:]] - csum[edges[:-1]]) / n)


def _corr(a: np.ndarray, b: np.ndarray) -> float:
    ok = np.isfinite(a) & np.isfinite(b)
    if ok.sum() < 5:
        return math.nan
    a, b = a[ok] - a[ok].mean(), b[ok] - b[ok].mean()
    den = math.sqrt(float((a * a).sum() * (b * b).sum()))
    return float((a * b).sum() / den) if den > 0 else math.nan


def offset_curve(mouth: np.ndarray, env: np.ndarray, speech: np.ndarray, max_offset: int, window: int) -> np.ndarray:
    """Mean windowed correlation of ``mouth[k]`` with ``env[k + d]`` for ``d`` in
    ``-max_offset..max_offset`` (NaN where no window qualifies)."""
    n = len(mouth)
    window = max(5, min(window, n))
    hop = max(1, window // 10)
    sums, counts = np.zeros(2 * max_offset + 1), np.zeros(2 * max_offset + 1)
    for s in range(0, n - window + 1, hop):
        seg = mouth[s:s + window]
        if np.isfinite(seg).mean() < _MIN_FIT or speech[s:s + window].mean() < _MIN_SPEECH:
            continue
        for j, d in enumerate(range(-max_offset, max_offset + 1)):
            lo, hi = s + d, s + d + window
            if lo < 0 or hi > n:
                continue
            c = _corr(seg, env[lo:hi])
            if math.isfinite(c):
                sums[j] += c
                counts[j] += 1
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, sums / counts, np.nan)


def _refine(curve: np.ndarray, i: int) -> float:
    """Sub-frame peak position by a parabola through the peak and its neighbours."""
    if 0 < i < len(curve) - 1 and np.isfinite(curve[i - 1:i + 2]).all():
        a, b, c = curve[i - 1], curve[i], curve[i + 1]
        den = a - 2 * b + c
        if den < 0:
            return i + 0.5 * (a - c) / den
    return float(i)


class CorrelationBackend:
    """Mouth opening vs speech envelope, offset search (module docstring)."""

    name = "correlation"
    needs_faces = False

    def __init__(self, max_offset_frames: int = 15, window_s: float = 2.0, min_frames: int = 25) -> None:
        self.max_offset, self.window_s, self.min_frames = max_offset_frames, window_s, min_frames

    def score(self, batch: list[SyncInput]) -> list[SyncResult]:
        return [self.score_one(x) for x in batch]

    def score_one(self, x: SyncInput) -> SyncResult:
        if x.audio is None:
            return SyncResult(None, None, "no audio")
        n = len(x.mouth_open)
        env = envelope(x.audio, x.sample_rate, x.fps, n)
        speech = np.asarray(x.speech, bool) if x.speech is not None and len(x.speech) == n else env > 0
        mouth = smooth(np.asarray(x.mouth_open, np.float64), _SMOOTH)
        if int(speech.sum()) < self.min_frames:
            return SyncResult(None, None, "no speech")
        if int((speech & np.isfinite(mouth)).sum()) < self.min_frames:
            return SyncResult(None, None, "too few landmark frames")
        curve = offset_curve(mouth, env, speech, self.max_offset, round(self.window_s * x.fps))
        if not np.isfinite(curve).any():
            return SyncResult(None, None, "too few landmark frames")
        i = int(np.nanargmax(curve))
        peak = _refine(curve, i) - self.max_offset
        return SyncResult(offset_ms=peak * 1000.0 / x.fps, confidence=float(curve[i] - np.nanmedian(curve)),
                          curve=[float(c) if math.isfinite(c) else math.nan for c in curve])


def _syncnet_class() -> Any:
    try:
        from facevid.udfs.av.syncnet import SyncNetBackend
    except ModuleNotFoundError as exc:
        if exc.name != "facevid.udfs.av.syncnet":
            raise
        raise ValueError("sync backend syncnet: facevid.udfs.av.syncnet is not part of this installation") from exc
    return SyncNetBackend


def needs_faces(name: str) -> bool:
    """Whether the backend ``name`` wants ``SyncInput.faces`` (RGB face crops) collected."""
    return name != "correlation" and bool(getattr(_syncnet_class(), "needs_faces", True))


def sync_backend(name: str, params: AvParams, device: str = "cpu") -> SyncBackend:
    """The lip-sync backend ``name`` (``correlation`` | ``syncnet``) built from the stage params."""
    if name == "correlation":
        return CorrelationBackend(params.max_offset_frames, params.sync_window_s, params.min_sync_frames)
    if name == "syncnet":
        return _syncnet_class()(weights_path=params.syncnet_path, device=device, batch=params.syncnet_batch)
    raise ValueError(f"unknown sync backend {name!r} (known: correlation, syncnet)")
