"""The ``signals`` captioner's decisions on measured rows, and the pluggable ONNX emotion classifier."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from facevid.udfs.annotate.signals import SignalThresholds, actions, lighting, signals_answer
from facevid.udfs.models.emotion import FER_PLUS_LABELS, EmotionClassifier, EmotionSettings

T = SignalThresholds()


def _row(**kw) -> dict:
    base = {"has_speech": False, "speech_frac": 0.0, "mouth_open_var": 0.0, "av_confidence": None,
            "smile_frac": 0.0, "ear_left": [0.3] * 50, "ear_right": [0.3] * 50, "landmarks_fps": 25.0,
            "wink_count": 0, "nod_count": 0, "shake_count": 0, "tilt_count": 0,
            "brightness_mean": 120.0, "face_brightness": 130.0, "bright_frac": 0.0}
    return {**base, **kw}


def test_talk_needs_speech_and_a_moving_mouth() -> None:
    talking = _row(has_speech=True, speech_frac=0.8, mouth_open_var=1e-3)
    assert "Talk" in actions(talking, T)[0]
    assert "Talk" not in actions({**talking, "has_speech": False, "speech_frac": 0.0}, T)[0]  # mute mouthing
    assert "Talk" not in actions({**talking, "mouth_open_var": 1e-6}, T)[0]  # a voice off screen
    voice_over = {**talking, "av_sync_reliable": True, "av_offset_ms": 550.0}
    assert "Talk" not in actions(voice_over, T)[0]  # significantly not this mouth's voice
    assert "Talk" in actions({**voice_over, "av_sync_reliable": False}, T)[0]  # an offset we cannot trust
    assert "Talk" in actions({**voice_over, "av_offset_ms": 120.0}, T)[0]
    strict = SignalThresholds(talk_min_confidence=2.0)
    assert "Talk" not in actions({**talking, "av_confidence": 0.5}, strict)[0]
    assert "Talk" in actions({**talking, "av_confidence": 3.0}, strict)[0]


def test_eyes_closed_longer_than_a_blink_and_head_movements() -> None:
    ear = [0.3] * 20 + [0.1] * 5 + [0.3] * 25  # 0.2 s closed: a blink, not Close Eyes
    assert "Close Eyes" not in actions(_row(ear_left=ear, ear_right=ear), T)[0]
    ear = [0.3] * 10 + [0.1] * 20 + [0.3] * 20  # 0.8 s
    assert "Close Eyes" in actions(_row(ear_left=ear, ear_right=ear), T)[0]
    one_eye = [0.3] * 10 + [0.1] * 20 + [0.3] * 20
    assert "Close Eyes" not in actions(_row(ear_left=one_eye), T)[0]
    acts, evidence = actions(_row(nod_count=2, shake_count=2, tilt_count=1, wink_count=1, smile_frac=0.5), T)
    assert acts == ["Smile", "Wink", "Nod", "Shake Head", "Tilt", "Wag Head"]
    assert evidence["nod"] == 2 and evidence["smile_frac"] == 0.5


@pytest.mark.parametrize("face, frame, bright, bucket", [
    (30.0, 40.0, 0.0, "Dark"), (70.0, 60.0, 0.0, "Dim"), (130.0, 120.0, 0.0, "Normal"),
    (200.0, 180.0, 0.0, "Bright"), (130.0, 120.0, 0.2, "Bright"), (None, 75.0, 0.0, "Dim")])
def test_lighting_is_one_exposure_bucket(face, frame, bright, bucket) -> None:
    assert lighting(_row(face_brightness=face, brightness_mean=frame, bright_frac=bright), T) == [bucket]


def test_the_answer_never_guesses_ethnicity_or_appearance_and_records_its_evidence() -> None:
    values, raw = signals_answer(_row(has_speech=True, speech_frac=0.9, mouth_open_var=1e-3), T)
    assert values == {"ethnicity": None, "appearance": [], "lighting": ["Normal"], "action": ["Talk"], "emotion": None}
    doc = json.loads(raw)
    assert doc["evidence"]["speech_frac"] == 0.9 and doc["thresholds"]["talk_speech_frac"] == T.talk_speech_frac


def test_bad_thresholds_are_rejected() -> None:
    with pytest.raises(ValueError, match="dark_luma"):
        SignalThresholds(dark_luma=100, dim_luma=90)


def emotion_onnx(path: Path, side: int = 64) -> str:
    """A FER+-shaped model (1x1xSxS gray -> 8 scores) whose logit k is (mean pixel / 255) * w_k: a
    bright face scores Happy (w=4), a dark one Neutral (w=0 with bias 1)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w = np.zeros((1, 8), np.float32)
    w[0, FER_PLUS_LABELS.index("Happy")] = 4.0 / 255
    b = np.zeros(8, np.float32)
    b[FER_PLUS_LABELS.index("Neutral")] = 1.0
    graph = helper.make_graph(
        [helper.make_node("GlobalAveragePool", ["x"], ["p"]), helper.make_node("Flatten", ["p"], ["f"]),
         helper.make_node("Gemm", ["f", "w", "b"], ["y"])], "emotion",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, side, side])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8])],
        [numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b")])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8), str(path))
    return str(path)


def test_emotion_classifier_reads_the_face_box_of_crop_frames(tmp_path: Path) -> None:
    clf = EmotionClassifier(EmotionSettings(emotion_onnx(tmp_path / "e.onnx")))
    bright_face = np.zeros((128, 128, 3), np.uint8)
    bright_face[20:80, 32:96] = 255  # inside the default face box only
    label, scores = clf.classify([bright_face, bright_face])
    assert label == "Happy" and scores["Happy"] > scores["Neutral"] and abs(sum(scores.values()) - 1) < 1e-3
    assert clf.classify([np.zeros((128, 128, 3), np.uint8)])[0] == "Neutral"
    assert clf.classify([]) == (None, {})
    with pytest.raises(ValueError, match="8 outputs but 3 labels"):
        EmotionClassifier(EmotionSettings(str(tmp_path / "e.onnx"), labels=("a", "b", "c")))


def test_missing_model_files_are_one_clear_config_error_before_the_run(tmp_path: Path, capsys) -> None:
    from conftest import write_config

    from facevid.jobs.cli import main

    (tmp_path / "empty_model").mkdir()
    for params, message in [({"backend": "vlm", "model_path": str(tmp_path / "nowhere")}, "does not exist"),
                            ({"backend": "vlm", "model_path": str(tmp_path / "empty_model")}, "has no config.json"),
                            ({"emotion_model_path": str(tmp_path / "e.onnx")}, "emotion_model_path")]:
        cfg = write_config(tmp_path, tmp_path / "lake", {"caption": {"params": params}})
        assert main(["run", "--config", str(cfg), "--stages", "caption"]) == 2
        err = capsys.readouterr().err
        assert err.startswith("facevid: error: stage caption:") and message in err and len(err.splitlines()) == 1
