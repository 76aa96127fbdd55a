"""Face restorers behind one call: ``restore(faces)`` takes aligned RGB faces ``(N, S, S, 3)`` uint8
and returns restored faces of the same shape.

- ``enhance`` (the CPU default, named for what it is): an edge-preserving bilateral denoise and an
  unsharp mask on the aligned face. No weights; it removes compression noise and lifts detail a
  little, it does not invent any.
- ``spandrel``: a learned restorer from ``model_path`` loaded by spandrel's ``ModelLoader`` (with
  ``spandrel_extra_arches.install()``, which adds CodeFormer). Supported: GFPGAN (v1 clean
  architecture; Apache-2.0), RestoreFormer (the arch code spandrel carries is under GFPGAN's
  Apache-2.0) and CodeFormer (S-Lab License 1.0, non-commercial: refused unless
  ``allow_noncommercial``). Any other architecture spandrel detects is refused, naming it. The
  three were trained on faces in [-1, 1]; spandrel's own call passes [0, 1] to GFPGAN and
  CodeFormer, so the model is called directly: ``model(x)[0]`` with ``x`` in [-1, 1], GFPGAN with
  ``randomize_noise=False`` (its fixed noise buffers: the same face gives the same output, no
  frame-to-frame noise), CodeFormer with ``weight=fidelity`` (its ``w``: 0 = most restoration,
  1 = most faithful to the input). Faces go to the device ``frame_batch`` at a time under
  ``torch.inference_mode``; on CUDA in float16 where spandrel says the arch supports it, else
  bfloat16 where supported (``dtype: auto``).
- ``none``: restoration off; the stage writes no file (the row says so).
"""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Any

import cv2
import numpy as np

from facevid.udfs.models.runtime import weights_hash
from facevid.udfs.models.weights import resolve_file

PARAM = "stages.restore.params"
WHAT = "a GFPGAN, RestoreFormer or CodeFormer checkpoint (.pth, .ckpt or .safetensors)"
SUPPORTED_ARCHS = ("GFPGAN", "RestoreFormer", "CodeFormer")
NONCOMMERCIAL = {"CodeFormer": "S-Lab License 1.0 (non-commercial use only)"}
_DTYPES = {"float32": "float32", "float16": "float16", "bfloat16": "bfloat16"}


class EnhanceRestorer:
    """Bilateral denoise (``denoise`` = sigma colour, 0 = off) + unsharp mask (``sharpen`` amount
    over a Gaussian of ``sharpen_sigma`` px at the aligned size)."""

    backend = "enhance"
    arch = "bilateral+unsharp"
    weights_hash: str | None = None
    on_device = False

    def __init__(self, denoise: float, sharpen: float, sharpen_sigma: float) -> None:
        self.denoise, self.sharpen, self.sigma = float(denoise), float(sharpen), float(sharpen_sigma)

    def restore_one(self, face: np.ndarray) -> np.ndarray:
        out = cv2.bilateralFilter(face, 5, self.denoise, 3.0) if self.denoise > 0 else face
        if self.sharpen > 0:
            blur = cv2.GaussianBlur(out, (0, 0), self.sigma)
            out = cv2.addWeighted(out, 1.0 + self.sharpen, blur, -self.sharpen, 0)
        return out

    def restore(self, faces: np.ndarray) -> np.ndarray:
        return np.stack([self.restore_one(f) for f in faces]) if len(faces) else faces


def _spandrel() -> Any:
    """spandrel with CodeFormer registered (torchvision first: see ``import_torchvision``)."""
    from facevid.udfs.models.torch_compat import import_torchvision

    import_torchvision()
    import spandrel
    import spandrel_extra_arches

    spandrel_extra_arches.install(ignore_duplicates=True)
    return spandrel


def check_arch(arch: str, allow_noncommercial: bool) -> None:
    """ValueError for an architecture the stage does not run, or a non-commercial one not allowed."""
    if arch not in SUPPORTED_ARCHS:
        raise ValueError(f"{PARAM}.model_path holds a {arch} model (as spandrel detects it); the restore stage "
                         f"runs {', '.join(SUPPORTED_ARCHS)}")
    if arch in NONCOMMERCIAL and not allow_noncommercial:
        raise ValueError(f"{PARAM}.allow_noncommercial: {arch} is under the {NONCOMMERCIAL[arch]}; set "
                         f"allow_noncommercial: true to confirm your use is non-commercial")


