"""MFCCs in numpy, equal to ``python_speech_features.mfcc`` with its defaults (what SyncNet was
trained on): 25 ms rectangular frames every 10 ms (zero-padded at the end), pre-emphasis 0.97,
512-point power spectrum, 26 triangular mel filters from 0 Hz to Nyquist, log, orthonormal DCT-II,
13 coefficients, sinusoidal lifter 22, and coefficient 0 replaced by the log frame energy.
Zero energies become machine epsilon before the log, as there. The package is not a dependency:
the tests compare against it."""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
from scipy.fft import dct

_EPS = np.finfo(float).eps


def _round_half_up(x: float) -> int:
    return int(math.floor(x + 0.5))


def _hz2mel(hz: np.ndarray) -> np.ndarray:
    return 2595 * np.log10(1 + hz / 700.0)


def _mel2hz(mel: np.ndarray) -> np.ndarray:
    return 700 * (10 ** (mel / 2595.0) - 1)


@lru_cache(maxsize=8)
def mel_filterbank(nfilt: int, nfft: int, sample_rate: int) -> np.ndarray:
    """``(nfilt, nfft // 2 + 1)`` triangular filters on FFT bins (python_speech_features' layout)."""
    points = np.linspace(_hz2mel(np.float64(0)), _hz2mel(np.float64(sample_rate / 2)), nfilt + 2)
    bins = np.floor((nfft + 1) * _mel2hz(points) / sample_rate)
    bank = np.zeros((nfilt, nfft // 2 + 1))
    for j in range(nfilt):
        lo, mid, hi = bins[j], bins[j + 1], bins[j + 2]
        rise = np.arange(int(lo), int(mid))
        fall = np.arange(int(mid), int(hi))
        bank[j, rise] = (rise - lo) / (mid - lo)
        bank[j, fall] = (hi - fall) / (hi - mid)
    bank.setflags(write=False)
    return bank


def mfcc(signal: np.ndarray, sample_rate: int = 16000, winlen: float = 0.025, winstep: float = 0.01,
         numcep: int = 13, nfilt: int = 26, nfft: int = 512, preemph: float = 0.97,
         ceplifter: int = 22) -> np.ndarray:
    """``(frames, numcep)`` MFCCs of a mono signal (any scale; SyncNet's were computed on int16
    sample values). ``frames = 1 + ceil((len - winlen) / winstep)`` (1 for a signal shorter than a
    window)."""
    x = np.asarray(signal, np.float64).reshape(-1)
    if x.size == 0:
        x = np.zeros(1)
    x = np.append(x[0], x[1:] - preemph * x[:-1])
    flen, fstep = _round_half_up(winlen * sample_rate), _round_half_up(winstep * sample_rate)
    n = 1 if x.size <= flen else 1 + math.ceil((x.size - flen) / fstep)
    padded = np.concatenate([x, np.zeros((n - 1) * fstep + flen - x.size)])
    frames = np.lib.stride_tricks.sliding_window_view(padded, flen)[::fstep][:n]
    power = np.square(np.abs(np.fft.rfft(frames, nfft))) / nfft
    energy = power.sum(axis=1)
    feat = power @ mel_filterbank(nfilt, nfft, sample_rate).T
    feat = dct(np.log(np.where(feat == 0, _EPS, feat)), type=2, axis=1, norm="ortho")[:, :numcep]
    if ceplifter > 0:
        feat *= 1 + (ceplifter / 2.0) * np.sin(np.pi * np.arange(numcep) / ceplifter)
    feat[:, 0] = np.log(np.where(energy == 0, _EPS, energy))
    return feat
