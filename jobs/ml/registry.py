"""Trained models in the MLflow registry: a pyfunc model whose artifact is the trained folder.

``register`` logs the folder a finetune run saved (``backend.json`` + the backend's weights: the tiny
model's state dict, or CogVideoX's LoRA weights) as an MLflow pyfunc model and registers it under
``register_as``. ``load_model_folder(uri)`` turns ``models:/NAME/VERSION``, ``runs:/RUN_ID/model`` or
a local folder back into that folder, which ``facevid.udfs.train.backends.load_trained`` loads; the
pyfunc's ``predict`` does the same for users who load it with ``mlflow.pyfunc.load_model``:
a frame with a ``prompt`` column (and ``first_frame_uri`` for i2v) -> one video array per row.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import mlflow

WEIGHTS = "weights"


class VideoGenerator(mlflow.pyfunc.PythonModel):
    """Pyfunc wrapper: generates one video (float array T x C x H x W in [0, 1]) per input row."""

    def load_context(self, context: Any) -> None:
        from facevid.udfs.train.backends import load_trained

        self.backend = load_trained(context.artifacts[WEIGHTS])

    def predict(self, context: Any, model_input: Any, params: dict[str, Any] | None = None) -> list[Any]:
        import numpy as np
        import torch

        from facevid.udfs.train.backend import GenerationRequest

        params = params or {}
        first = None
        if "first_frame_uri" in model_input:
            first = torch.stack([first_frame(u, int(params.get("size", 64))) for u in model_input["first_frame_uri"]])
        request = GenerationRequest(prompts=[str(p) for p in model_input["prompt"]], first_frames=first,
                                    num_frames=int(params.get("num_frames", 8)), height=int(params.get("size", 64)),
                                    width=int(params.get("size", 64)), steps=int(params.get("steps", 20)),
                                    seed=int(params.get("seed", 0)))
        with torch.no_grad():
            videos = self.backend.generate(request)
        return [np.asarray(v) for v in videos]


def first_frame(uri: str, size: int) -> Any:
    """The first frame of a video or an image file as a float tensor (3, size, size) in [-1, 1] (RGB)."""
    import cv2
    import torch

    from facevid.udfs.media.storage import local_path
    from facevid.udfs.media.video import iter_frames

    with local_path(uri) as path:
        image = cv2.imread(path, cv2.IMREAD_COLOR)
        if image is None:
            image = next(iter_frames(path), (0.0, None))[1]
    if image is None:
        raise ValueError(f"first_frame_uri {uri}: no image or video frame could be read")
    rgb = cv2.resize(image[:, :, ::-1], (size, size), interpolation=cv2.INTER_AREA)
    return torch.from_numpy(rgb.copy()).permute(2, 0, 1).float() / 127.5 - 1


def register(folder: Path, name: str | None, size: int, num_frames: int) -> dict[str, Any]:
    """Log ``folder`` as the active run's pyfunc model ``model`` and register it as ``name`` (when set).
    Its signature declares the generation params (``predict(..., params=...)``; without a params schema
    pyfunc drops them), with the trained size and frame count as defaults."""
    import pandas as pd
    from mlflow.models import infer_signature

    params = {"size": size, "num_frames": num_frames, "steps": 20, "seed": 0}
    signature = infer_signature(pd.DataFrame({"prompt": ["a person talks"]}), params=params)
    info = mlflow.pyfunc.log_model(name="model", python_model=VideoGenerator(), artifacts={WEIGHTS: str(folder)},
                                   signature=signature, pip_requirements=["facevid-lake[ml]"],
                                   registered_model_name=name or None)
    return {"model_uri": info.model_uri, "registered_version": info.registered_model_version}


def resolve_model_uri(uri: str) -> str:
    """``models:/NAME/latest`` -> ``models:/NAME/<its newest version>`` (recorded as evaluated); others as given."""
    parts = uri.split("/")
    if uri.startswith("models:/") and len(parts) == 3 and parts[2] == "latest":
        versions = mlflow.MlflowClient().search_model_versions(f"name = '{parts[1]}'")
        if not versions:
            raise FileNotFoundError(f"evaluate.model_uri: no registered model {parts[1]!r} in this tracking store")
        return f"models:/{parts[1]}/{max(int(v.version) for v in versions)}"
    return uri


def load_model_folder(uri: str, dst: Path) -> Path:
    """The trained folder behind ``uri`` (``models:/...``, ``runs:/...``, or a local folder)."""
    local = Path(uri).expanduser()
    if local.is_dir():
        return local
    if not uri.startswith(("models:/", "runs:/", "m-")):
        raise FileNotFoundError(f"evaluate.model_uri: {uri!r} is neither a local model folder nor an MLflow "
                                "model URI (models:/NAME/VERSION or runs:/RUN_ID/model)")
    root = Path(mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=str(dst)))
    found = [p.parent for p in root.rglob("backend.json")]
    if not found:
        raise FileNotFoundError(f"evaluate.model_uri: {uri} holds no trained model folder (backend.json)")
    return found[0]