def detect_arch(path: str) -> str:
    """The architecture spandrel detects in the weights file ``path`` (no model is built);
    ``unknown`` when none matches."""
    spandrel = _spandrel()
    state = spandrel.ModelLoader().load_state_dict_from_file(path)
    for support in spandrel.MAIN_REGISTRY.architectures("detection"):
        if support.architecture.detect(state):
            return str(support.architecture.id)
    return "unknown"


def check_weights(model_path: str | None, allow_noncommercial: bool, cache_dir: str | None = None) -> str:
    """Resolve the weights file (one clear error naming ``model_path``), detect and vet its arch."""
    path = resolve_file(model_path, f"{PARAM}.model_path", WHAT, cache_dir)
    arch = detect_arch(str(path))
    check_arch(arch, allow_noncommercial)
    return arch


def pick_dtype(requested: str, device: str, supports_half: bool, supports_bf16: bool) -> str:
    """``auto``: float16 on CUDA where supported, else bfloat16 where supported, else float32 (the
    CPU always float32). An explicit dtype the arch does not support is a ValueError."""
    if requested == "auto":
        if not device.startswith("cuda"):
            return "float32"
        return "float16" if supports_half else "bfloat16" if supports_bf16 else "float32"
    if requested not in _DTYPES:
        raise ValueError(f"{PARAM}.dtype must be auto, float32, float16 or bfloat16, got {requested!r}")
    if (requested == "float16" and not supports_half) or (requested == "bfloat16" and not supports_bf16):
        raise ValueError(f"{PARAM}.dtype: the model does not support {requested} (spandrel); use auto or float32")
    return requested


class SpandrelRestorer:
    """A learned face restorer (see the module docstring), one per executor process and device."""

    backend = "spandrel"
    on_device = True

    def __init__(self, model_path: str | None, device: str, dtype: str = "auto", fidelity: float = 0.5,
                 frame_batch: int = 8, face_size: int = 512, allow_noncommercial: bool = False) -> None:
        import torch

        spandrel = _spandrel()
        path = resolve_file(model_path, f"{PARAM}.model_path", WHAT)
        self.weights_hash = weights_hash(str(path))
        descriptor = spandrel.ModelLoader().load_from_file(str(path))
        self.arch = str(descriptor.architecture.id)
        check_arch(self.arch, allow_noncommercial)
        if not descriptor.size_requirements.check(face_size, face_size):
            raise ValueError(f"{PARAM}.face_size: {self.arch} needs faces of {descriptor.size_requirements} "
                             f"(spandrel), got {face_size}")
        self.dtype = pick_dtype(dtype, device, descriptor.supports_half, descriptor.supports_bfloat16)
        self.device, self.fidelity, self.frame_batch = device, float(fidelity), int(frame_batch)
        self.torch_dtype = getattr(torch, self.dtype)
        self.model = descriptor.model.to(device=device, dtype=self.torch_dtype).eval()

    def _forward(self, x: Any) -> Any:
        if self.arch == "CodeFormer":
            return self.model(x, weight=self.fidelity)[0]
        if self.arch == "GFPGAN":
            return self.model(x, return_rgb=False, randomize_noise=False)[0]
        return self.model(x)[0]

    def restore(self, faces: np.ndarray) -> np.ndarray:
        import torch

        out = np.empty_like(faces)
        with torch.inference_mode():
            for i in range(0, len(faces), self.frame_batch):
                chunk = torch.from_numpy(np.ascontiguousarray(faces[i:i + self.frame_batch])).to(self.device)
                x = chunk.permute(0, 3, 1, 2).contiguous().to(self.torch_dtype) / 127.5 - 1.0
                y = self._forward(x).float().clamp_(-1, 1)
                y = ((y + 1.0) * 127.5).round_().to(torch.uint8).permute(0, 2, 3, 1)
                out[i:i + len(chunk)] = y.cpu().numpy()
        return out


class NoRestorer:
    """``backend: none``: nothing is loaded and nothing restored."""

    backend = "none"
    arch = None
    weights_hash = None
    on_device = False

    def restore(self, faces: np.ndarray) -> np.ndarray:
        return faces


def load_restorer(params: Any, device: str) -> Any:
    """The restorer ``params.backend`` names (``RestoreParams``)."""
    if params.backend == "spandrel":
        return SpandrelRestorer(params.model_path, device, params.dtype, params.fidelity, params.frame_batch,
                                params.face_size, params.allow_noncommercial)
    if params.backend == "enhance":
        return EnhanceRestorer(params.denoise, params.sharpen, params.sharpen_sigma)
    return NoRestorer()


def restorer_key(params: Any, device: str) -> tuple:
    """One restorer per executor process and configuration (every parameter it keeps)."""
    return ("restore", params.backend, json.dumps(asdict(params), sort_keys=True, default=str), device)
