"""facevid.udfs.face.faces / facevid.udfs.models.detectors on the shared real clips (mtcnn default; yunet when its weights exist)."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

from facevid.udfs.base import StageError
from facevid.udfs.face.faces import FACES_COLUMNS, FacesParams, detect_clip, faces_row
from facevid.udfs.media.video import iter_frames
from facevid.udfs.models.detectors import DETECTORS, get_detector

SINGLE = [
    "retalking_face1", "retalking_face2", "retalking_face3_aoc", "retalking_face4", "retalking_face5",
    "sadtalker_aoc", "lp_d11", "lp_d18", "lp_d19", "lp_d20", "lp_s32", "carphone_pristine",
]
MULTI = {"hamilton_short": 2, "facenet_crowd_1080p": 4}  # minimum faces_max
NEGATIVE = ["neg_cat", "neg_paragliding"]


def survey(videos: Path, params: FacesParams) -> dict[str, dict]:
    names = SINGLE + list(MULTI) + NEGATIVE
    return {n: detect_clip(str(videos / f"{n}.mp4"), 0.0, None, params) for n in names}


@pytest.fixture(scope="module")
def mtcnn_rows(shared_videos: Path) -> dict[str, dict]:
    return survey(shared_videos, FacesParams())


@pytest.fixture(scope="module")
def yunet(shared_videos: Path) -> Path:
    """The YuNet weights in ../shared/models (skip when absent)."""
    path = shared_videos.parents[1] / "models" / "yunet" / "yunet_n_640_640.onnx"
    if not path.is_file():
        pytest.skip(f"YuNet weights not found at {path}")
    return path


@pytest.fixture(scope="module")
def yunet_rows(shared_videos: Path, yunet: Path) -> dict[str, dict]:
    # YuNet's scores run lower than MTCNN's: 0.6 is its usual operating point
    return survey(shared_videos, FacesParams(detector="yunet", model_path=str(yunet), min_score=0.6))


def check_facts(rows: dict[str, dict]) -> None:
    for name in SINGLE:
        row = rows[name]
        assert (row["n_tracks"], row["face_frac"] >= 0.9) == (1, True), (name, row["n_tracks"], row["face_frac"])
        assert len(row["track_boxes"]) == len(row["track_t"]) == row["n_samples"]
        assert row["face_px"] > 40
    for name, least in MULTI.items():
        assert rows[name]["faces_max"] >= least, (name, rows[name]["faces_max"])
    for name in NEGATIVE:
        row = rows[name]
        assert (row["faces_max"], row["n_tracks"], row["face_px"], row["track_boxes"]) == (0, 0, None, []), name


def test_mtcnn_facts(mtcnn_rows: dict[str, dict]) -> None:
    check_facts(mtcnn_rows)


def test_yunet_facts(yunet_rows: dict[str, dict]) -> None:
    check_facts(yunet_rows)


def test_row_shape_and_original_pixel_coordinates(mtcnn_rows: dict[str, dict]) -> None:
    row = mtcnn_rows["lp_s32"]  # 1280x720, detected at 640x360
    assert set(row) == set(FACES_COLUMNS)
    assert (row["frame_width"], row["frame_height"], row["detector"]) == (1280, 720, "mtcnn")
    boxes = np.array(row["track_boxes"])
    assert boxes.shape == (row["n_samples"], 4)
    assert np.all(boxes[:, 0] + boxes[:, 2] <= 1280 + 2) and np.all(boxes[:, 1] + boxes[:, 3] <= 720 + 2)
    assert all(len(lm) == 10 for lm in row["track_landmarks"])
    lm = np.array(row["track_landmarks"][0]).reshape(5, 2)
    x, y, w, h = row["track_boxes"][0]
    assert np.all((lm[:, 0] > x) & (lm[:, 0] < x + w) & (lm[:, 1] > y) & (lm[:, 1] < y + h))
    assert 0 < row["face_area_frac"] < 1 and row["detect_ms"] > 0


def test_face_size_does_not_depend_on_detection_resolution(shared_videos: Path, mtcnn_rows: dict) -> None:
    small = detect_clip(str(shared_videos / "lp_s32.mp4"), 0.0, 2.0, FacesParams(max_side=320))
    assert small["face_px"] == pytest.approx(mtcnn_rows["lp_s32"]["face_px"], rel=0.15)


def test_faces_row_window_and_pandas_null(shared_videos: Path) -> None:
    uri = str(shared_videos / "carphone_pristine.mp4")
    row = faces_row({"uri": uri, "start_s": 1.0, "end_s": 2.0}, FacesParams())
    assert row["n_samples"] == 2 and row["track_t"][0] == pytest.approx(1.0, abs=0.04)
    assert faces_row({"uri": uri, "start_s": 3.0, "end_s": float("nan")}, FacesParams())["n_samples"] == 2
    with pytest.raises(StageError, match="decode"):
        detect_clip(uri, 50.0, 60.0, FacesParams())


def test_haar_backend_has_no_landmarks(shared_videos: Path) -> None:
    row = detect_clip(str(shared_videos / "lp_d18.mp4"), 0.0, 2.0, FacesParams(detector="haar"))
    assert row["faces_max"] >= 1 and row["detector"] == "haar"
    assert all(lm == [] for lm in row["track_landmarks"])


def test_detector_registry_and_per_thread_cache() -> None:
    assert set(DETECTORS) == {"mtcnn", "yunet", "haar"}
    with pytest.raises(ValueError, match="mtcnn, yunet, haar"):
        get_detector("retinaface")
    with pytest.raises(FileNotFoundError, match="model_path"):
        get_detector("yunet", model_path=None)
    first = get_detector("haar")
    assert get_detector("haar") is first
    other: list = []
    thread = threading.Thread(target=lambda: other.append(get_detector("haar")))
    thread.start()
    thread.join()
    assert other[0] is not first


@pytest.mark.parametrize("name", ["mtcnn", "haar", "yunet"])
def test_detector_output_contract(shared_videos: Path, name: str, request: pytest.FixtureRequest) -> None:
    model = str(request.getfixturevalue("yunet")) if name == "yunet" else None
    _, frame = next(iter_frames(str(shared_videos / "lp_d18.mp4"), max_side=320))
    boxes, scores, lms = get_detector(name, model, 0.6).detect(frame)
    assert boxes.shape == (1, 4) and boxes.dtype == np.float32 and scores.shape == (1,)
    assert lms is None if name == "haar" else lms.shape == (1, 10)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"sample_fps": 0}, "sample_fps"),
        ({"detector": "dlib"}, "detector"),
        ({"min_score": 1.5}, "min_score"),
        ({"smooth_window": 4}, "smooth_window"),
        ({"max_gap": -1}, "max_gap"),
    ],
)
def test_params_validation(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        FacesParams(**kwargs)
