"""facevid.udfs.media.shots: cut detection on synthetic and real videos, clip splitting and rejects."""

from __future__ import annotations

from pathlib import Path

import pytest
from synth_video import FPS, make_test_video

from facevid.udfs.media.shots import CLIP_COLUMNS, SplitParams, detect_shots, make_clips, split_row

FRAME = 1.0 / FPS


@pytest.fixture(scope="module")
def three_scenes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_test_video(tmp_path_factory.mktemp("shots") / "three.mp4", 7.0, cuts=[2.0, 5.0])


def test_hard_cuts_found_within_one_frame(three_scenes: Path) -> None:
    shots = detect_shots(str(three_scenes), SplitParams())
    assert len(shots) == 3
    starts = [s for s, _ in shots]
    assert starts[0] == 0.0
    assert starts[1] == pytest.approx(2.0, abs=FRAME + 1e-6)
    assert starts[2] == pytest.approx(5.0, abs=FRAME + 1e-6)
    assert shots[-1][1] == pytest.approx(7.0, abs=1e-6)
    assert all(a[1] == b[0] for a, b in zip(shots, shots[1:], strict=False))  # contiguous


def test_min_shot_s_suppresses_close_cuts(three_scenes: Path) -> None:
    assert len(detect_shots(str(three_scenes), SplitParams(min_shot_s=3.5))) == 2  # 5.0 is 3 s after 2.0


def test_split_row_on_synthetic(three_scenes: Path) -> None:
    rows = split_row({"uri": str(three_scenes)}, SplitParams(min_clip_s=1.0, max_clip_s=2.5))
    assert [(r["shot_index"], r["piece"]) for r in rows] == [(0, 0), (1, 0), (1, 1), (2, 0)]
    assert all(r["error"] is None and r["n_shots"] == 3 for r in rows)
    assert rows[1]["duration_s"] == pytest.approx(1.5, abs=FRAME)
    assert set(CLIP_COLUMNS) <= set(rows[0])


def test_no_cut_in_continuous_real_clip(shared_videos: Path) -> None:
    shots = detect_shots(str(shared_videos / "lp_d18.mp4"), SplitParams())
    assert len(shots) == 1
    assert shots[0][1] == pytest.approx(7.2, abs=0.05)


def test_real_shot_cuts(shared_videos: Path) -> None:
    shots = detect_shots(str(shared_videos / "hamilton_short.mp4"), SplitParams())
    assert len(shots) > 1
    # the cuts checked by eye: stage -> audience, audience -> singer, singer -> audience
    assert [round(s, 1) for s, _ in shots[1:]] == [0.7, 2.7, 7.0]


def test_long_shots_split_into_near_equal_pieces() -> None:
    rows = make_clips([(0.0, 40.0), (40.0, 55.0)], SplitParams(max_clip_s=15.0, min_clip_s=2.0))
    first = [r for r in rows if r["shot_index"] == 0]
    assert len(first) == 3 and [r["piece"] for r in first] == [0, 1, 2]
    assert all(r["duration_s"] == pytest.approx(40.0 / 3) for r in first)
    assert first[0]["start_s"] == 0.0 and first[-1]["end_s"] == 40.0
    assert all(a["end_s"] == b["start_s"] for a, b in zip(first, first[1:], strict=False))
    exact = [r for r in rows if r["shot_index"] == 1]
    assert len(exact) == 1 and exact[0]["duration_s"] == 15.0  # exactly max_clip_s stays whole
    assert all(r["error"] is None and r["n_shots"] == 2 for r in rows)


def test_short_shots_are_kept_as_error_rows() -> None:
    rows = make_clips([(0.0, 1.2), (1.2, 5.0)], SplitParams())
    assert len(rows) == 2
    assert rows[0]["error"] == "min_clip_s: 1.20s < 2.0s"
    assert rows[1]["error"] is None and rows[1]["shot_index"] == 1


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"threshold": 0}, "threshold"),
        ({"min_shot_s": -1}, "min_shot_s"),
        ({"min_clip_s": 5, "max_clip_s": 8}, r"2 \* min_clip_s"),
        ({"analysis_side": 4}, "analysis_side"),
        ({"adaptive_ratio": 0.5}, "adaptive_ratio"),
    ],
)
def test_params_validation(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SplitParams(**kwargs)
