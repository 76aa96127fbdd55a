"""A pluggable facial-emotion classifier: any ONNX model that maps a face image to class scores.

The default layout is FER+ (the ONNX model zoo's ``emotion-ferplus-8``): input ``1x1x64x64`` gray
pixels 0-255, output 8 scores in ``FER_PLUS_LABELS`` order, which are the paper's 8 emotions.
Other models declare their ``labels`` (vocabulary terms, in output order), input channels (1 = gray,
3 = RGB) and size are read from the model, and pixels are scaled by ``(x - mean) / std``. The face is
the ``box`` (fractions of the crop: x0, y0, x1, y1) of each crop frame; the clip's emotion is the
arg-max of the mean softmax over its frames.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from facevid.udfs.models.scorers import onnx_session

FER_PLUS_LABELS = ("Neutral", "Happy", "Surprise", "Sad", "Angry", "Disgust", "Fear", "Contempt")


@dataclass(frozen=True)
class EmotionSettings:
    path: str
    labels: tuple[str, ...] = FER_PLUS_LABELS
    box: tuple[float, float, float, float] = (0.25, 0.15, 0.75, 0.65)  # the face inside a crop (expand 2)
    mean: float = 0.0
    std: float = 1.0


class EmotionClassifier:
    """Loaded once per executor process (ONNX Runtime sessions are safe to share between threads)."""

    def __init__(self, settings: EmotionSettings) -> None:
        self.settings = settings
        self.session = onnx_session(settings.path)
        inp = self.session.get_inputs()[0]
        self.input = inp.name
        shape = list(inp.shape)
        self.channels = shape[1] if len(shape) == 4 and isinstance(shape[1], int) else 1
        self.size = (shape[3] if isinstance(shape[3], int) else 64, shape[2] if isinstance(shape[2], int) else 64)
        n_out = self.session.get_outputs()[0].shape[-1]
        if isinstance(n_out, int) and n_out != len(settings.labels):
            raise ValueError(f"emotion model {settings.path} has {n_out} outputs but {len(settings.labels)} labels "
                             f"are declared (stages.caption.params.emotion_labels)")

    def _input(self, frame: np.ndarray) -> np.ndarray:
        h, w = frame.shape[:2]
        x0, y0, x1, y1 = self.settings.box
        face = frame[int(y0 * h):max(int(y1 * h), int(y0 * h) + 1), int(x0 * w):max(int(x1 * w), int(x0 * w) + 1)]
        face = cv2.resize(face, self.size, interpolation=cv2.INTER_AREA)
        if self.channels == 1:
            x = cv2.cvtColor(face, cv2.COLOR_RGB2GRAY)[None].astype(np.float32)
        else:
            x = face.transpose(2, 0, 1).astype(np.float32)
        return (x - np.float32(self.settings.mean)) / np.float32(self.settings.std)

    def classify(self, frames: list[np.ndarray]) -> tuple[str | None, dict[str, float]]:
        """``(label, {label: mean probability})`` over RGB crop frames (``(None, {})`` without frames)."""
        if not frames:
            return None, {}
        batch = np.stack([self._input(f) for f in frames])
        logits = np.concatenate([np.asarray(self.session.run(None, {self.input: x[None]})[0], np.float64)
                                 for x in batch]).reshape(len(frames), -1)
        e = np.exp(logits - logits.max(axis=1, keepdims=True))
        probs = (e / e.sum(axis=1, keepdims=True)).mean(axis=0)
        scores = {label: round(float(p), 4) for label, p in zip(self.settings.labels, probs, strict=True)}
        return self.settings.labels[int(np.argmax(probs))], scores
