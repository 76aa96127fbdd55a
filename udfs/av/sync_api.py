"""The contract of lip-sync backends: what they get per clip and what they return.

A backend scores audio-visual offsets for a batch of clips at once (``score(batch)``, one result
per input, same order). Positive ``offset_ms`` = the audio is LATER than the video (the sound of a
mouth movement arrives after it is seen). Backends are selected by name in ``pipeline.yml``
(``stages.av.params.sync``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import numpy as np


@dataclass
class SyncInput:
    """One clip's inputs, on one clock: video frame ``i`` is at ``i / fps`` seconds and audio
    sample ``j`` at ``j / sample_rate`` seconds from the same origin (the clip's first frame)."""

    fps: float
    mouth_open: np.ndarray  # (T,) float: mouth opening per frame, NaN where the landmark fit failed
    audio: np.ndarray | None  # (N,) float32 mono in [-1, 1] at sample_rate, or None (no audio)
    sample_rate: int = 16000
    # (T, 224, 224, 3) uint8 RGB face crops (square around the face, mouth in the lower half),
    # only collected for backends that set ``needs_faces``; None otherwise
    faces: np.ndarray | None = None
    speech: np.ndarray | None = None  # (T,) bool: voice activity per video frame, when known


@dataclass
class SyncResult:
    """Best offset (ms, positive = audio later), a confidence (backend-specific scale, higher =
    surer; documented by the backend), and why they are null when they are."""

    offset_ms: float | None
    confidence: float | None
    note: str | None = None  # e.g. "no audio", "no speech", "too few landmark frames"
    curve: list[float] = field(default_factory=list)  # score per searched offset (diagnostics)
    # significance of the peak: z-score against the same statistic with mismatched audio (None:
    # the backend does not measure it)
    z: float | None = None


class SyncBackend(Protocol):
    name: str
    needs_faces: bool

    def score(self, batch: list[SyncInput]) -> list[SyncResult]: ...
