"""The frames a captioner is shown: the paper's review protocol, seeded per clip.

``sample_frames`` picks the crop's FIRST frame plus ``n_random`` random frames, no two of the
shown frames consecutive (frame 0 included: the random ones come from index 2 on), uniformly
over all such choices, from a generator seeded by ``seed`` and the clip's identity (``key``,
default the crop file's name; crops are content-addressed) so the same clip always gets the
same frames. Frame indices are positions in presentation order. A clip too short for that many
non-consecutive frames (fewer than ``2 * n_random + 1`` frames) gives every other frame it has
and logs it; ``len(frames) < n_random + 1`` tells the caller. The crop is demuxed once to count
its frames (no decoding), then decoded up to the last chosen frame; only the chosen frames are
converted, to RGB with the longest side at most ``side``.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import av
import numpy as np

from facevid.udfs.base import StageError
from facevid.udfs.media.storage import local_path
from facevid.udfs.media.video import VideoSpan, to_array

log = logging.getLogger(__name__)


def frame_plan(n_frames: int, n_random: int, seed: int, key: str) -> list[int]:
    """Sorted indices: 0 plus ``min(n_random, (n_frames - 1) // 2)`` random indices in
    ``[2, n_frames)``, pairwise at least 2 apart (uniform over all such sets: choose from the
    positions left once the gaps are reserved, then spread them)."""
    if n_frames <= 0:
        return []
    k = min(n_random, (n_frames - 1) // 2)
    digest = int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big")
    rng = np.random.default_rng([seed, digest])
    free = n_frames - 2 - (k - 1)  # positions in [2, n) once k - 1 one-frame gaps are set aside
    picks = np.sort(rng.choice(free, size=k, replace=False)) if k else np.array([], int)
    return [0, *(int(2 + p + i) for i, p in enumerate(picks))]


def _count_frames(path: str) -> int:
    with VideoSpan(path) as span:
        try:
            return sum(1 for p in span.container.demux(span.stream) if p.size and p.pts is not None)
        except av.FFmpegError as exc:
            raise StageError("decode", f"{path}: {exc}") from exc


def sample_frames(crop_uri: str, n_random: int = 3, seed: int = 0, side: int = 448,
                  key: str | None = None) -> tuple[list[np.ndarray], list[float]]:
    """``(frames, times)``: HxWx3 uint8 RGB frames (longest side <= ``side``) and their times in
    seconds from the crop's first frame, in time order (see the module docstring). ``crop_uri`` is
    local, ``dbfs:/`` or ``s3://``. Raises ``StageError("decode")`` for a file that does not open,
    has no video stream, fails to decode or decodes no frame."""
    if n_random < 0:
        raise ValueError(f"n_random must be >= 0, got {n_random}")
    key = key or Path(str(crop_uri)).name
    with local_path(str(crop_uri)) as path:
        n = _count_frames(path)
        plan = frame_plan(n, n_random, seed, key)
        want, frames, times = set(plan), [], []
        with VideoSpan(path) as span:
            try:
                for i, (t, frame) in enumerate(span.frames()):
                    if i in want:
                        frames.append(to_array(frame, "rgb24", side))
                        times.append(round(t, 6))
                        if len(frames) == len(plan):
                            break
            except av.FFmpegError as exc:
                raise StageError("decode", f"{path}: {exc}") from exc
    if not frames:
        raise StageError("decode", f"no frame decoded from {crop_uri}")
    if len(frames) < n_random + 1:
        log.info("%s: %d frames, %d of the %d frames asked for shown", crop_uri, n, len(frames), n_random + 1)
    return frames, times
