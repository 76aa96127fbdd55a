"""probe_video on the real clips (against an independent decoder) and on hostile files."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import pytest

from udfs.base import StageError
from udfs.probe import PROBE_COLUMNS, probe_video


def test_real_videos_match_opencv_within_a_tenth_of_a_second(shared_videos: Path) -> None:
    names = [m["file"] for m in json.loads((shared_videos / "manifest.json").read_text())]
    assert len(names) == 18
    for name in names:
        r = probe_video(str(shared_videos / name))
        assert set(r) == set(PROBE_COLUMNS)
        cap = cv2.VideoCapture(str(shared_videos / name))
        frames, fps = cap.get(cv2.CAP_PROP_FRAME_COUNT), cap.get(cv2.CAP_PROP_FPS)
        w, h = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
        cap.release()
        assert abs(r["duration_s"] - frames / fps) < 0.1, name
        assert r["frame_count"] == frames, name
        assert (r["width"], r["height"]) == (w, h), name
        assert r["codec"] in ("h264", "mpeg4") and r["rotation"] == 0


def test_known_facts_of_the_shared_clips(shared_videos: Path) -> None:
    s13 = probe_video(str(shared_videos / "lp_s13.mp4"))
    assert (s13["width"], s13["height"]) == (720, 1080)
    face1 = probe_video(str(shared_videos / "retalking_face1.mp4"))
    assert abs(face1["fps"] - 22.1) < 0.1  # the odd-rate clip: uneven timestamps
    assert face1["is_vfr"] and face1["frame_interval_cv"] > 0.05
    lp = probe_video(str(shared_videos / "lp_d18.mp4"))
    assert not lp["is_vfr"] and lp["frame_interval_cv"] < 0.01 and lp["fps"] == 30.0
    assert probe_video(str(shared_videos / "hamilton_short.mp4"))["has_audio"]
    assert not probe_video(str(shared_videos / "neg_cat.mp4"))["has_audio"]


@pytest.mark.parametrize("name, category", [("zero", "empty"), ("text", "not_video"), ("truncated", "truncated")])
def test_hostile_files_raise_categorised_errors(hostile_videos: dict[str, Path], name: str, category: str) -> None:
    with pytest.raises(StageError) as err:
        probe_video(str(hostile_videos[name]))
    assert err.value.category == category


def test_missing_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(StageError, match="missing"):
        probe_video(str(tmp_path / "nope.mp4"))


def test_edge_videos_are_correct_rows(hostile_videos: dict[str, Path]) -> None:
    one = probe_video(str(hostile_videos["one_frame"]))
    assert one["frame_count"] == 1 and one["duration_s"] == pytest.approx(0.04, abs=1e-3)
    rot = probe_video(str(hostile_videos["rotated"]))
    assert (rot["rotation"], rot["width"], rot["height"], rot["coded_width"]) == (90, 120, 160, 160)
    odd = probe_video(str(hostile_videos["odd"]))
    assert (odd["width"], odd["height"], odd["frame_count"]) == (161, 97, 25)
    talk = probe_video(str(hostile_videos["talk"]))
    assert talk["has_audio"] and talk["audio_codec"] == "aac" and talk["duration_s"] == pytest.approx(3.0, abs=0.05)
