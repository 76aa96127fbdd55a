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
correlation units (0-2). A peak on the first or last searched offset is reported with ``note``
"peak at the search edge" (the true offset may lie beyond; not a confident offset).

Significance (``SyncResult.z`` -> ``av_sync_z``): the same curve is computed for
``null_curves`` circular shifts of the envelope (by >= ``max_offset + 5`` frames) and as many of
the time-reversed envelope (mismatched audio with the same level distribution and rhythm);
``z`` = (peak - mean of their peaks) / their std. ~50 curves cost ~0.12 ms a landmark frame on
numpy (the landmarks cost ~2 ms). ``confidence`` does not separate right from wrong offsets
(0.18-0.67 on talking clips whatever the offset); ``z`` is calibrated against mismatched audio:
the mouth of one talking clip with the audio of another of the 9 reaches z <= 2.9; with the
audio of the crowd and hamilton's shots too (90 pairs) z <= 3.42 (retalking_face1's mouth with
hamilton's audio, +453 ms): hence the floor ``sync_min_z`` 3.5.

Measured on the shared talking clips (25 fps landmarks; original / audio shifted +400 / -400 ms,
offset ms and z): retalking_face3_aoc -16 / +402 / -421 (z -0.0 / 0.8 / 0.8), retalking_face5
-31 / +374 / -427 (1.3 / 1.0 / 1.3), sadtalker_aoc +78 / +468 / -327 (0.8 / 0.9 / 0.7),
retalking_face2 +294 / +397 / -409 (0.6 / 0.4 / 0.6), retalking_face1 +269 / edge / -525
(1.0 / 0.9 / 1.4), retalking_face4 edge / edge / +239 (1.1 / -0.8 / 1.6), lp_d20 +279 / edge /
-121 (3.8 / -0.5 / 4.4), lp_d11 -80 / edge / -479 (-0.6 / 0.0 / -0.8), lp_s13 +194 / edge /
-204 (0.5 / 2.3 / -0.1). On 4-9 s clips only lp_d20's peak stands out from mismatched audio
(its curve is sharp and self-consistent: +279 then -121 with the audio 400 ms earlier, so its
audio may really be ~280 ms late); the others' curves are quasi-periodic (syllable rhythm,
~250 ms) with several peaks of similar height. Tried and not adopted (same search, see the
report of branch sync2): log envelope (more shift-consistent over +-1 s, 8/9 vs 6/9 clips, but
moves retalking_face2 to +538 and a remuxed delay's leading silence dominates the log), outer
lip, inner+outer, lip areas, mouth/envelope velocities and positive parts, Spearman, 1-5 s
windows: none better on the originals.
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


def offset_curves(mouth: np.ndarray, envs: np.ndarray, speech: np.ndarray, max_offset: int, window: int) -> np.ndarray:
    """Mean windowed correlation of ``mouth[k]`` with ``envs[r, k + d]`` for each envelope row ``r``
    and ``d`` in ``-max_offset..max_offset``: shape ``(R, 2 * max_offset + 1)``, NaN where no window
    qualifies. Windows of ``window`` frames (hop = a tenth) count where ``speech`` is on a quarter
    and a fit (finite ``mouth``) on half of their frames; a window's pairs with no fit are left out."""
    from numpy.lib.stride_tricks import sliding_window_view

    envs = np.atleast_2d(np.asarray(envs, np.float64))
    n = len(mouth)
    w = max(5, min(window, n))
    offsets = np.arange(-max_offset, max_offset + 1)
    out = np.full((len(envs), len(offsets)), np.nan)
    starts = np.arange(0, n - w + 1, max(1, w // 10))
    seg = sliding_window_view(np.asarray(mouth, np.float64), w)[starts]
    fit = np.isfinite(seg)
    keep = (fit.mean(1) >= _MIN_FIT) & (sliding_window_view(speech.astype(np.float64), w)[starts].mean(1) >= _MIN_SPEECH)
    if not keep.any():
        return out
    starts, fit = starts[keep], fit[keep].astype(np.float64)
    m = np.where(fit > 0, seg[keep], 0.0)
    idx = starts[None, :] + offsets[:, None]  # (offsets, windows): where the envelope window starts
    inside = (idx >= 0) & (idx + w <= n)
    cnt = fit.sum(1)
    m_mean = m.sum(1) / cnt
    m_var = (m * m).sum(1) - cnt * m_mean**2
    for r, env in enumerate(envs):
        e = sliding_window_view(env, w)[np.clip(idx, 0, n - w)] * fit  # (offsets, windows, w)
        e_mean = e.sum(2) / cnt
        cov = (m * e).sum(2) - cnt * m_mean * e_mean
        den = np.sqrt(np.maximum(m_var * ((e * e).sum(2) - cnt * e_mean**2), 0.0))
        ok = inside & (den > 1e-12) & (cnt >= 5)
        corr = np.where(ok, cov / np.where(ok, den, 1.0), 0.0)
        with np.errstate(invalid="ignore", divide="ignore"):
            out[r] = np.where(ok.any(1), corr.sum(1) / ok.sum(1), np.nan)
    return out


def offset_curve(mouth: np.ndarray, env: np.ndarray, speech: np.ndarray, max_offset: int, window: int) -> np.ndarray:
    """``offset_curves`` of one envelope: shape ``(2 * max_offset + 1,)``."""
    return offset_curves(mouth, env[None], speech, max_offset, window)[0]


def null_envelopes(env: np.ndarray, max_offset: int, k: int) -> np.ndarray:
    """Mismatched audio for the significance test: ``k`` circular shifts of ``env`` by at least
    ``max_offset + 5`` frames each way, and ``k`` circular shifts of the time-reversed ``env``
    (same level distribution and rhythm, no relation to the mouth)."""
    n = len(env)
    rows = []
    lo, hi = max_offset + 5, n - max_offset - 5
    if hi >= lo:
        rows += [np.roll(env, int(s)) for s in np.unique(np.linspace(lo, hi, k).round())]
    rows += [np.roll(env[::-1], int(s)) for s in np.unique(np.linspace(0, n - 1, k).round())]
    return np.stack(rows)


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

    def __init__(self, max_offset_frames: int = 15, window_s: float = 2.0, min_frames: int = 25,
                 null_curves: int = 24) -> None:
        self.max_offset, self.window_s, self.min_frames = max_offset_frames, window_s, min_frames
        self.null_curves = null_curves

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
        curves = offset_curves(mouth, np.vstack([env, null_envelopes(env, self.max_offset, self.null_curves)]),
                               speech, self.max_offset, round(self.window_s * x.fps))
        curve = curves[0]
        if not np.isfinite(curve).any():
            return SyncResult(None, None, "too few landmark frames")
        i = int(np.nanargmax(curve))
        peak = _refine(curve, i) - self.max_offset
        edge = i in (0, len(curve) - 1)
        note = f"peak at the search edge (+-{self.max_offset} frames): the offset may lie beyond it" if edge else None
        return SyncResult(offset_ms=peak * 1000.0 / x.fps, confidence=float(curve[i] - np.nanmedian(curve)), note=note,
                          curve=[float(c) if math.isfinite(c) else math.nan for c in curve],
                          z=significance(float(curve[i]), curves[1:]))


def significance(peak: float, null_curves: np.ndarray) -> float | None:
    """z-score of a curve's peak against the peaks of the ``null_curves`` (mismatched audio);
    None when fewer than 8 null curves have a peak or they all peak alike."""
    with np.errstate(all="ignore"):
        peaks = np.nanmax(np.where(np.isfinite(null_curves), null_curves, -np.inf), axis=1)
    peaks = peaks[np.isfinite(peaks)]
    if len(peaks) < 8 or float(peaks.std()) <= 1e-9:
        return None
    return float((peak - peaks.mean()) / peaks.std())


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
        return CorrelationBackend(params.max_offset_frames, params.sync_window_s, params.min_sync_frames,
                                  params.sync_null_curves)
    if name == "syncnet":
        return _syncnet_class()(weights_path=params.syncnet_path, device=device, batch=params.syncnet_batch)
    raise ValueError(f"unknown sync backend {name!r} (known: correlation, syncnet)")
