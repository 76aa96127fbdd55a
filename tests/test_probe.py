"""probe_video on the real clips (against OpenCV as an independent reader) and on hostile files."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import pytest
from synth_video import make_garbled_video, make_test_video

from facevid.udfs.base import StageError
from facevid.udfs.media.probe import PROBE_COLUMNS, probe_video

NO_AUDIO = {"carphone_pristine.mp4", "carphone_distorted.mp4", "neg_cat.mp4", "neg_paragliding.mp4"}


def shared_names(folder: Path) -> list[str]:
    return [m["file"] for m in json.loads((folder / "manifest.json").read_text())]


def opencv_facts(path: Path) -> tuple[float, float, int, int]:
    cap = cv2.VideoCapture(str(path))
    try:
        frames, fps = cap.get(cv2.CAP_PROP_FRAME_COUNT), cap.get(cv2.CAP_PROP_FPS)
        return frames, fps, int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
    finally:
        cap.release()


@pytest.fixture(scope="module")
def probed(shared_videos: Path) -> dict[str, dict]:
    names = shared_names(shared_videos)
    assert len(names) == 18
    return {name: probe_video(str(shared_videos / name)) for name in names}


def test_every_shared_clip_matches_opencv(probed: dict[str, dict], shared_videos: Path) -> None:
    for name, r in probed.items():
        assert list(r) == list(PROBE_COLUMNS), name
        frames, fps, w, h = opencv_facts(shared_videos / name)
        assert abs(r["duration_s"] - frames / fps) < 0.1, name
        assert r["frame_count"] == frames, name
        assert r["fps"] == pytest.approx(fps, rel=0.01), name
        assert (r["width"], r["height"]) == (w, h) == (r["coded_width"], r["coded_height"]), name
        assert r["rotation"] == 0 and r["codec"] in ("h264", "mpeg4") and r["pix_fmt"] == "yuv420p", name
        assert r["container"].startswith("mov,mp4") and r["bit_rate"] > 0, name
        assert r["has_audio"] == (name not in NO_AUDIO), name
        assert r["audio_codec"] == (None if name in NO_AUDIO else "aac"), name


def test_known_facts_of_the_shared_clips(probed: dict[str, dict]) -> None:
    s13 = probed["lp_s13.mp4"]
    assert (s13["width"], s13["height"], s13["duration_s"]) == (720, 1080, pytest.approx(4.1, abs=0.05))
    face1 = probed["retalking_face1.mp4"]  # 22.1 fps on a 30 fps grid: 1- and 2-tick intervals
    assert face1["fps"] == pytest.approx(22.1, abs=0.05)
    assert face1["is_vfr"] and face1["frame_interval_cv"] > 0.3
    lp = probed["lp_d18.mp4"]
    assert not lp["is_vfr"] and lp["frame_interval_cv"] < 0.01 and lp["fps"] == 30.0
    assert probed["hamilton_short.mp4"]["fps"] == pytest.approx(29.97, abs=0.01)
    assert probed["sadtalker_aoc.mp4"]["codec"] == "mpeg4"
    assert (probed["facenet_crowd_1080p.mp4"]["width"], probed["facenet_crowd_1080p.mp4"]["height"]) == (1920, 1080)
    assert not any(r["is_vfr"] for name, r in probed.items() if name != "retalking_face1.mp4")


@pytest.mark.parametrize("name, category", [
    ("zero", "empty"), ("text", "not_video"), ("truncated", "truncated"), ("audio", "not_video")])
def test_hostile_files_raise_categorised_errors(hostile_videos: dict[str, Path], name: str, category: str) -> None:
    with pytest.raises(StageError) as err:
        probe_video(str(hostile_videos[name]))
    assert err.value.category == category


def test_missing_and_undecodable_files(tmp_path: Path) -> None:
    with pytest.raises(StageError) as err:
        probe_video(str(tmp_path / "nope.mp4"))
    assert err.value.category == "missing"
    with pytest.raises(StageError) as err:
        probe_video(str(make_garbled_video(tmp_path / "garbled.mp4")))
    assert err.value.category == "decode"


def test_edge_videos_are_correct_rows(hostile_videos: dict[str, Path]) -> None:
    one = probe_video(str(hostile_videos["one_frame"]))
    assert (one["frame_count"], one["duration_s"], one["fps"]) == (1, pytest.approx(0.04, abs=1e-3), 25.0)
    rot = probe_video(str(hostile_videos["rotated"]))
    assert (rot["rotation"], rot["width"], rot["height"]) == (90, 96, 160)
    assert (rot["coded_width"], rot["coded_height"]) == (160, 96)
    odd = probe_video(str(hostile_videos["odd"]))
    assert (odd["width"], odd["height"], odd["frame_count"], odd["pix_fmt"]) == (161, 97, 25, "yuv444p")
    talk = probe_video(str(hostile_videos["tiny_talk"]))
    assert (talk["has_audio"], talk["audio_codec"], talk["frame_count"]) == (True, "aac", 50)
    assert talk["duration_s"] == pytest.approx(2.0, abs=0.01) and not talk["is_vfr"]


@pytest.mark.parametrize("degrees, expected", [(-90, 270), (180, 180), (270, 270)])
def test_rotation_is_normalised(tmp_path: Path, degrees: int, expected: int) -> None:
    r = probe_video(str(make_test_video(tmp_path / "r.mp4", 0.2, size=(64, 32), rotation=degrees)))
    assert r["rotation"] == expected
    assert (r["width"], r["height"]) == ((32, 64) if expected in (90, 270) else (64, 32))


@pytest.mark.parametrize("movflags", ["faststart", "frag_keyframe+empty_moov"])
def test_cut_files_with_a_readable_index_are_truncated(tmp_path: Path, movflags: str) -> None:
    """An mp4 whose index comes first (or that is fragmented) still opens when cut short."""
    whole = make_test_video(tmp_path / "whole.mp4", 2.0, container_options={"movflags": movflags})
    assert probe_video(str(whole))["frame_count"] == 50
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(whole.read_bytes()[: int(whole.stat().st_size * 0.6)])
    with pytest.raises(StageError) as err:
        probe_video(str(cut))
    assert err.value.category == "truncated"
