"""quality.score: pure measures, synthetic videos with a known truth, the real clips, learned-score
wiring with tiny random ONNX models, config errors and one run through the engine."""

from __future__ import annotations

import logging
import math
import shutil
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
import yaml
from conftest import make_context, rows, write_config

import facevid.udfs.models.scorers as scorers
from facevid.udfs.base import StageError
from facevid.udfs.curation import quality_measures as qm
from facevid.udfs.curation.quality import QualityParams, expected_samples, ocr_picks, score_clip
from facevid.udfs.curation.quality_pose import FACE_5, head_pose, pose_summary
from facevid.udfs.face.faces import FacesParams, faces_row
from facevid.udfs.models.scorers import SCORES

# ---- helpers ------------------------------------------------------------------------------------


def write_frames(path: Path, frames: list[np.ndarray], fps: int = 10, rotation: int = 0) -> Path:
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=fps)
        stream.height, stream.width = frames[0].shape[:2]
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": "12", "preset": "veryfast"}
        if rotation:
            stream.set_display_rotation(rotation)
        for f in frames:
            out.mux(stream.encode(av.VideoFrame.from_ndarray(f, format="bgr24")))
        out.mux(stream.encode())
    return path


def texture(seed: int, w: int = 320, h: int = 240) -> np.ndarray:
    """A smooth random texture (DIS-trackable), wider than ``w`` so it can pan."""
    rng = np.random.default_rng(seed)
    small = rng.integers(40, 220, (h // 8, w // 8, 3), dtype=np.uint8)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)


def clip(path: Path, seconds: float, **faces) -> dict:
    return {"clip_id": path.name, "start_s": 0.0, "end_s": seconds, **faces}


NO_OCR = QualityParams(ocr=False)

# ---- head pose ----------------------------------------------------------------------------------


def project(yaw: float, pitch: float, roll: float, centre=(900.0, 300.0), width: int = 1280) -> np.ndarray:
    """The model face at a known pose 60 cm from a pinhole camera (focal = width), off-centre but
    turned to face the lens at (0, 0, 0), so its angles relative to the line of sight are exact."""
    y, p, r = (math.radians(a) for a in (yaw, pitch, roll))
    rz = np.array([[math.cos(r), -math.sin(r), 0], [math.sin(r), math.cos(r), 0], [0, 0, 1]])
    ry = np.array([[math.cos(y), 0, -math.sin(y)], [0, 1, 0], [math.sin(y), 0, math.cos(y)]])
    rx = np.array([[1, 0, 0], [0, math.cos(p), -math.sin(p)], [0, math.sin(p), math.cos(p)]])
    ray = np.array([centre[0] - width / 2, centre[1] - 360, width], float)
    ray /= np.linalg.norm(ray)
    axis = np.cross([0, 0, 1.0], ray)  # turn the posed face so that its "frontal" is the ray
    turn = cv2.Rodrigues(axis / max(np.linalg.norm(axis), 1e-12) * math.acos(ray[2]))[0]
    pts = (FACE_5 - FACE_5.mean(0)) @ (turn @ rz @ ry @ rx).T + ray * 600
    cam = np.array([[width, 0, width / 2], [0, width, 360], [0, 0, 1]], float)
    uv = (pts / pts[:, 2:]) @ cam.T
    return uv[:, :2]


@pytest.mark.parametrize("truth", [(0, 0, 0), (25, 0, 0), (-45, 10, 0), (0, 20, 0), (0, -15, 8), (30, 15, -20)])
def test_head_pose_recovers_known_rotations(truth: tuple[float, float, float]) -> None:
    uv = project(*truth)
    est = head_pose(uv.ravel(), 1280)
    assert est is not None and np.allclose(est, truth, atol=2.0), (truth, est)


def test_head_pose_signs_and_mirror() -> None:
    uv = project(20, 0, 0)
    nose_right = uv[2, 0] - (uv[0, 0] + uv[1, 0]) / 2
    assert nose_right > 0 and head_pose(uv.ravel(), 1280)[0] > 15  # yaw > 0: nose towards the image's right
    down = project(0, 20, 0)
    frontal = project(0, 0, 0)
    assert down[2, 1] - down[0, 1] > frontal[2, 1] - frontal[0, 1] and head_pose(down.ravel(), 1280)[1] > 15
    uv = project(25, 10, 12)
    mirrored = np.column_stack([1280 - uv[:, 0], uv[:, 1]])[[1, 0, 2, 4, 3]]  # image-left points first again
    yaw, pitch, roll = head_pose(uv.ravel(), 1280)
    m_yaw, m_pitch, m_roll = head_pose(mirrored.ravel(), 1280)
    assert (m_yaw, m_pitch, m_roll) == pytest.approx((-yaw, pitch, -roll), abs=0.5)
    assert head_pose(np.zeros(10), 1280) is None and head_pose(np.full(10, np.nan), 1280) is None


def test_pose_summary() -> None:
    s = pose_summary([(5, 2, 1), (-40, 0, 0), (10, -30, 3), (0, 0, -2)], frontal_yaw=30, frontal_pitch=25)
    assert s == {"yaw_deg": 7.5, "pitch_deg": 1.0, "roll_deg": 1.5, "yaw_max_deg": 40.0, "frontal_frac": 0.5}
    assert pose_summary([], 30, 25)["frontal_frac"] is None


# ---- per-frame measures -------------------------------------------------------------------------


def test_frame_measures() -> None:
    gray = np.full((100, 200), 100, np.uint8)
    gray[:10], gray[-5:] = 0, 255
    mean, dark, bright = qm.exposure(gray)
    assert mean == pytest.approx(gray.mean()) and dark == pytest.approx(0.10) and bright == pytest.approx(0.05)
    rng = np.random.default_rng(3)
    sharp = cv2.resize(rng.integers(0, 255, (32, 32), dtype=np.uint8), (256, 256), interpolation=cv2.INTER_CUBIC)
    ref = qm.face_sharpness(sharp, 128)
    assert qm.face_sharpness(cv2.GaussianBlur(sharp, (0, 0), 3.0), 128) < 0.5 * ref
    # the same face at another resolution reads about the same; enlarged from a few pixels it reads
    # low (bicubic), not as the blocky edges of a nearest-neighbour (INTER_AREA) enlargement
    for side in (180, 400):
        other = cv2.resize(sharp, (side, side), interpolation=cv2.INTER_AREA if side < 256 else cv2.INTER_CUBIC)
        assert qm.face_sharpness(other, 128) == pytest.approx(ref, rel=0.15)
    tiny = cv2.resize(sharp, (24, 24), interpolation=cv2.INTER_AREA)
    assert qm.face_sharpness(tiny, 128) < 0.2 * ref
    assert qm.face_sharpness(np.zeros((60, 30), np.uint8), 128) == 0.0
    assert qm.edge_runs(np.array([1, 1, 0, 1, 0, 1, 1, 1], bool)) == (2, 3)
    assert qm.edge_runs(np.ones(4, bool)) == (4, 4)
    assert qm.box_roi(np.array([-10, 5, 50, 40]), 0.5, (100, 100)) == (0, 2, 20, 22)
    assert qm.box_roi(None, 1.0, (10, 10)) is None and qm.box_roi(np.array([0, 0, 4, 4]), 0.5, (9, 9)) is None


def test_seeded_ocr_frames_and_sample_counts() -> None:
    assert expected_samples(0.0, 4.0, 2.0) == 8 and expected_samples(1.0, 2.2, 2.0) == 3
    a = ocr_picks("v_0001", 20, 5, seed=7)
    assert a == ocr_picks("v_0001", 20, 5, seed=7) and len(a) == 5 and a <= set(range(20))
    assert a != ocr_picks("v_0002", 20, 5, seed=7) or a != ocr_picks("v_0001", 20, 5, seed=8)
    assert ocr_picks("x", 3, 5, 7) == {0, 1, 2} and ocr_picks("x", 3, 0, 7) == set()


@pytest.mark.parametrize("bad, message", [
    ({"sample_fps": 0}, "sample_fps must be > 0"), ({"motion_fps": -1}, "motion_fps must be > 0"),
    ({"face_side": 4}, "face_side"), ({"ocr_min_score": 2}, "ocr_min_score"),
    ({"frontal_yaw_deg": 0}, "frontal_yaw_deg"), ({"scorer_std": [1, 0, 1]}, "scorer_std"),
    ({"fiqa_path": "/nowhere/fiqa.onnx"}, "fiqa_path /nowhere/fiqa.onnx does not exist"),
])
def test_params_are_validated(bad: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        QualityParams(**bad)


# ---- synthetic videos with a known truth --------------------------------------------------------


def test_letterbox_and_pillarbox_in_source_pixels(tmp_path: Path) -> None:
    frames = []
    for i in range(20):
        f = np.roll(texture(1), i * 3, axis=1)
        f[:36], f[-30:] = 0, 0  # letterbox
        cv2.putText(f, "logo", (10, 225), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (200, 200, 200), 1)  # in the bar
        frames.append(f)
    q = score_clip(str(write_frames(tmp_path / "lb.mp4", frames)), clip(tmp_path / "lb.mp4", 2.0), NO_OCR)
    assert abs(q["border_top"] - 36) <= 2 and q["border_left"] == 0 and q["border_right"] == 0
    assert q["border_bottom"] < 30 and q["border_px"] == q["border_top"]  # the logo is not black
    rotated = write_frames(tmp_path / "rot.mp4", [np.ascontiguousarray(f[36:-30]) for f in frames[:10]], rotation=90)
    q = score_clip(str(rotated), clip(rotated, 1.0), NO_OCR)  # upright: the picture is 174x320, no bars
    assert q["border_px"] == 0
    pillar = [np.pad(np.roll(texture(2, 240, 240), i, axis=0), ((0, 0), (40, 40), (0, 0))) for i in range(10)]
    q = score_clip(str(write_frames(tmp_path / "pb.mp4", pillar)), clip(tmp_path / "pb.mp4", 1.0), NO_OCR)
    assert abs(q["border_left"] - 40) <= 2 and abs(q["border_right"] - 40) <= 2 and q["border_top"] == 0
    plain = write_frames(tmp_path / "plain.mp4", [np.roll(texture(1), i * 3, axis=1) for i in range(20)])
    assert score_clip(str(plain), clip(plain, 2.0), NO_OCR)["border_px"] == 0


def test_static_slow_and_fast_pans(tmp_path: Path) -> None:
    still = write_frames(tmp_path / "still.mp4", [texture(2)] * 30)
    q = score_clip(str(still), clip(still, 3.0), NO_OCR)
    assert q["static_frac"] == 1.0 and q["motion_mean"] < 0.2 and q["motion_global"] < 0.2
    wide = texture(2, 1600, 240)
    slow = write_frames(tmp_path / "slow.mp4", [np.ascontiguousarray(wide[:, 2 * i:2 * i + 320]) for i in range(30)])
    q = score_clip(str(slow), clip(slow, 3.0), NO_OCR)  # 20 px/s at 320 px = 16 px/s at 256
    assert q["static_frac"] == 0.0 and q["motion_global"] == pytest.approx(16, rel=0.15)
    fast = write_frames(tmp_path / "fast.mp4", [np.ascontiguousarray(wide[:, 12 * i:12 * i + 320]) for i in range(30)])
    q = score_clip(str(fast), clip(fast, 3.0), NO_OCR)  # 120 px/s at 320 = 96 px/s at 256: a fast pan
    assert q["motion_global"] == pytest.approx(96, rel=0.15) and q["motion_mean"] > 20


def test_burned_in_text_and_seeded_frames(tmp_path: Path) -> None:
    frames = []
    for i in range(30):
        f = np.full((240, 320, 3), 70, np.uint8)
        cv2.putText(f, "BREAKING NEWS", (10, 200), cv2.FONT_HERSHEY_SIMPLEX, 1.0, (255, 255, 255), 2)
        cv2.circle(f, (160 + i, 90), 30, (200, 180, 160), -1)
        frames.append(f)
    path = write_frames(tmp_path / "text.mp4", frames)
    params = QualityParams(ocr_frames=2)
    a, b = score_clip(str(path), clip(path, 3.0), params), score_clip(str(path), clip(path, 3.0), params)
    assert a["ocr_chars"] > 10 and "BREAKING" in a["ocr_text"]
    assert (a["ocr_chars"], a["ocr_text"]) == (b["ocr_chars"], b["ocr_text"])
    off = score_clip(str(path), clip(path, 3.0), NO_OCR)
    assert off["ocr_chars"] is None and off["ocr_text"] is None
    # the clip is shorter than its declared end: the OCR frames still run on a real frame
    late = score_clip(str(path), {**clip(path, 3.0), "end_s": 60.0, "clip_id": "late"}, QualityParams(ocr_frames=1))
    assert late["ocr_chars"] > 10


def test_hostile_clips(tmp_path: Path) -> None:
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video")
    with pytest.raises(StageError, match="decode"):
        score_clip(str(bad), clip(bad, 1.0), NO_OCR)
    short = write_frames(tmp_path / "short.mp4", [texture(4)] * 5)
    with pytest.raises(StageError, match="no frames"):
        score_clip(str(short), {**clip(short, 1.0), "start_s": 5.0, "end_s": 6.0}, NO_OCR)
    # no face: a valid row, face columns null; a box outside the frame counts as no face
    q = score_clip(str(short), clip(short, 0.5, track_t=[0.0], track_boxes=[[900, 900, 50, 50]],
                                         track_landmarks=[[]]), NO_OCR)
    assert q["n_samples"] == 1 and q["sharpness_face"] is None and q["yaw_deg"] is None
    assert q["motion_face"] is None and q["brightness_mean"] > 0 and q["face_px"] is None


# ---- the real clips -----------------------------------------------------------------------------

REAL = ("lp_d18.mp4", "retalking_face1.mp4", "retalking_face2.mp4", "lp_d11.mp4", "lp_d20.mp4",
        "lp_s32.mp4", "hamilton_short.mp4", "neg_cat.mp4")


@pytest.fixture(scope="module")
def real(shared_videos: Path) -> dict[str, dict]:
    out = {}
    for name in REAL:
        path = str(shared_videos / name)
        row = {"clip_id": name, "uri": path, "start_s": 0.0, "end_s": 4.0}
        out[name] = score_clip(path, {**row, **faces_row(row, FacesParams())}, QualityParams(ocr_frames=1))
    return out


def test_real_clips_rank_as_the_eye_sees_them(real: dict[str, dict]) -> None:
    sharp = min(real[n]["sharpness_face"] for n in ("lp_d18.mp4", "retalking_face1.mp4"))
    for blurry in ("retalking_face2.mp4", "lp_d11.mp4"):
        assert real[blurry]["sharpness_face"] < 0.7 * sharp, blurry
    bright = real["lp_d18.mp4"]["brightness_mean"]
    assert all(real[n]["brightness_mean"] < 0.6 * bright for n in ("lp_d20.mp4", "lp_s32.mp4"))
    assert real["hamilton_short.mp4"]["brightness_mean"] < 40 and real["hamilton_short.mp4"]["dark_frac"] > 0.3
    for name in ("lp_d18.mp4", "retalking_face1.mp4"):  # frontal talking heads, no captions, no bars
        r = real[name]
        assert r["yaw_deg"] < 20 and r["frontal_frac"] >= 0.9 and r["ocr_chars"] <= 10 and r["border_px"] == 0
        assert r["motion_global"] < 5 and r["static_frac"] < 0.5 and r["face_px"] > 150
    cat = real["neg_cat.mp4"]
    assert cat["sharpness_face"] is None and cat["yaw_deg"] is None and cat["motion_face"] is None
    assert cat["brightness_mean"] > 0 and cat["motion_mean"] > 0
    assert all(r["quality_ms"] > 0 and r["n_samples"] == 8 for r in real.values())


# ---- learned scores -----------------------------------------------------------------------------


def tiny_onnx(path: Path, side: int | str, weight: float) -> str:
    """A random-weight scorer: GlobalAveragePool -> Flatten -> Gemm -> [N, 1]."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    init = [numpy_helper.from_array(np.full((3, 1), weight, np.float32), "w"),
            numpy_helper.from_array(np.array([0.1], np.float32), "b")]
    batch = 1 if isinstance(side, int) else "N"
    graph = helper.make_graph(
        [helper.make_node("GlobalAveragePool", ["x"], ["p"]), helper.make_node("Flatten", ["p"], ["f"]),
         helper.make_node("Gemm", ["f", "w", "b"], ["y"])], "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, 3, side, side])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch, 1])], init)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8), str(path))
    return str(path)


def test_learned_scores_run_when_configured_and_are_null_and_logged_once_otherwise(
        shared_videos: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch) -> None:
    dynamic = tiny_onnx(tmp_path / "dyn.onnx", "S", 0.5)  # any batch, any size: one batch per clip
    fixed = tiny_onnx(tmp_path / "fixed.onnx", 32, -0.3)  # 1x3x32x32: one frame at a time, resized to 32
    path = str(shared_videos / "lp_d18.mp4")
    row = {"clip_id": "x", "uri": path, "start_s": 0.0, "end_s": 2.0}
    row = {**row, **faces_row(row, FacesParams(max_side=320))}
    on = score_clip(path, row, QualityParams(ocr=False, aesthetic_path=dynamic, fiqa_path=fixed, scorer_size=48))
    assert math.isfinite(on["aesthetic"]) and math.isfinite(on["fiqa"]) and on["aesthetic"] != on["fiqa"]
    assert on["iqa"] is None and on["age"] is None
    monkeypatch.setattr(scorers, "_warned", set())
    caplog.clear()  # the configured run above logged its own two disabled scores
    with caplog.at_level(logging.WARNING, logger="facevid.quality"):
        for _ in range(2):
            off = score_clip(path, row, NO_OCR)
    assert all(off[name] is None for name in SCORES)
    lines = [r.getMessage() for r in caplog.records if "learned scores" in r.getMessage()]
    assert len(lines) == 1 and "aesthetic_path" in lines[0] and "age_path" in lines[0]


# ---- config and the engine ----------------------------------------------------------------------

STAGES = ["ingest", "probe", "split", "faces", "quality"]


def quality_config(tmp: Path, lake: Path, params: dict | None = None) -> Path:
    path = write_config(tmp, lake)
    doc = yaml.safe_load(path.read_text())
    doc["stages"] = {k: v for k, v in doc["stages"].items() if k in STAGES}
    doc["stages"]["quality"] = {"udf": "quality.score", "input": ["silver.faces", "silver.clips"],
                                "output": "silver.quality", "version": 1, "resources": {"batch": 4},
                                "params": params if params is not None else {"ocr_frames": 1}}
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def test_config_errors(tmp_path: Path) -> None:
    import facevid.jobs.stages.silver.quality  # noqa: F401  (registration)
    from facevid.jobs.config import ConfigError, load_config

    with pytest.raises(ConfigError, match="unknown parameter.*colour_path"):
        load_config(quality_config(tmp_path, tmp_path / "lake", {"colour_path": "x.onnx"}))
    with pytest.raises(ConfigError, match="aesthetic_path .*models/aesthetic.onnx does not exist"):
        load_config(quality_config(tmp_path, tmp_path / "lake", {"aesthetic_path": "models/aesthetic.onnx"}))
    model = tiny_onnx(tmp_path / "a.onnx", "S", 1.0)
    cfg = load_config(quality_config(tmp_path, tmp_path / "lake", {"aesthetic_path": "a.onnx"}))  # config-relative
    assert cfg.stages["quality"].params.aesthetic_path == model


@pytest.mark.spark
def test_engine_run_writes_one_row_per_clip(engine, shared_videos: Path, tmp_path: Path) -> None:
    import facevid.jobs.stages.silver.quality  # noqa: F401  (registration)
    from facevid.jobs.runner import run_pipeline

    src = tmp_path / "videos"
    src.mkdir()
    for name in ("lp_d18.mp4", "neg_cat.mp4"):
        shutil.copy(shared_videos / name, src / name)
    ctx = make_context(engine, quality_config(tmp_path, tmp_path / "lake"), [str(src)])
    reports = {r.stage: r for r in run_pipeline(ctx, STAGES, log=lambda m: None)}
    assert (reports["quality"].rows, reports["quality"].errors) == (reports["split"].rows, 0)
    got = {r["video_uri"].rsplit("/", 1)[1]: r for r in rows(
        ctx, "SELECT q.*, c.video_uri FROM silver_quality q JOIN silver_clips c ON c.clip_id = q.clip_id")}
    assert sorted(got) == ["lp_d18.mp4", "neg_cat.mp4"]
    face, cat = got["lp_d18.mp4"], got["neg_cat.mp4"]
    assert face["error"] is None and face["sharpness_face"] > 30 and face["frontal_frac"] >= 0.9
    assert face["border_px"] == 0 and 0 <= face["ocr_chars"] <= 10 and face["n_samples"] >= 10
    assert cat["error"] is None and cat["sharpness_face"] is None and cat["brightness_mean"] > 0
    assert [r.pending for r in run_pipeline(ctx, ["quality"], log=lambda m: None)] == [0]
