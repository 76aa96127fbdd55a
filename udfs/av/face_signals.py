"""Per-clip face signals from the 68 points: mouth, eyes, smile, head pose, fit quality.

All series are per landmark frame (``landmarks.py``; "left"/"right" = as seen in the image):

- ``mouth_open``: mean of the three inner-lip gaps (61-67, 62-66, 63-65) / face size, where the
  face size is sqrt(w * h) of the main-track box at that frame;
- ``ear_left`` / ``ear_right``: eye aspect ratio (Soukupova & Cech 2016), (|p2-p6| + |p3-p5|) /
  (2 |p1-p4|) of points 36-41 (image-left eye) and 42-47;
- smile ratio: mouth width (48-54) / outer eye-corner distance (36-45); ``smile_score`` is its
  clip median, ``smile_frac`` the share of frames above ``smile_ratio``;
- head pose: ``cv2.solvePnP`` of the rigid points (nose 27-35, eye corners 36/39/42/45) against
  OpenFace's 68-point mean 3D face, with ``facevid.udfs.curation.quality_pose``'s camera and
  angle conventions (focal = frame width, principal point at the points' centre; yaw > 0 = nose
  to the image's right, pitch > 0 = looking down, roll > 0 = eye line turned clockwise);
- fit quality: a frame is OCCLUDED when the detector did not see the face near it (box
  missing), the fit is implausible (points' centre outside the box, or the eye-corner distance
  outside ``[0.2, 0.9]`` x the box's longer side) or it JUMPS: after a similarity (Procrustes)
  alignment on the previous frame's fit, the RMS residual of the 68 points exceeds ``jump`` x
  face size (a non-rigid change: a hand, a mask, a lost fit; rigid head motion is aligned away).

Events on the series (all thresholds are ``AvParams`` fields, documented there with what was
measured): blinks/winks from the EAR relative to its rolling median; nods/shakes/tilts from
hysteresis swings of pitch/yaw/roll (averaged over ``POSE_SMOOTH`` frames first).
``head_motion_deg`` = RMS over frames of the angular distance (yaw, pitch, roll) from the clip's
median pose.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

from facevid.udfs.curation.quality_pose import euler

if TYPE_CHECKING:
    from facevid.udfs.av.params import AvParams

# OpenFace's 68-point mean 3D face (mm; x right, y down, z TOWARDS the camera), rigid points only:
# nose 27-35 then eye corners 36, 39, 42, 45. Negated z below: the camera convention has z away.
_RIGID_IDX = np.array([27, 28, 29, 30, 31, 32, 33, 34, 35, 36, 39, 42, 45])
_RIGID_3D = np.array([
    [0.653940, -42.193790, 13.380835], [0.804809, -30.993721, 21.150853], [0.992204, -19.944596, 29.284036],
    [1.226783, -8.414541, 36.948060], [-14.772472, 2.598255, 20.132003], [-7.180239, 4.751589, 23.536684],
    [0.555920, 6.562900, 25.944448], [8.272499, 4.661005, 23.695741], [15.214351, 2.643046, 20.858157],
    [-46.047290, -37.471411, -7.037989], [-19.648268, -36.754742, 0.111088], [19.265868, -37.032306, 0.665746],
    [45.170805, -38.086515, -4.894163]]) * np.array([1.0, 1.0, -1.0])
_MODEL = _RIGID_3D - _RIGID_3D.mean(axis=0)
_MODEL_EYES_MM = float(np.linalg.norm(_RIGID_3D[-1] - _RIGID_3D[-4]))
POSE_SMOOTH = 5  # frames: angles are averaged over this before counting swings (dlib jitter 0.4-1.2 deg)


def _dist(pts: np.ndarray, a: int, b: int) -> np.ndarray:
    return np.linalg.norm(pts[:, a] - pts[:, b], axis=1)


def mouth_open(pts: np.ndarray, size: np.ndarray) -> np.ndarray:
    """Inner-lip opening / face size per frame (``pts``: (T, 68, 2))."""
    return (_dist(pts, 61, 67) + _dist(pts, 62, 66) + _dist(pts, 63, 65)) / 3.0 / np.maximum(size, 1e-6)


def eye_aspect(pts: np.ndarray) -> np.ndarray:
    """(T, 2) eye aspect ratios: image-left eye (36-41), image-right eye (42-47)."""
    out = []
    for i in (36, 42):
        out.append((_dist(pts, i + 1, i + 5) + _dist(pts, i + 2, i + 4)) / (2.0 * np.maximum(_dist(pts, i, i + 3), 1e-6)))
    return np.stack(out, axis=1)


def smile_ratio(pts: np.ndarray) -> np.ndarray:
    """Mouth width / outer eye-corner distance per frame."""
    return _dist(pts, 48, 54) / np.maximum(_dist(pts, 36, 45), 1e-6)


def head_pose(pts: np.ndarray, focal: float) -> tuple[float, float, float] | None:
    """(yaw, pitch, roll) degrees of one (68, 2) fit, or None when the solver fails."""
    img = pts[_RIGID_IDX].astype(np.float64)
    eyes = float(np.linalg.norm(img[-1] - img[-4]))
    if not np.isfinite(img).all() or eyes < 2.0 or focal <= 0:
        return None
    cx, cy = img.mean(axis=0)
    cam = np.array([[focal, 0.0, cx], [0.0, focal, cy], [0.0, 0.0, 1.0]])
    rvec, tvec = np.zeros((3, 1)), np.array([[0.0], [0.0], [focal * _MODEL_EYES_MM / eyes]])
    try:
        ok, rvec, tvec = cv2.solvePnP(_MODEL, img, cam, None, rvec, tvec, True, cv2.SOLVEPNP_ITERATIVE)
    except cv2.error:
        return None
    if not ok or not np.isfinite(rvec).all():
        return None
    return euler(cv2.Rodrigues(rvec)[0])


def procrustes_residual(a: np.ndarray, b: np.ndarray) -> float:
    """RMS distance between point sets ``b`` and ``a`` after the best similarity transform of
    ``b`` onto ``a``."""
    a0, b0 = a - a.mean(axis=0), b - b.mean(axis=0)
    nb = float((b0 ** 2).sum())
    if nb <= 0:
        return math.inf
    u, s, vt = np.linalg.svd(b0.T @ a0)
    d = np.sign(np.linalg.det(u @ vt)) or 1.0
    s[-1] *= d
    u[:, -1] *= d
    scale = s.sum() / nb
    return float(np.sqrt(((scale * b0 @ (u @ vt) - a0) ** 2).sum(axis=1).mean()))


def fit_quality(pts: np.ndarray, boxes: np.ndarray, seen: np.ndarray, jump: float) -> np.ndarray:
    """Occluded (bool) per frame: box missing, implausible fit or a non-rigid jump (module doc)."""
    side = np.sqrt(boxes[:, 2] * boxes[:, 3])
    centre = pts.mean(axis=1)
    inside = ((centre[:, 0] >= boxes[:, 0]) & (centre[:, 0] <= boxes[:, 0] + boxes[:, 2])
              & (centre[:, 1] >= boxes[:, 1]) & (centre[:, 1] <= boxes[:, 1] + boxes[:, 3]))
    eyes = _dist(pts, 36, 45) / np.maximum(np.maximum(boxes[:, 2], boxes[:, 3]), 1e-6)
    bad = ~seen | ~inside | (eyes < 0.2) | (eyes > 0.9) | ~np.isfinite(pts).all(axis=(1, 2))
    for k in range(1, len(pts)):
        if procrustes_residual(pts[k - 1], pts[k]) > jump * side[k]:
            bad[k] = True
    return bad


def rolling_median(x: np.ndarray, half: int) -> np.ndarray:
    """Median over ``[i - half, i + half]`` ignoring NaN (NaN where the window has no value)."""
    out = np.full(len(x), np.nan)
    for i in range(len(x)):
        w = x[max(0, i - half):i + half + 1]
        w = w[np.isfinite(w)]
        if len(w):
            out[i] = np.median(w)
    return out


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """``[start, end)`` index runs where ``mask`` is True."""
    edges = np.diff(np.concatenate([[0], mask.astype(np.int8), [0]]))
    return list(zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1), strict=True))


def eye_events(ear: np.ndarray, fps: float, p: AvParams) -> tuple[int, int]:
    """``(blinks, winks)`` from (T, 2) EAR series (NaN = no fit).

    Each eye's EAR is divided by its rolling median over ``ear_baseline_s`` (its own open level,
    robust to slow head-pose changes). An eye is CLOSED below ``eye_closed``, OPEN above
    ``eye_open`` (hysteresis). A blink = a run where both eyes are closed (one may lag by a
    frame: runs of "both below ``eye_open``, at least one closed") lasting
    ``[blink_min_ms, blink_max_ms]``, with open frames before and after. A wink = a run where
    one eye is closed while the other stays open, lasting ``[blink_min_ms, wink_max_ms]``."""
    half = max(1, round(p.ear_baseline_s * fps / 2))
    rel = np.stack([ear[:, j] / rolling_median(ear[:, j], half) for j in range(2)], axis=1)
    valid = np.isfinite(rel).all(axis=1)
    closed, opened = rel < p.eye_closed, rel > p.eye_open
    frame_ms = 1000.0 / fps

    def count(mask: np.ndarray, max_ms: float) -> int:
        n = 0
        for a, b in _runs(mask & valid):
            ms = (b - a) * frame_ms
            before = a > 0 and valid[a - 1]
            after = b < len(mask) and valid[b]
            if p.blink_min_ms <= ms <= max_ms and before and after:
                n += 1
        return n

    both = ~opened[:, 0] & ~opened[:, 1] & (closed[:, 0] | closed[:, 1])
    both_runs = np.zeros(len(rel), bool)
    for a, b in _runs(both):
        if (closed[a:b, 0].any() and closed[a:b, 1].any()):
            both_runs[a:b] = True
    one = (closed[:, 0] & opened[:, 1]) | (closed[:, 1] & opened[:, 0])
    return count(both_runs, p.blink_max_ms), count(one & ~both_runs, p.wink_max_ms)


def turning_points(x: np.ndarray, amp: float) -> list[int]:
    """Indices of the alternating extremes of ``x`` between which it moves by >= ``amp``
    (a zigzag with hysteresis: smaller wiggles are ignored)."""
    turns: list[int] = []
    lo = hi = ext = 0
    direction = 0
    for i in range(1, len(x)):
        if direction == 0:
            lo, hi = (i if x[i] < x[lo] else lo), (i if x[i] > x[hi] else hi)
            if x[hi] - x[lo] >= amp:
                up = hi > lo
                turns.append(lo if up else hi)
                direction, ext = (1, hi) if up else (-1, lo)
        elif (x[i] - x[ext]) * direction > 0:
            ext = i
        elif (x[ext] - x[i]) * direction >= amp:
            turns.append(ext)
            direction, ext = -direction, i
    return [*turns, ext] if direction else turns


def swings(angle: np.ndarray, fps: float, amp: float, max_s: float) -> int:
    """Oscillations of an angle series (NaN = no fit, skipped): the swings are the moves between
    consecutive ``turning_points`` (>= ``amp`` degrees) that take at most ``max_s`` seconds;
    the count is the number of disjoint pairs of consecutive swings (out and back: one nod,
    one shake, one tilt)."""
    idx = np.flatnonzero(np.isfinite(angle))
    turns = turning_points(angle[idx], amp)
    quick = [(idx[b] - idx[a]) / fps <= max_s for a, b in zip(turns, turns[1:], strict=False)]
    count = k = 0
    while k < len(quick) - 1:
        if quick[k] and quick[k + 1]:
            count, k = count + 1, k + 2
        else:
            k += 1
    return count


def smooth(x: np.ndarray, window: int) -> np.ndarray:
    """Centered moving average of ``window`` frames ignoring NaN (NaN stays NaN)."""
    ok = np.isfinite(x)
    k = np.ones(max(1, window))
    num = np.convolve(np.where(ok, x, 0.0), k, "same")
    den = np.convolve(ok.astype(np.float64), k, "same")
    return np.where(ok, num / np.maximum(den, 1), np.nan)


def _series(values: np.ndarray) -> list[float | None]:
    return [float(v) if math.isfinite(v) else None for v in values]


def summarise(mouth: np.ndarray, ear: np.ndarray, smile: np.ndarray, pose: np.ndarray, occluded: np.ndarray,
              fps: float, p: AvParams) -> dict[str, Any]:
    """The face columns of ``silver.av`` from per-frame series on the landmark grid (NaN where
    the frame is occluded)."""
    def med(x: np.ndarray) -> float | None:
        x = x[np.isfinite(x)]
        return float(np.median(x)) if len(x) else None

    blinks, winks = eye_events(ear, fps, p)
    ok_smile = smile[np.isfinite(smile)]
    ok_pose = pose[np.isfinite(pose).all(axis=1)]
    motion = (float(np.sqrt(((ok_pose - np.median(ok_pose, axis=0)) ** 2).sum(axis=1).mean()))
              if len(ok_pose) else None)
    ok_mouth = mouth[np.isfinite(mouth)]
    return {
        "occlusion_frac": float(occluded.mean()) if len(occluded) else None,
        "mouth_open": _series(mouth),
        "mouth_open_var": float(np.var(ok_mouth)) if len(ok_mouth) >= 2 else None,
        "ear_left": _series(ear[:, 0]),
        "ear_right": _series(ear[:, 1]),
        "blink_count": blinks,
        "wink_count": winks,
        "smile_score": med(smile),
        "smile_frac": float(np.mean(ok_smile > p.smile_ratio)) if len(ok_smile) else None,
        "yaw": _series(pose[:, 0]),
        "pitch": _series(pose[:, 1]),
        "roll": _series(pose[:, 2]),
        "nod_count": swings(smooth(pose[:, 1], POSE_SMOOTH), fps, p.nod_deg, p.swing_max_s),
        "shake_count": swings(smooth(pose[:, 0], POSE_SMOOTH), fps, p.shake_deg, p.swing_max_s),
        "tilt_count": swings(smooth(pose[:, 2], POSE_SMOOTH), fps, p.tilt_deg, p.swing_max_s),
        "head_motion_deg": motion,
    }
