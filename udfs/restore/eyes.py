"""Eye-artifact screen: did restoration change the eyes more than it should?

The paper restored its clips with CodeFormer and found that it distorts eyes (notably on Asian
faces), so people checked the first frame of every restored video. This screen compares each eye
before and after restoration on the first aligned frame and ``eye_frames`` seeded random ones, and
scores how much the eyes changed in ways a faithful restoration does not change them.

Per frame and eye, an eye patch is cut from the gray BEFORE and AFTER frames at the same place: a
``PATCH_W`` x ``PATCH_H`` window centred on the six dlib contour points of the eye, twice the
eye's corner-to-corner width across (the same landmarks place both: the restored face is pasted
back where the original was). Three changes are measured on the pair:

- ``struct`` = 1 - SSIM (Gaussian window, sigma 1.5): structure that moved, appeared or vanished;
- ``edge`` = |ln((g_after + 1) / (g_before + 1))|, ``g`` the mean Sobel gradient magnitude: detail
  blurred away or hallucinated;
- ``iris`` = the dark blob inside the eye contour (pixels at or below the 25th percentile of the
  contour's luma, its largest connected part): |change of circularity 4 pi A / P^2| + the shift of
  its centroid in eye widths; 1 when the blob exists on one side only (an eye opened or closed).

The eye's change is ``struct + edge + iris``. A restorer that treats both eyes alike (a denoise
and sharpen) changes them alike, so the *asymmetry change* is scored too:
``asym`` = |ln(gL_after / gR_after) - ln(gL_before / gR_before)| over the same gradient means
(+1 each). A frame scores ``max(left, right) + asym``; the clip's ``eye_score`` is the highest
frame score (one bad frame is what a reviewer of the first frame would see), ``eye_left`` and
``eye_right`` the highest per-eye changes. ``eye_score > eye_level`` flags the clip for review.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

from facevid.udfs.restore.align import LEFT_EYE, RIGHT_EYE

PATCH_W, PATCH_H = 48, 32
DARK_PERCENTILE = 25.0
_C1, _C2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2


def eye_patch(gray: np.ndarray, eye: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(patch, contour)``: the float32 gray patch around the six eye points ``eye`` (frame
    pixels) and the contour in patch pixels."""
    eye = np.asarray(eye, np.float64).reshape(6, 2)
    cx, cy = eye.mean(axis=0)
    width = max(math.dist(eye[0], eye[3]), 2.0)
    k = PATCH_W / (2.0 * width)
    m = np.array([[k, 0.0, PATCH_W / 2 - k * cx], [0.0, k, PATCH_H / 2 - k * cy]])
    patch = cv2.warpAffine(gray, m, (PATCH_W, PATCH_H), flags=cv2.INTER_AREA if k < 1 else cv2.INTER_LINEAR,
                           borderMode=cv2.BORDER_REPLICATE)
    return patch.astype(np.float32), eye @ m[:, :2].T + m[:, 2]


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    """Mean structural similarity of two gray float patches (0-255 scale)."""
    blur = lambda x: cv2.GaussianBlur(x, (7, 7), 1.5)  # noqa: E731
    mu_a, mu_b = blur(a), blur(b)
    var_a, var_b = blur(a * a) - mu_a ** 2, blur(b * b) - mu_b ** 2
    cov = blur(a * b) - mu_a * mu_b
    num = (2 * mu_a * mu_b + _C1) * (2 * cov + _C2)
    den = (mu_a ** 2 + mu_b ** 2 + _C1) * (var_a + var_b + _C2)
    return float((num / den).mean())


