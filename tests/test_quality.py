"""Quality scores on real clips and on synthetic videos with a known truth."""

from __future__ import annotations

import logging
import math
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from udfs.base import StageError
from udfs.faces import FacesParams, faces_row
from udfs.quality import QualityParams, head_pose, score_clip
from udfs.scorers import SCORES


def write_frames(path: Path, frames: list[np.ndarray], fps: int = 10) -> Path:
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=fps)
        stream.height, stream.width = frames[0].shape[:2]
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": "12"}
        for f in frames:
            out.mux(stream.encode(av.VideoFrame.from_ndarray(f, format="bgr24")))
        out.mux(stream.encode())
    return path


def texture(seed: int, w: int = 320, h: int = 240) -> np.ndarray:
    rng = np.random.default_rng(seed)
    small = rng.integers(40, 220, (h // 8, w // 8, 3), dtype=np.uint8)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)


def clip(path: Path, seconds: float, **faces) -> dict:
    return {"clip_id": path.name, "start_s": 0.0, "end_s": seconds, **faces}


def test_head_pose_of_frontal_turned_and_tilted_landmarks() -> None:
    frontal = np.array([[40, 50], [80, 50], [60, 72], [45, 90], [75, 90]], float)
    yaw, pitch, roll = head_pose(frontal.ravel())
    assert abs(yaw) < 1 and abs(pitch) < 10 and abs(roll) < 1
    turned = frontal.copy()
    turned[2, 0] += 12  # nose towards the image's right
    assert head_pose(turned.ravel())[0] > 20
    assert head_pose((frontal * [1, 1] - [0, 0]).ravel())[0] == pytest.approx(yaw)
    a = math.radians(20)  # the whole face rotated by 20 degrees in the image plane
    rot = (frontal - 60) @ np.array([[math.cos(a), math.sin(a)], [-math.sin(a), math.cos(a)]]) + 60
    y2, p2, r2 = head_pose(rot.ravel())
    assert r2 == pytest.approx(20, abs=0.5) and y2 == pytest.approx(yaw, abs=0.5) and p2 == pytest.approx(pitch, abs=0.5)


def test_letterbox_borders_are_measured_in_source_pixels(tmp_path: Path) -> None:
    frames = []
    for i in range(20):
        f = np.roll(texture(1), i * 3, axis=1)
        f[:36], f[-36:] = 0, 0  # letterbox
        frames.append(f)
    q = score_clip(str(write_frames(tmp_path / "lb.mp4", frames)), clip(tmp_path / "lb.mp4", 2.0), QualityParams(ocr=False))
    assert abs(q["border_top"] - 36) <= 2 and abs(q["border_bottom"] - 36) <= 2
    assert q["border_left"] == 0 and q["border_right"] == 0 and abs(q["border_px"] - 36) <= 2
    plain = write_frames(tmp_path / "plain.mp4", [np.roll(texture(1), i * 3, axis=1) for i in range(20)])
    assert score_clip(str(plain), clip(plain, 2.0), QualityParams(ocr=False))["border_px"] == 0


def test_static_and_panning_video_motion(tmp_path: Path) -> None:
    still = write_frames(tmp_path / "still.mp4", [texture(2)] * 30)
    q = score_clip(str(still), clip(still, 3.0), QualityParams(ocr=False))
    assert q["static_frac"] == 1.0 and q["motion_mean"] < 0.5
    pan = write_frames(tmp_path / "pan.mp4", [np.roll(texture(2), 4 * i, axis=1) for i in range(30)])
    q = score_clip(str(pan), clip(pan, 3.0), QualityParams(ocr=False))
    assert q["static_frac"] == 0.0 and q["motion_global"] > 20  # ~40 px/s at 320 px -> ~32 px/s at 256


def test_burned_in_text_is_counted_and_sampling_is_seeded(tmp_path: Path) -> None:
    frames = []
    for i in range(30):
        f = np.full((240, 320, 3), 70, np.uint8)
        cv2.putText(f, "BREAKING NEWS", (10, 200), cv2.FONT_HERSHEY_SIMPLEX, 1.0, (255, 255, 255), 2)
        cv2.circle(f, (160 + i, 90), 30, (200, 180, 160), -1)
        frames.append(f)
    path = write_frames(tmp_path / "text.mp4", frames)
    params = QualityParams(ocr_frames=2)
    a, b = score_clip(str(path), clip(path, 3.0), params), score_clip(str(path), clip(path, 3.0), params)
    assert a["ocr_chars"] >= 10 and "BREAKING" in a["ocr_text"]
    assert (a["ocr_chars"], a["ocr_text"]) == (b["ocr_chars"], b["ocr_text"])


def test_undecodable_clip_is_a_stage_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video")
    with pytest.raises(StageError, match="decode"):
        score_clip(str(bad), clip(bad, 1.0), QualityParams(ocr=False))


@pytest.fixture(scope="module")
def real(shared_videos: Path) -> dict[str, dict]:
    out = {}
    for name in ("lp_d18.mp4", "retalking_face2.mp4", "lp_d19.mp4", "hamilton_short.mp4", "neg_cat.mp4"):
        path = str(shared_videos / name)
        row = {"clip_id": name, "uri": path, "start_s": 0.0, "end_s": 4.0}
        out[name] = score_clip(path, {**row, **faces_row(row, FacesParams())}, QualityParams(ocr_frames=1))
    return out


def test_real_clips_rank_as_the_eye_sees_them(real: dict[str, dict]) -> None:
    blurry, sharp = real["retalking_face2.mp4"], real["lp_d18.mp4"]
    assert blurry["sharpness_face"] < 0.5 * sharp["sharpness_face"]
    assert real["hamilton_short.mp4"]["brightness_mean"] < 50 < sharp["brightness_mean"]
    for name in ("lp_d18.mp4", "lp_d19.mp4"):  # frontal talking heads, no captions
        r = real[name]
        assert r["yaw_deg"] < 15 and r["frontal_frac"] == 1.0 and r["ocr_chars"] <= 10 and r["border_px"] == 0
    cat = real["neg_cat.mp4"]
    assert cat["sharpness_face"] is None and cat["yaw_deg"] is None and cat["brightness_mean"] > 0


def _tiny_onnx(path: Path) -> Path:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(np.full((3, 1), 0.5, np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("GlobalAveragePool", ["x"], ["p"]), helper.make_node("Flatten", ["p"], ["f"]),
         helper.make_node("MatMul", ["f", "w"], ["y"])], "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 32, 32])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1])], [w])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8), str(path))
    return path


def test_learned_scores_run_when_configured_and_are_null_otherwise(shared_videos: Path, tmp_path: Path,
                                                                   caplog) -> None:
    model = str(_tiny_onnx(tmp_path / "tiny.onnx"))
    path = str(shared_videos / "lp_d18.mp4")
    row = {"clip_id": "x", "uri": path, "start_s": 0.0, "end_s": 2.0}
    row = {**row, **faces_row(row, FacesParams())}
    on = score_clip(path, row, QualityParams(ocr=False, aesthetic_path=model, fiqa_path=model, scorer_size=32))
    assert math.isfinite(on["aesthetic"]) and math.isfinite(on["fiqa"]) and on["aesthetic"] != on["fiqa"]
    assert on["iqa"] is None and on["age"] is None
    with pytest.raises(ValueError, match="iqa_path .* does not exist"):
        QualityParams(iqa_path=str(tmp_path / "missing.onnx"))
    import udfs.scorers as scorers

    scorers._warned.clear()
    with caplog.at_level(logging.WARNING, logger="facevid.quality"):
        for _ in range(2):
            off = score_clip(path, row, QualityParams(ocr=False))
    assert all(off[name] is None for name in SCORES)
    assert len([r for r in caplog.records if "learned scores" in r.getMessage()]) == 1
