"""Per-frame quality measures: pure OpenCV/numpy functions of one frame (or one frame pair).

Fixed analysis sizes keep the numbers comparable across source resolutions: exposure and frame
sharpness on the gray frame at ``FRAME_SIDE`` (longest side, never upscaled), optical flow at
``FLOW_SIDE``, the face resized so that its box's longest side is ``face_side``. Borders are
measured at the decoded resolution (exact in the measured axis).
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np

FRAME_SIDE = 512
FLOW_SIDE = 256
DARK_LUMA, BRIGHT_LUMA = 16, 239
BLACK_LUMA, FLAT_STD = 20.0, 6.0  # a border row/column: mean luma <= 20 and nearly uniform
_PROFILE = 64  # border profiles average the other axis down to this many cells
_BG_EXPAND, _BG_MIN = 1.5, 0.25  # camera motion: outside the face box x1.5 when that leaves >= 25%

Roi = tuple[int, int, int, int]  # x0, y0, x1, y1


def resize(img: np.ndarray, width: int, height: int) -> np.ndarray:
    """Area-average when shrinking, bicubic when enlarging (INTER_AREA enlarges like nearest
    neighbour, whose blocky edges would read as sharpness)."""
    h, w = img.shape[:2]
    shrink = width <= w and height <= h
    return cv2.resize(img, (width, height), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_CUBIC)


def laplacian_var(gray: np.ndarray) -> float:
    """Variance of the Laplacian (3x3 aperture): high for sharp edges and fine detail, low for blur."""
    std = cv2.meanStdDev(cv2.Laplacian(gray, cv2.CV_64F))[1]
    return float(std[0, 0] ** 2)


def face_sharpness(face_gray: np.ndarray, side: int) -> float:
    """Laplacian variance of a face crop scaled so that its longest side is ``side`` (aspect kept)."""
    h, w = face_gray.shape[:2]
    s = side / max(h, w)
    return laplacian_var(resize(face_gray, max(1, round(w * s)), max(1, round(h * s))))


def exposure(gray: np.ndarray) -> tuple[float, float, float]:
    """(mean luma 0-255, share of pixels <= ``DARK_LUMA``, share >= ``BRIGHT_LUMA``), one histogram."""
    hist = cv2.calcHist([gray], [0], None, [256], [0, 256]).ravel()
    n = max(float(hist.sum()), 1.0)
    mean = float(hist @ np.arange(256)) / n
    return mean, float(hist[: DARK_LUMA + 1].sum()) / n, float(hist[BRIGHT_LUMA:].sum()) / n


def black_lines(gray: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Which rows and which columns of a gray frame are black (mean <= ``BLACK_LUMA``) and flat
    (std <= ``FLAT_STD`` over ``_PROFILE`` cells of the other axis, so logos and text are not)."""
    h, w = gray.shape[:2]
    rows = cv2.resize(gray, (min(w, _PROFILE), h), interpolation=cv2.INTER_AREA).astype(np.float32)
    cols = cv2.resize(gray, (w, min(h, _PROFILE)), interpolation=cv2.INTER_AREA).astype(np.float32)
    return ((rows.mean(1) <= BLACK_LUMA) & (rows.std(1) <= FLAT_STD),
            (cols.mean(0) <= BLACK_LUMA) & (cols.std(0) <= FLAT_STD))


def edge_runs(black: np.ndarray) -> tuple[int, int]:
    """Lengths of the leading and trailing runs of True (the whole length when all are True)."""
    if black.all():
        return len(black), len(black)
    return int(np.argmin(black)), int(np.argmin(black[::-1]))


def box_roi(box: np.ndarray | None, scale: float, shape: tuple[int, ...], expand: float = 1.0) -> Roi | None:
    """A box ``[x, y, w, h]`` (source pixels) scaled by ``scale``, grown ``expand`` times about its
    centre and clipped to ``shape``; None when nothing of at least 4x4 pixels is left."""
    if box is None:
        return None
    x, y, w, h = (float(v) * scale for v in box)
    cx, cy, w, h = x + w / 2, y + h / 2, w * expand, h * expand
    x0, y0 = max(0, int(round(cx - w / 2))), max(0, int(round(cy - h / 2)))
    x1, y1 = min(shape[1], int(round(cx + w / 2))), min(shape[0], int(round(cy + h / 2)))
    return (x0, y0, x1, y1) if x1 - x0 >= 4 and y1 - y0 >= 4 else None


def flow_stats(dis: Any, prev: np.ndarray, cur: np.ndarray, dt: float,
               box: np.ndarray | None, scale: float) -> tuple[float, float, float | None]:
    """Dense DIS optical flow between two gray frames ``dt`` seconds apart, in pixels per second at
    their size: (mean magnitude, camera motion = median magnitude outside the face box x1.5 (the
    whole frame when that leaves under 25%), mean magnitude inside the face box or None)."""
    flow = dis.calc(prev, cur, None)
    mag = cv2.magnitude(flow[..., 0], flow[..., 1]) / dt
    face = box_roi(box, scale, mag.shape)
    face_mean = float(mag[face[1]:face[3], face[0]:face[2]].mean()) if face else None
    background = mag
    grown = box_roi(box, scale, mag.shape, _BG_EXPAND)
    if grown is not None:
        keep = np.ones(mag.shape, bool)
        keep[grown[1]:grown[3], grown[0]:grown[2]] = False
        if keep.mean() >= _BG_MIN:
            background = mag[keep]
    return float(mag.mean()), float(np.median(background)), face_mean
