"""Head pose from the faces stage's 5 landmarks: ``cv2.solvePnP`` against a mean 3D face.

The model points are the eye centres (mean of the 6 eye points), nose tip and mouth corners of the
Multi-PIE 68-point mean face, in millimetres (eye distance 64.8, nose tip 35.3 in front of the
eyes): the same frontal 2D layout as the ArcFace 5-point template and as the mtcnn landmarks of the
frontal talking heads in the shared clips (nose at ~0.5 of the eye-to-mouth height). Pinhole
camera with focal length = frame width and the principal point at the landmarks' centre, so the
angles are relative to the line of sight: an off-centre face looking into the lens is frontal.

Angles in degrees: yaw > 0 = nose towards the image's right, pitch > 0 = looking down, roll > 0 =
the eye line turns clockwise on screen; ``R = Rz(roll) @ Ry(yaw) @ Rx(pitch)`` (camera axes: x
right, y down, z away from the camera).
"""

from __future__ import annotations

import math

import cv2
import numpy as np

# image-left eye, image-right eye, nose tip, image-left mouth corner, image-right mouth corner
FACE_5 = np.array([[-32.4, -32.8, 35.3], [32.4, -32.8, 35.3], [0.0, 0.0, 0.0],
                   [-28.5, 33.3, 36.7], [28.5, 33.3, 36.7]])
MODEL = FACE_5 - FACE_5.mean(axis=0)  # centred: its projection's centre is the principal point
_EYE_MM = 64.8


def euler(rot: np.ndarray) -> tuple[float, float, float]:
    """(yaw, pitch, roll) in degrees of ``rot = Rz(roll) @ Ry(yaw) @ Rx(pitch)`` (conventions above)."""
    roll = math.atan2(rot[1, 0], rot[0, 0])
    c, s = math.cos(roll), math.sin(roll)
    q = np.array([[c, s, 0.0], [-s, c, 0.0], [0.0, 0.0, 1.0]]) @ rot  # Rz(-roll) @ rot = Ry @ Rx
    yaw = math.atan2(q[2, 0], q[0, 0])
    pitch = math.atan2(-q[1, 2], q[1, 1])
    return math.degrees(yaw), math.degrees(pitch), math.degrees(roll)


def head_pose(landmarks: np.ndarray | list[float], focal: float) -> tuple[float, float, float] | None:
    """(yaw, pitch, roll) in degrees from 10 floats ``[x1, y1, ..., x5, y5]`` (source pixels), or
    None when the points are degenerate or the solver fails."""
    pts = np.asarray(landmarks, np.float64).reshape(5, 2)
    eye = float(np.hypot(*(pts[1] - pts[0])))
    if not np.isfinite(pts).all() or eye < 2.0 or focal <= 0:
        return None
    cx, cy = pts.mean(axis=0)
    cam = np.array([[focal, 0.0, cx], [0.0, focal, cy], [0.0, 0.0, 1.0]])
    rvec, tvec = np.zeros((3, 1)), np.array([[0.0], [0.0], [focal * _EYE_MM / eye]])  # frontal start
    try:
        ok, rvec, tvec = cv2.solvePnP(MODEL, pts, cam, None, rvec, tvec, True, cv2.SOLVEPNP_ITERATIVE)
    except cv2.error:
        return None
    if not ok or not np.isfinite(rvec).all():
        return None
    return euler(cv2.Rodrigues(rvec)[0])


def pose_summary(poses: list[tuple[float, float, float]], frontal_yaw: float,
                 frontal_pitch: float) -> dict[str, float | None]:
    """The pose columns: median absolute angles, the largest |yaw| and the frontal share."""
    if not poses:
        return {"yaw_deg": None, "pitch_deg": None, "roll_deg": None, "yaw_max_deg": None, "frontal_frac": None}
    a = np.abs(np.asarray(poses, np.float64))
    med = np.median(a, axis=0)
    frontal = (a[:, 0] <= frontal_yaw) & (a[:, 1] <= frontal_pitch)
    return {"yaw_deg": float(med[0]), "pitch_deg": float(med[1]), "roll_deg": float(med[2]),
            "yaw_max_deg": float(a[:, 0].max()), "frontal_frac": float(frontal.mean())}
