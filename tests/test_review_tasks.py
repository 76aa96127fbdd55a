"""Review tasks, the occlusion signal and verdicts applied to gold (pure parts; the stage runs in
tests/test_review_loop.py)."""

from __future__ import annotations

import json
from pathlib import Path

import av
import cv2
import numpy as np
import pandas as pd
import pytest

from facevid.udfs.curation.occlusion import OcclusionParams, occlusion_signal
from facevid.udfs.curation.review_schema import TASK_COLUMNS, age_group
from facevid.udfs.curation.review_tasks import ReviewParams, build_tasks, dynamic_frames
from facevid.udfs.curation.verdicts import RestorationPolicy, apply_restoration, apply_verdicts, latest


def _covered(src: str, out: Path, boxes: np.ndarray, times: np.ndarray, t0: float, t1: float) -> None:
    """``src``'s first 6 s with the lower face (mouth, nose) painted over between ``t0`` and ``t1``."""
    from facevid.udfs.media.video import iter_frames

    with av.open(str(out), "w") as c:
        stream = None
        for t, frame in iter_frames(src, 0.0, 6.0):
            if stream is None:
                stream = c.add_stream("libx264", rate=25)
                stream.width, stream.height, stream.pix_fmt = frame.shape[1], frame.shape[0], "yuv420p"
            if t0 <= t < t1:
                x, y, w, h = boxes[int(np.argmin(abs(times - t)))]
                cv2.rectangle(frame, (int(x - 0.1 * w), int(y + 0.35 * h)), (int(x + 1.1 * w), int(y + 1.2 * h)),
                              (180, 150, 120), -1)
            for pkt in stream.encode(av.VideoFrame.from_ndarray(frame, format="bgr24")):
                c.mux(pkt)
        for pkt in stream.encode():
            c.mux(pkt)


def test_occlusion_signal_flags_a_covered_face_on_a_real_clip(shared_videos, tmp_path):
    """A real talking head: its own track scores under the level; the same footage with the mouth
    and nose covered for 2.5 s (the detector misses samples) scores above it."""
    from facevid.udfs.face.faces import FacesParams, detect_clip

    src, params = str(shared_videos / "retalking_face1.mp4"), OcclusionParams()
    clean = detect_clip(src, 0.0, 6.0, FacesParams())
    before = occlusion_signal(clean["track_scores"], clean["track_boxes"], clean["track_landmarks"], None, params)
    _covered(src, tmp_path / "covered.mp4", np.asarray(clean["track_boxes"]), np.asarray(clean["track_t"]), 2.0, 4.5)
    cov = detect_clip(str(tmp_path / "covered.mp4"), 0.0, 6.0, FacesParams())
    after = occlusion_signal(cov["track_scores"], cov["track_boxes"], cov["track_landmarks"], None, params)
    assert before["occlusion"] < params.level and not before["occluded"]
    assert after["occlusion"] >= params.level and after["occluded"], after
    assert after["occlusion_missed_frac"] > 0  # the detector lost the covered face
    # the av stage's share counts too; no track = no signal
    assert occlusion_signal(clean["track_scores"], clean["track_boxes"], clean["track_landmarks"], 0.5,
                            params)["occlusion"] == 0.5
    assert occlusion_signal([], [], [], None, params)["occlusion"] is None


def test_dynamic_frames_are_seeded_non_consecutive_and_in_range():
    for n in (7, 8, 50, 375):
        for clip in ("a", "b", "c"):
            f = dynamic_frames(n, 3, 7, clip)
            assert f == dynamic_frames(n, 3, 7, clip) and len(f) == 3
            assert all(2 <= i < n for i in f) and all(b - a >= 2 for a, b in zip(f, f[1:], strict=False))
    assert dynamic_frames(375, 3, 7, "a") != dynamic_frames(375, 3, 8, "a")
    assert len(dynamic_frames(5, 3, 7, "a")) == 2 and dynamic_frames(2, 3, 7, "a") == [0]  # short clips: fewer


def _gold(n: int = 3) -> pd.DataFrame:
    return pd.DataFrame({
        "clip_id": [f"c{i}" for i in range(n)], "video_id": "v", "identity_id": [f"p{i}" for i in range(n)],
        "source": "s", "crop_uri": [f"/crops/c{i}.mp4" for i in range(n)],
        "unrestored_uri": [f"/crops/c{i}.mp4" for i in range(n)],
        "restored_uri": ["/restored/c0.mp4"] + [None] * (n - 1), "eye_flagged": [True] + [False] * (n - 1),
        "fps": 25.0, "n_frames": 100, "published_at": pd.Timestamp("2026-12-03", tz="UTC"),
        "age": [16.0, 29.5, None][:n] + [40.0] * max(0, n - 3), "model_annotations": None,
        "ethnicity": "Asian", "appearance": [["Short hair", "Eyeglasses"]] * n, "lighting": [["Normal"]] * n,
        "action": [["Talk"]] * n, "emotion": "Neutral",
    })


