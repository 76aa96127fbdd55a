"""Faces aligned to the FFHQ template and pasted back: the geometry every restorer shares.

Restorers trained on FFHQ (GFPGAN, RestoreFormer, CodeFormer) expect a face aligned the way
facexlib's ``FaceRestoreHelper`` aligns one for a 512 x 512 output: five points (image-left eye
centre, image-right eye centre, nose tip, image-left and image-right mouth corners) mapped onto
``FFHQ_512`` by a similarity transform (rotation, uniform scale, translation). The transform is the
least-squares (Umeyama) fit over all five points, so it moves smoothly with the landmarks from frame
to frame (a robust estimator that picks a subset of points jumps between subsets and makes the
restored face jitter).

The restored face goes back through the inverse transform under a feathered mask: the aligned
square eroded by ``feather`` of its side and blurred by a Gaussian of the same width, then warped
into the frame with the face. Pixels outside the warped mask's support are left exactly as they
were; only the bounding box of the face square in the frame is touched.
"""

from __future__ import annotations

from functools import lru_cache

import cv2
import numpy as np

FACE_SIZE = 512
# facexlib's template for 512 x 512 aligned faces (crop_ratio 1): left eye, right eye, nose,
# left mouth corner, right mouth corner, in image coordinates ("left" as seen in the image).
FFHQ_512 = np.array([[192.98138, 239.94708], [318.90277, 240.1936], [256.63416, 314.01935],
                     [201.26117, 371.41043], [313.08905, 371.15118]], np.float64)
BORDER_RGB = (132, 133, 135)  # facexlib fills outside the frame with this grey (BGR 135, 133, 132)

# dlib 68-point (iBUG) indices: image-left eye 36-41, image-right eye 42-47, nose tip 30, mouth 48/54
LEFT_EYE = slice(36, 42)
RIGHT_EYE = slice(42, 48)
NOSE_TIP, MOUTH_LEFT, MOUTH_RIGHT = 30, 48, 54


def template(size: int = FACE_SIZE) -> np.ndarray:
    """The five template points for ``size`` x ``size`` aligned faces (the 512 template scaled)."""
    return FFHQ_512 * (size / FACE_SIZE)


def five_points(points68: np.ndarray) -> np.ndarray:
    """``(5, 2)`` alignment points of 68 dlib landmarks: the eye centres (mean of each eye's six
    contour points), the nose tip and the mouth corners."""
    p = np.asarray(points68, np.float64).reshape(68, 2)
    return np.stack([p[LEFT_EYE].mean(axis=0), p[RIGHT_EYE].mean(axis=0), p[NOSE_TIP], p[MOUTH_LEFT],
                     p[MOUTH_RIGHT]])


def similarity(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """The ``2 x 3`` similarity transform (no reflection) that maps ``src`` points onto ``dst`` in
    the least-squares sense (Umeyama 1991)."""
    src, dst = np.asarray(src, np.float64), np.asarray(dst, np.float64)
    mu_s, mu_d = src.mean(axis=0), dst.mean(axis=0)
    s, d = src - mu_s, dst - mu_d
    var = (s ** 2).sum() / len(src)
    if var <= 1e-12:
        raise ValueError("similarity: the source points coincide")
    u, sig, vt = np.linalg.svd(d.T @ s / len(src))
    sign = np.diag([1.0, np.sign(np.linalg.det(u @ vt)) or 1.0])
    rot = u @ sign @ vt
    scale = float((sig * np.diag(sign)).sum() / var)
    m = np.zeros((2, 3))
    m[:, :2] = scale * rot
    m[:, 2] = mu_d - scale * rot @ mu_s
    return m


def scale_of(m: np.ndarray) -> float:
    """The uniform scale of a similarity transform (aligned pixels per frame pixel)."""
    return float(np.sqrt(abs(np.linalg.det(m[:, :2]))))


def warp_face(frame: np.ndarray, m: np.ndarray, size: int = FACE_SIZE) -> np.ndarray:
    """The ``size`` x ``size`` aligned face: ``frame`` (H x W x 3) through ``m``; outside the frame
    is facexlib's grey."""
    interp = cv2.INTER_AREA if scale_of(m) < 1 else cv2.INTER_LINEAR
    return cv2.warpAffine(frame, m, (size, size), flags=interp, borderMode=cv2.BORDER_CONSTANT,
                          borderValue=BORDER_RGB)


@lru_cache(maxsize=8)
def soft_mask(size: int, feather: float) -> np.ndarray:
    """The feathered paste mask in aligned coordinates (float32 in [0, 1]): the square eroded by
    ``feather`` x ``size`` pixels, then Gaussian-blurred over the same width."""
    mask = np.ones((size, size), np.float32)
    edge = max(1, round(feather * size))
    mask = cv2.erode(mask, np.ones((2 * edge + 1, 2 * edge + 1), np.uint8), borderType=cv2.BORDER_CONSTANT,
                     borderValue=0)
    mask = cv2.GaussianBlur(mask, (2 * edge + 1, 2 * edge + 1), 0)
    mask.setflags(write=False)
    return mask


def face_region(m: np.ndarray, size: int, shape: tuple[int, ...]) -> tuple[int, int, int, int] | None:
    """``(x0, y0, x1, y1)``: the frame pixels the aligned square covers (clipped), None if none."""
    inv = cv2.invertAffineTransform(m)
    corners = np.array([[0, 0, 1], [size, 0, 1], [0, size, 1], [size, size, 1]], np.float64) @ inv.T
    x0, y0 = np.floor(corners.min(axis=0)).astype(int)
    x1, y1 = np.ceil(corners.max(axis=0)).astype(int) + 1
    x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, shape[1]), min(y1, shape[0])
    return (int(x0), int(y0), int(x1), int(y1)) if x1 > x0 and y1 > y0 else None


def paste_back(frame: np.ndarray, face: np.ndarray, m: np.ndarray, feather: float = 0.05) -> np.ndarray:
    """``frame`` with the aligned ``face`` (same size as aligned by ``m``) pasted back through the
    inverse transform under ``soft_mask``; a new array, pixels outside the mask unchanged."""
    size = face.shape[0]
    out = frame.copy()
    roi = face_region(m, size, frame.shape)
    if roi is None:
        return out
    x0, y0, x1, y1 = roi
    inv = cv2.invertAffineTransform(m)
    inv[:, 2] -= (x0, y0)  # into the region's coordinates
    w, h = x1 - x0, y1 - y0
    interp = cv2.INTER_AREA if scale_of(inv) < 1 else cv2.INTER_LINEAR
    back = cv2.warpAffine(face, inv, (w, h), flags=interp, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    alpha = cv2.warpAffine(soft_mask(size, feather), inv, (w, h), flags=cv2.INTER_LINEAR,
                           borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    region = out[y0:y1, x0:x1]
    # alpha * face + (1 - alpha) * frame; where alpha is 0 the frame's pixel comes back exactly
    region[...] = cv2.blendLinear(back, region, alpha, 1.0 - alpha)
    return out
