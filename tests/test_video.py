"""facevid.udfs.media.video: timestamps, seeking, sampling, downscaling, rotation, decode errors, and one span
rule seen alike by every consumer (iter_frames, identity.frames_at, crops_encode.encode_crop)."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest
from synth_video import FPS, SIZE, make_test_video, make_timed_video

from facevid.udfs.base import StageError
from facevid.udfs.face.embed import frames_at
from facevid.udfs.media.encode import encode_crop
from facevid.udfs.media.video import VideoSpan, fit_max_side, in_span, iter_frames


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


# ---- one span rule for every consumer -------------------------------------------------------------

def all_frame_times(path: str) -> list[float]:
    """Every frame's time, from a plain decode of the whole file (no seek): the ground truth."""
    with av.open(path) as c:
        s = c.streams.video[0]
        origin = s.start_time or 0
        return sorted(float((f.pts - origin) * s.time_base) for f in c.decode(s))


def seen_by_identity(path: str, start: float, end: float | None, times: list[float]) -> list[float]:
    """Distinct frame times ``identity.frames_at`` decodes for a dense grid of sample times."""
    last = (times[-1] if times else 0.0) + 0.2
    grid = np.arange(start - 0.2, (end if end is not None else last) + 0.2, 0.002).tolist()
    return sorted({t for _, t, _, _ in frames_at(path, grid, start, end, boxes=())})


def seen_by_crops(path: str, start: float, end: float | None, out: Path) -> list[float]:
    """Times of the frames ``encode_crop`` wrote (the crop keeps the source's pts steps)."""
    try:
        enc = encode_crop(path, start, end, (0, 0, 32), 32, str(out), preset="ultrafast")
    except StageError as exc:
        assert exc.category == "decode" and "no frames" in exc.detail
        return []
    with av.open(str(out)) as c:
        s = c.streams.video[0]
        origin = s.start_time or 0
        got = sorted(enc["t_first"] + float((f.pts - origin) * s.time_base) for f in c.decode(s))
    assert len(got) == enc["n_frames"] and got[-1] == pytest.approx(enc["t_last"], abs=1e-4)
    return got


def spans(times: list[float]) -> list[tuple[float, float | None]]:
    """Mid-GOP start, a start just before a keyframe (a frame ~2 s in), an end exactly on a frame
    time, an end between frames, past the end, the whole video."""
    n, dur = len(times), times[-1]
    return [(times[n // 3] + 0.013, times[2 * n // 3]), (times[n // 2] - 0.001, None),
            (0.0, times[n // 4]), (times[5], times[n // 2] + 0.005), (dur + 1.0, dur + 3.0), (0.0, None)]


def synthetic_videos(folder: Path) -> dict[str, Path]:
    rng = np.random.default_rng(7)
    vfr = np.concatenate([[0.0], np.cumsum(rng.uniform(0.012, 0.09, 90))])
    return {"gop": make_timed_video(folder / "gop.mp4", np.arange(100) / FPS),
            "vfr": make_timed_video(folder / "vfr.mp4", vfr),
            "offset": make_timed_video(folder / "offset.mp4", 1.5 + np.arange(60) / FPS, audio=True)}


@pytest.mark.parametrize("name", ["gop", "vfr", "offset", "hamilton_short", "lp_d18"])
def test_every_consumer_sees_the_same_frames_of_a_span(name: str, request: pytest.FixtureRequest,
                                                       tmp_path: Path) -> None:
    if name in ("gop", "vfr", "offset"):
        path = str(synthetic_videos(tmp_path)[name])
    else:  # hamilton: video starts 0.85 s into the file, keyframes every ~2 s; lp_d18: B-frames
        path = str(request.getfixturevalue("shared_videos") / f"{name}.mp4")
    times = all_frame_times(path)
    assert times[0] == 0.0 and len(set(times)) == len(times)
    for i, (start, end) in enumerate(spans(times)):
        expected = [t for t in times if in_span(t, start, end)]
        assert expected or start > times[-1]
        with VideoSpan(path, start, end) as span:
            raw = [t for t, _ in span.frames()]
        assert raw == expected, (start, end)
        assert [t for t, _ in iter_frames(path, start, end, max_side=16)] == expected, (start, end)
        assert seen_by_identity(path, start, end, times) == expected, (start, end)
        assert np.allclose(seen_by_crops(path, start, end, tmp_path / f"{i}.mp4"), expected, atol=1e-4), (start, end)


def test_end_on_a_frame_time_belongs_to_the_next_span(tmp_path: Path) -> None:
    path = str(synthetic_videos(tmp_path)["vfr"])
    times = all_frame_times(path)
    cut = times[40]
    first = [t for t, _ in iter_frames(path, 0.0, cut, max_side=16)]
    second = [t for t, _ in iter_frames(path, cut, None, max_side=16)]
    assert first[-1] == times[39] and second[0] == cut and first + second == times


def test_seek_is_retried_when_the_demuxer_lands_after_the_start(tmp_path: Path, monkeypatch) -> None:
    path = str(synthetic_videos(tmp_path)["gop"])
    times = all_frame_times(path)
    seek = av.container.InputContainer.seek
    calls = []

    def late(self, offset, **kw):  # a demuxer that seeks 0.5 s too far on the first try
        calls.append(offset)
        return seek(self, offset + (int(0.5 / 1e-5) if len(calls) == 1 else 0), **kw)

    monkeypatch.setattr(av.container.InputContainer, "seek", late)
    assert [t for t, _ in iter_frames(path, 2.0, 3.0, max_side=16)] == [t for t in times if 2.0 - 1e-6 <= t < 3.0 - 1e-6]
    assert len(calls) >= 2