def test_build_tasks_kinds_flags_sampling_and_stable_creation_time():
    gold, now = _gold(), pd.Timestamp("2026-12-03 12:00", tz="UTC")
    signals = pd.DataFrame({"clip_id": ["c2"], "occluded": [True]})
    tasks = build_tasks(gold, signals, ReviewParams(), None, now)
    assert list(tasks.columns) == list(TASK_COLUMNS)
    assert sorted(tasks["kind"].value_counts().items()) == [("dynamic", 3), ("restoration", 1), ("static", 3)]
    t = tasks.set_index("task_id")
    assert t.loc["restoration:c0", "flags"] == ["eye_artifact"] and t.loc["restoration:c0", "before_uri"] == \
        "/crops/c0.mp4" and t.loc["restoration:c0", "media_uri"] == "/restored/c0.mp4"
    assert json.loads(t.loc["restoration:c0", "model_values"]) == {"restoration": "reject"}
    assert t.loc["static:c0", "flags"] == ["minor_age"]           # 16 years
    assert t.loc["static:c1", "flags"] == ["age_boundary"]        # 29.5: next to the 30 bound
    assert t.loc["static:c2", "flags"] == ["occluded"] and t.loc["dynamic:c2", "flags"] == ["occluded"]
    assert json.loads(t.loc["static:c1", "model_values"]) == {
        "age": "18-29", "appearance": ["Short hair", "Eyeglasses"], "ethnicity": "Asian", "lighting": ["Normal"]}
    assert t.loc["static:c0", "frame_index"] == [0] and len(t.loc["dynamic:c0", "frame_index"]) == 3
    assert t.loc["static:c0", "batch_id"] == "static-2026-12-03" and t.loc["static:c0", "lot_size"] == 3
    assert t["in_sample"].all()  # lots of 3 are inspected in full (ISO 2859-1: n >= N)
    assert t.loc["restoration:c0", "priority"] > t.loc["static:c2", "priority"] > t.loc["static:c1", "priority"] > 0
    later = build_tasks(gold, signals, ReviewParams(), tasks, now + pd.Timedelta(hours=1))
    assert (later["created_at"] == tasks["created_at"]).all()


def test_model_values_keep_the_models_value_after_a_correction():
    gold = _gold(1)
    gold["ethnicity"], gold["model_annotations"] = "Korean", json.dumps({"ethnicity": "Asian"})
    t = build_tasks(gold, None, ReviewParams(kinds=["static"]), None, pd.Timestamp.now(tz="UTC"))
    assert json.loads(t.loc[0, "model_values"])["ethnicity"] == "Asian"


def _verdict(clip: str, field: str, verdict: str, value, model, at: str, vid: str) -> dict:
    return {"verdict_id": vid, "clip_id": clip, "field": field, "verdict": verdict,
            "reviewer_value": json.dumps(value), "model_value": json.dumps(model),
            "reviewed_at": pd.Timestamp(at, tz="UTC")}


def test_latest_verdict_per_field_wins_and_gold_says_whose_value_it_is():
    gold = _gold()
    verdicts = pd.DataFrame([
        _verdict("c1", "ethnicity", "correct", "Korean", "Asian", "2026-12-03 10:00", "a"),
        _verdict("c1", "ethnicity", "correct", "Japanese", "Asian", "2026-12-03 11:00", "b"),  # later: wins
        _verdict("c1", "appearance", "correct", ["Short hair"], ["Short hair", "Eyeglasses"], "2026-12-03 10:00", "c"),
        _verdict("c2", "emotion", "accept", "Neutral", "Neutral", "2026-12-03 10:00", "d"),
        _verdict("c2", "age", "correct", "45-59", None, "2026-12-03 10:00", "e"),
    ])
    assert len(latest(verdicts)) == 4
    out = apply_verdicts(gold, verdicts, {"appearance", "lighting", "action"}).set_index("clip_id")
    assert out.loc["c1", "ethnicity"] == "Japanese" and out.loc["c1", "appearance"] == ["Short hair"]
    assert out.loc["c1", "reviewed_fields"] == ["appearance", "ethnicity"]
    assert json.loads(out.loc["c1", "model_annotations"]) == {"appearance": ["Short hair", "Eyeglasses"],
                                                              "ethnicity": "Asian"}
    assert out.loc["c2", "reviewed_fields"] == ["age", "emotion"] and out.loc["c2", "age_group"] == "45-59"
    assert out.loc["c0", "reviewed_fields"] == [] and out.loc["c0", "model_annotations"] is None
    assert out.loc["c0", "age_group"] == age_group(16.0) == "13-17"


@pytest.mark.parametrize("on_flag,on_reject", [("fallback", "fallback"), ("exclude", "exclude")])
def test_restoration_policy(on_flag, on_reject):
    clips = pd.DataFrame({"clip_id": ["a", "b", "c", "d"], "video_id": "v",
                          "crop_uri": ["/c/a", "/c/b", "/c/c", "/c/d"],
                          "restored_uri": ["/r/a", "/r/b", "/r/c", None], "eye_flagged": [False, True, True, None]})
    verdicts = pd.DataFrame([_verdict("c", "restoration", "reject", "reject", "reject", "2026-12-03", "x")])
    out, excluded = apply_restoration(clips, verdicts, RestorationPolicy(on_flag, on_reject))
    o = out.set_index("clip_id")
    assert list(o["restoration"]) == ["restored", "pending", "rejected", "none"]
    assert list(o["crop_uri"]) == ["/r/a", "/c/b", "/c/c", "/c/d"] and list(o["unrestored_uri"]) == list(clips["crop_uri"])
    assert sorted(excluded["clip_id"]) == ([] if on_flag == "fallback" else ["b", "c"])
    accepted = pd.DataFrame([_verdict("b", "restoration", "accept", "accept", "reject", "2026-12-03", "y")])
    assert apply_restoration(clips, accepted, RestorationPolicy(on_flag, on_reject))[0].loc[1, "crop_uri"] == "/r/b"