def gradient(patch: np.ndarray) -> float:
    """Mean Sobel gradient magnitude."""
    gx = cv2.Sobel(patch, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(patch, cv2.CV_32F, 0, 1, ksize=3)
    return float(cv2.magnitude(gx, gy).mean())


def dark_blob(patch: np.ndarray, contour: np.ndarray, ref: np.ndarray | None = None
              ) -> tuple[float, np.ndarray, float] | None:
    """``(roundness, centroid, darkness)`` of the dark blob (iris and pupil) inside the eye contour,
    None when the contour encloses too little (a closed eye). The blob is a soft weight map: 1 at
    or below the 25th luma percentile inside the contour of ``ref`` (default ``patch``; the screen
    uses the BEFORE patch for both, so that the cut is the same), fading to 0 over half the
    contour's luma spread. ``roundness`` = sqrt(minor / major) of the weights' second moments
    (1 = round), ``darkness`` = mean weight inside the contour."""
    mask = np.zeros(patch.shape, np.uint8)
    cv2.fillPoly(mask, [np.round(contour).astype(np.int32)], 1)
    inside = mask > 0
    if inside.sum() < 12:
        return None
    base = (patch if ref is None else ref)[inside]
    cut, spread = float(np.percentile(base, DARK_PERCENTILE)), max(0.5 * float(base.std()), 4.0)
    smooth = cv2.GaussianBlur(patch, (0, 0), 1.0)
    w = np.clip((cut + spread - smooth) / (2 * spread), 0.0, 1.0) * inside
    mass = float(w.sum())
    if mass < 1.0:
        return None
    ys, xs = np.mgrid[0:patch.shape[0], 0:patch.shape[1]]
    cx, cy = float((w * xs).sum() / mass), float((w * ys).sum() / mass)
    cov = np.cov(np.stack([xs.ravel(), ys.ravel()]), aweights=w.ravel() + 1e-12)
    low, high = np.linalg.eigvalsh(cov)
    return math.sqrt(max(low, 0.0) / max(high, 1e-9)), np.array([cx, cy]), mass / float(inside.sum())


def iris_change(before: tuple[float, np.ndarray, float] | None, after: tuple[float, np.ndarray, float] | None) -> float:
    """|roundness change| + centroid shift in eye widths + |darkness change|; 1 when one side has none."""
    if before is None and after is None:
        return 0.0
    if before is None or after is None:
        return 1.0
    shift = float(np.linalg.norm(after[1] - before[1])) / (PATCH_W / 2.0)
    return abs(after[0] - before[0]) + shift + abs(after[2] - before[2])


@dataclass
class EyeScreen:
    """Accumulates before/after frame pairs and scores them (see the module docstring)."""

    level: float
    frames: list[dict[str, Any]] = field(default_factory=list)

    def add(self, before: np.ndarray, after: np.ndarray, points68: np.ndarray, index: int, t: float) -> None:
        """One frame pair (RGB or gray, same size) with the BEFORE frame's 68 landmarks."""
        gb, ga = (cv2.cvtColor(x, cv2.COLOR_RGB2GRAY) if x.ndim == 3 else x for x in (before, after))
        pts = np.asarray(points68, np.float64).reshape(68, 2)
        per_eye, grads = [], []
        for eye in (pts[LEFT_EYE], pts[RIGHT_EYE]):
            (pb, contour), (pa, _) = eye_patch(gb, eye), eye_patch(ga, eye)
            g_b, g_a = gradient(pb), gradient(pa)
            grads.append((g_b, g_a))
            parts = (1.0 - ssim(pb, pa), abs(math.log((g_a + 1.0) / (g_b + 1.0))),
                     iris_change(dark_blob(pb, contour), dark_blob(pa, contour, ref=pb)))
            per_eye.append(parts)
        (lb, la), (rb, ra) = grads
        asym = abs(math.log((la + 1.0) / (ra + 1.0)) - math.log((lb + 1.0) / (rb + 1.0)))
        left, right = (float(sum(p)) for p in per_eye)
        self.frames.append({
            "i": int(index), "t": round(float(t), 4), "left": round(left, 4), "right": round(right, 4),
            "asym": round(asym, 4), "score": round(max(left, right) + asym, 4),
            "struct": [round(p[0], 4) for p in per_eye], "edge": [round(p[1], 4) for p in per_eye],
            "iris": [round(p[2], 4) for p in per_eye],
        })

    def columns(self) -> dict[str, Any]:
        """``eye_score``, ``eye_left``, ``eye_right``, ``eye_detail`` (JSON), ``eye_flagged``."""
        import json

        if not self.frames:
            return {"eye_score": None, "eye_left": None, "eye_right": None, "eye_detail": None, "eye_flagged": None}
        score = max(f["score"] for f in self.frames)
        return {"eye_score": score, "eye_left": max(f["left"] for f in self.frames),
                "eye_right": max(f["right"] for f in self.frames),
                "eye_detail": json.dumps({"level": self.level, "frames": self.frames}, sort_keys=True),
                "eye_flagged": bool(score > self.level)}
