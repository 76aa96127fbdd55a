"""The eye-artifact screen on real frames: the shared run's gold crops untouched, re-encoded and
enhanced stay under the level; one eye blurred or warped in the "after" frames goes over it, and
the parts point at the eye that was changed."""

from __future__ import annotations

import json
import math
from pathlib import Path

import cv2
import numpy as np
import pytest

from facevid.udfs.media.encode import transcode
from facevid.udfs.media.video import VideoSpan, to_array
from facevid.udfs.restore.align import (
    LEFT_EYE,
    RIGHT_EYE,
    five_points,
    paste_back,
    similarity,
    template,
    warp_face,
)
from facevid.udfs.restore.backends import EnhanceRestorer
from facevid.udfs.restore.clip import eye_frames
from facevid.udfs.restore.eyes import EyeScreen
from facevid.udfs.restore.landmarks import fit_crop
from facevid.udfs.restore.params import RestoreParams

LEVEL = RestoreParams().eye_level


def frames_at(path: str, picks: set[int]) -> dict[int, np.ndarray]:
    with VideoSpan(path) as span:
        return {i: to_array(f, "rgb24") for i, (_, f) in enumerate(span.frames()) if i in picks}


@pytest.fixture(scope="module")
def clips(gold_crops) -> list[dict]:
    """Per gold clip: the screened frames (first aligned + 3 seeded random), their landmarks."""
    out = []
    for row in gold_crops:
        faces = fit_crop(row["crop_uri"], row, 64, None)
        picks = eye_frames(faces, 3, 7, row["clip_id"])
        out.append({"row": row, "faces": faces, "picks": sorted(picks), "frames": frames_at(row["crop_uri"], picks)})
    return out


def screen(clip: dict, after: dict[int, np.ndarray]) -> dict:
    eyes = EyeScreen(LEVEL)
    for i in clip["picks"]:
        eyes.add(clip["frames"][i], after[i], clip["faces"].points[i], i, clip["faces"].times[i])
    return eyes.columns()


def eye_box(eye: np.ndarray) -> tuple[float, float, float]:
    (cx, cy), width = eye.mean(axis=0), math.dist(eye[0], eye[3])
    return cx, cy, width


def blur_eye(img: np.ndarray, eye: np.ndarray, sigma: float = 0.12) -> np.ndarray:
    """A Gaussian blur of ``sigma`` x the eye width over the eye and its lids."""
    cx, cy, w = eye_box(eye)
    x0, y0, x1, y1 = int(cx - w), int(cy - 0.7 * w), int(cx + w), int(cy + 0.7 * w)
    out = img.copy()
    out[y0:y1, x0:x1] = cv2.GaussianBlur(img[y0:y1, x0:x1], (0, 0), max(1.0, sigma * w))
    return out


def warp_eye(img: np.ndarray, eye: np.ndarray, amount: float = 0.25) -> np.ndarray:
    """The iris pulled sideways and down (a smooth local displacement of up to a quarter eye width)."""
    cx, cy, w = eye_box(eye)
    ys, xs = np.mgrid[0:img.shape[0], 0:img.shape[1]].astype(np.float32)
    fall = np.exp(-2 * (((xs - cx) / (0.8 * w)) ** 2 + ((ys - cy) / (0.6 * w)) ** 2)).astype(np.float32)
    return cv2.remap(img, xs - amount * w * fall, ys + 0.15 * w * fall, cv2.INTER_LINEAR,
                     borderMode=cv2.BORDER_REFLECT)


def enhanced(clip: dict) -> dict[int, np.ndarray]:
    enhance, out = EnhanceRestorer(10.0, 0.6, 1.5), {}
    for i in clip["picks"]:
        m = similarity(five_points(clip["faces"].points[i]), template(512))
        out[i] = paste_back(clip["frames"][i], enhance.restore_one(warp_face(clip["frames"][i], m)), m)
    return out


def test_untouched_reencoded_and_enhanced_clips_score_under_the_level(clips, tmp_path: Path) -> None:
    for clip in clips:
        same = screen(clip, clip["frames"])
        assert same["eye_score"] == 0.0 and same["eye_flagged"] is False
        copy = tmp_path / f"{clip['row']['clip_id']}.mp4"
        transcode(clip["row"]["crop_uri"], str(copy), lambda idx, frames: frames)  # a real re-encode (crf 18)
        reencoded = screen(clip, frames_at(str(copy), set(clip["picks"])))
        assert 0 < reencoded["eye_score"] < LEVEL / 2, clip["row"]["clip_id"]
        enh = screen(clip, enhanced(clip))
        assert 0 < enh["eye_score"] < LEVEL and enh["eye_flagged"] is False, (clip["row"]["clip_id"], enh)


@pytest.mark.parametrize("distort", [blur_eye, warp_eye])
@pytest.mark.parametrize("side", ["left", "right"])
def test_one_distorted_eye_scores_over_the_level_and_the_parts_name_it(clips, distort, side: str) -> None:
    eye_slice = LEFT_EYE if side == "left" else RIGHT_EYE
    for clip in clips:
        base = enhanced(clip)
        after = {i: distort(base[i], clip["faces"].points[i][eye_slice]) for i in clip["picks"]}
        cols = screen(clip, after)
        assert cols["eye_flagged"] is True and cols["eye_score"] > LEVEL, (clip["row"]["clip_id"], cols)
        other = "right" if side == "left" else "left"
        assert cols[f"eye_{side}"] > 2 * cols[f"eye_{other}"]
        detail = json.loads(cols["eye_detail"])
        assert detail["level"] == LEVEL and [f["i"] for f in detail["frames"]] == clip["picks"]
        if distort is blur_eye:  # detail blurred away on one side only: the asymmetry moved
            assert max(f["asym"] for f in detail["frames"]) > 0.2
