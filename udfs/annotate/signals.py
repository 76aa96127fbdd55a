"""The ``signals`` captioner: the CPU default, which sets only what it can honestly measure.

From one clip's ``silver.av`` signals and ``silver.quality`` exposure statistics:

- action: ``Talk`` (speech in the clip's audio, the mouth moving with it, and the lip-sync search
  not contradicting it: a significant offset beyond ``talk_max_offset_ms`` is a voice-over), ``Smile``, ``Close Eyes`` (both eyes closed longer than a blink),
  ``Wink``, ``Nod``, ``Shake Head``, ``Tilt``, ``Wag Head`` (repeated side-to-side head motion);
- lighting: one exposure bucket, ``Dark`` / ``Dim`` / ``Normal`` / ``Bright``, from the face's and
  the frame's mean luma;
- emotion: only when an ONNX emotion classifier is configured (``emotion_model_path``; the layout
  of FER+ by default: 8 classes, 64x64 gray input), else null;
- ethnicity and appearance: never (null / empty): guessing them from pixel statistics would be
  dishonest; a ``vlm`` backend or people (the review loop) set them.

Every threshold is a parameter (``SignalThresholds``); the defaults were measured on the shared
videos (README "Annotations").
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from facevid.udfs.base import validate


@dataclass
class SignalThresholds:
    """When a measured signal becomes a vocabulary term (see the module docstring)."""

    talk_mouth_var: float = 2e-4  # variance of mouth opening (inner-lip gap / face size) while talking
    talk_speech_frac: float = 0.2  # share of the clip with voice activity
    talk_min_confidence: float | None = None  # lip-sync confidence floor for Talk (None: not required)
    talk_max_offset_ms: float = 400.0  # a significant lip-sync offset beyond this contradicts Talk (a voice-over)
    smile_frac: float = 0.3  # share of frames whose smile score is above the av stage's smile level
    close_eyes_s: float = 0.6  # both eyes closed at least this long (blinks last 0.1-0.4 s)
    eye_closed: float = 0.7  # an eye is closed when its aspect ratio is under this x the clip's median
                             # (its open level; the av stage's blink rule, relative to a rolling median)
    wink: int = 1  # winks counted by the av stage
    nod: int = 1  # pitch oscillations counted by the av stage
    shake: int = 1  # yaw oscillations
    tilt: int = 1  # roll oscillations
    wag: int = 3  # yaw + roll oscillations together: Wag Head
    dark_luma: float = 50.0  # face (or frame) mean luma below: Dark
    dim_luma: float = 90.0  # below: Dim
    bright_luma: float = 170.0  # above: Bright; between dim and bright: Normal
    bright_frac: float = 0.1  # or this share of clipped-white pixels: Bright

    def __post_init__(self) -> None:
        validate("caption.signals", [
            (self.talk_mouth_var >= 0, "talk_mouth_var must be >= 0"),
            (0 <= self.talk_speech_frac <= 1, "talk_speech_frac must be in [0, 1]"),
            (0 <= self.smile_frac <= 1, "smile_frac must be in [0, 1]"),
            (self.close_eyes_s > 0, "close_eyes_s must be > 0"),
            (0 < self.dark_luma < self.dim_luma < self.bright_luma < 255,
             "lumas must satisfy 0 < dark_luma < dim_luma < bright_luma < 255"),
        ])


def _num(row: dict[str, Any], key: str) -> float | None:
    value = row.get(key)
    if value is None:
        return None
    value = float(value)
    return None if math.isnan(value) else value


def _longest_closed_s(row: dict[str, Any], eye_closed: float) -> float | None:
    """Longest run of frames with both eyes under ``eye_closed`` x their clip median, in seconds."""
    left, right, fps = row.get("ear_left"), row.get("ear_right"), _num(row, "landmarks_fps")
    if left is None or right is None or not fps or not len(left) or len(left) != len(right):
        return None
    ears = np.stack([np.asarray(left, np.float64), np.asarray(right, np.float64)])
    with np.errstate(all="ignore"):
        level = np.nanmedian(ears, axis=1, keepdims=True)
        rel = np.nan_to_num(ears / level, nan=1.0)  # a failed fit (NaN) is not a closed eye
    closed = (rel < eye_closed).all(axis=0)
    best = run = 0
    for c in closed:
        run = run + 1 if c else 0
        best = max(best, run)
    return best / fps


def actions(row: dict[str, Any], t: SignalThresholds) -> tuple[list[str], dict[str, Any]]:
    """The action terms a clip's av signals support, and the evidence used (for ``raw_answer``)."""
    out: list[str] = []
    speech, mouth = _num(row, "speech_frac"), _num(row, "mouth_open_var")
    conf, offset = _num(row, "av_confidence"), _num(row, "av_offset_ms")
    sync_ok = t.talk_min_confidence is None or (conf is not None and conf >= t.talk_min_confidence)
    if row.get("av_sync_reliable") and offset is not None and abs(offset) > t.talk_max_offset_ms:
        sync_ok = False  # the voice is significantly not this mouth's
    if (row.get("has_speech") and speech is not None and speech >= t.talk_speech_frac
            and mouth is not None and mouth >= t.talk_mouth_var and sync_ok):
        out.append("Talk")
    smile = _num(row, "smile_frac")
    if smile is not None and smile >= t.smile_frac:
        out.append("Smile")
    closed = _longest_closed_s(row, t.eye_closed)
    if closed is not None and closed >= t.close_eyes_s:
        out.append("Close Eyes")
    counts = {k: int(row.get(f"{k}_count") or 0) for k in ("wink", "nod", "shake", "tilt")}
    for key, term in (("wink", "Wink"), ("nod", "Nod"), ("shake", "Shake Head"), ("tilt", "Tilt")):
        if counts[key] >= getattr(t, key):
            out.append(term)
    if counts["shake"] + counts["tilt"] >= t.wag:
        out.append("Wag Head")
    evidence = {"speech_frac": speech, "has_speech": row.get("has_speech"), "mouth_open_var": mouth,
                "av_confidence": conf, "av_offset_ms": offset, "av_sync_reliable": row.get("av_sync_reliable"), "smile_frac": smile, "eyes_closed_s": closed, **counts}
    return out, evidence


def lighting(row: dict[str, Any], t: SignalThresholds) -> list[str]:
    """One exposure bucket from the face's mean luma (the frame's when no face luma)."""
    luma = _num(row, "face_brightness")
    luma = luma if luma is not None else _num(row, "brightness_mean")
    if luma is None:
        return []
    bright = _num(row, "bright_frac") or 0.0
    if luma < t.dark_luma:
        return ["Dark"]
    if luma < t.dim_luma:
        return ["Dim"]
    if luma > t.bright_luma or bright >= t.bright_frac:
        return ["Bright"]
    return ["Normal"]


def signals_answer(row: dict[str, Any], t: SignalThresholds, emotion: str | None = None,
                   emotion_scores: dict[str, float] | None = None) -> tuple[dict[str, Any], str]:
    """Structured values (vocabulary terms) and the ``raw_answer`` JSON that records the evidence."""
    acts, evidence = actions(row, t)
    values = {"ethnicity": None, "appearance": [], "lighting": lighting(row, t), "action": acts,
              "emotion": emotion}
    raw = {"values": values, "evidence": evidence, "thresholds": asdict(t),
           "luma": {"face": _num(row, "face_brightness"), "frame": _num(row, "brightness_mean"),
                    "bright_frac": _num(row, "bright_frac")}}
    if emotion_scores is not None:
        raw["emotion_scores"] = emotion_scores
    return values, json.dumps(raw, sort_keys=True, default=float)
