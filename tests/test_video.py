"""udfs.video: timestamps, seeking, sampling, downscaling, rotation and decode errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from synth_video import FPS, SIZE, make_test_video

from udfs.base import StageError
from udfs.video import fit_max_side, iter_frames


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_test_video(tmp_path_factory.mktemp("video") / "scenes.mp4", 7.0, cuts=[2.0, 5.0])


def test_all_frames_and_timestamps(clip: Path) -> None:
    times = [t for t, _ in iter_frames(str(clip), max_side=64)]
    assert len(times) == 7 * FPS
    assert times[0] == 0.0
    assert np.allclose(np.diff(times), 1 / FPS)


def test_seek_window_and_sampling(clip: Path) -> None:
    times = [t for t, _ in iter_frames(str(clip), start_s=1.0, end_s=3.0, every_s=0.5, max_side=64)]
    assert np.allclose(times, [1.0, 1.52, 2.0, 2.52])  # first frame at/after each 0.5 s step
    first, _ = next(iter_frames(str(clip), start_s=5.0))  # exact after a seek past a keyframe
    assert first == pytest.approx(5.0)


def test_downscale_and_gray(clip: Path) -> None:
    _, bgr = next(iter_frames(str(clip)))
    assert bgr.shape == (SIZE[1], SIZE[0], 3) and bgr.dtype == np.uint8
    _, small = next(iter_frames(str(clip), max_side=64))
    assert small.shape == (48, 64, 3)
    _, gray = next(iter_frames(str(clip), max_side=64, gray=True))
    assert gray.shape == (48, 64)
    img, scale = fit_max_side(bgr, 1000)
    assert img is bgr and scale == 1.0


def test_display_rotation_is_applied(tmp_path: Path) -> None:
    plain = next(iter_frames(str(make_test_video(tmp_path / "a.mp4", 0.2))))[1]
    rotated = next(iter_frames(str(make_test_video(tmp_path / "b.mp4", 0.2, rotation=90))))[1]
    assert rotated.shape == (SIZE[0], SIZE[1], 3)  # portrait: 90 degrees counter-clockwise
    expected = np.rot90(plain.astype(np.int16))  # np.rot90 turns counter-clockwise
    assert np.abs(rotated.astype(np.int16) - expected).mean() < 2.0


@pytest.mark.parametrize("content", [None, b"not a video at all" * 100])
def test_unreadable_file_is_a_decode_error(tmp_path: Path, content: bytes | None) -> None:
    path = tmp_path / "x.mp4"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(StageError) as info:
        list(iter_frames(str(path)))
    assert info.value.category == "decode"
