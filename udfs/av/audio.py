"""A clip's audio on the video clock: 16 kHz mono samples, voice activity and loudness.

Alignment: audio frames come from the same demux pass as the video (``VideoSpan.frames(audio=True)``)
with their start ``t`` on the VIDEO clock (``(pts - video start_time) * time_base``), so a stream
that starts before the video (``hamilton_short.mp4``: audio 0.008 s, video 0.852 s) is trimmed
and one delayed relative to the video keeps its delay as leading zeros. ``AudioTrack.aligned``
returns the samples with sample 0 at the clip's first video frame. A jump in the audio pts (a
gap, a dropped packet) restarts the resampler so later samples stay at their own time; the gap
is silence.

Voice activity: WebRTC's VAD (``webrtcvad-wheels``, a GMM over 6 sub-band energies) on 30 ms
frames of 16-bit PCM; ``vad_mode`` 0-3 = increasingly aggressive at rejecting non-speech.
Loudness: integrated loudness in LUFS (ITU-R BS.1770-4 with its -70 LUFS absolute and -10 LU
relative gates, ``pyloudnorm``); null for clips shorter than one 400 ms gating block or whose
every block is gated away (digital silence).
"""

from __future__ import annotations

import math
from typing import Any

import av
import numpy as np

SAMPLE_RATE = 16000
VAD_FRAME_MS = 30  # one of webrtcvad's 10/20/30 ms
_GAP_S = 0.02  # an audio pts this far past the expected time starts a new segment (a gap)


class AudioTrack:
    """Collects decoded ``av.AudioFrame``s (with their video-clock start ``t``) into resampled
    16 kHz mono segments."""

    def __init__(self) -> None:
        self.segments: list[tuple[float, list[np.ndarray]]] = []
        self._resampler: Any = None
        self._next_t = math.nan  # where the next input frame is expected to start

    def add(self, t: float, frame: av.AudioFrame) -> None:
        if math.isnan(t):  # no pts: continues the previous frame
            t = self._next_t
        if math.isnan(t):
            return
        if self._resampler is None or abs(t - self._next_t) > _GAP_S:
            self._flush()
            self._resampler = av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE)
            self.segments.append((t, []))
        self._next_t = t + frame.samples / float(frame.sample_rate or SAMPLE_RATE)
        self.segments[-1][1].extend(o.to_ndarray().reshape(-1) for o in self._resampler.resample(frame))

    def _flush(self) -> None:
        if self._resampler is not None and self.segments:
            self.segments[-1][1].extend(o.to_ndarray().reshape(-1) for o in self._resampler.resample(None))
        self._resampler = None

    def aligned(self, t0: float, duration_s: float) -> np.ndarray:
        """``round(duration_s * 16000)`` float32 samples; sample 0 at time ``t0``; zeros where the
        stream has nothing (before its start, in gaps, after its end)."""
        self._flush()
        n = max(0, round(duration_s * SAMPLE_RATE))
        out = np.zeros(n, np.float32)
        for start, chunks in self.segments:
            if not chunks:
                continue
            seg = np.concatenate(chunks)
            at = round((start - t0) * SAMPLE_RATE)
            lo, hi = max(at, 0), min(at + len(seg), n)
            if hi > lo:
                out[lo:hi] = seg[lo - at:hi - at]
        return np.clip(out, -1.0, 1.0)


def voice_activity(audio: np.ndarray, mode: int) -> np.ndarray:
    """Speech (bool) per 30 ms frame of 16 kHz mono ``audio`` (WebRTC VAD, aggressiveness ``mode``)."""
    import webrtcvad

    vad = webrtcvad.Vad(int(mode))
    hop = SAMPLE_RATE * VAD_FRAME_MS // 1000
    pcm = (np.clip(audio, -1.0, 1.0) * 32767.0).astype("<i2")
    n = len(pcm) // hop
    return np.array([vad.is_speech(pcm[i * hop:(i + 1) * hop].tobytes(), SAMPLE_RATE) for i in range(n)], bool)


def per_frame(vad: np.ndarray, fps: float, n_frames: int) -> np.ndarray:
    """Speech per video frame ``k``: the VAD frame holding the middle of the frame's display
    interval ``[k / fps, (k + 1) / fps)`` (the interval the sync envelope measures)."""
    if not len(vad):
        return np.zeros(n_frames, bool)
    centre = (np.arange(n_frames) + 0.5) / fps
    idx = np.minimum((centre * 1000.0 / VAD_FRAME_MS).astype(np.int64), len(vad) - 1)
    return vad[idx]


def loudness_lufs(audio: np.ndarray) -> float | None:
    """Integrated loudness (LUFS, BS.1770-4) of 16 kHz mono ``audio``; None when not measurable."""
    import pyloudnorm

    if len(audio) < int(0.4 * SAMPLE_RATE):
        return None
    value = float(pyloudnorm.Meter(SAMPLE_RATE).integrated_loudness(audio.astype(np.float64)))
    return value if math.isfinite(value) else None
