"""torchvision next to a torch it was not built for (the CPU torch wheel of the embedded default).

PyPI's torchvision wheels are CUDA builds: with the CPU torch wheel their ``_C`` extension does
not load, no ``torchvision::*`` operator exists, and ``import torchvision`` fails at
``register_fake("torchvision::nms")`` ("operator torchvision::nms does not exist"). The image
and video processors of transformers' VLMs only use torchvision's pure-torch transforms, so
``import_torchvision`` defines the schemas of the operators torchvision's import registers fake
kernels for (``nms``, ``qnms``; calling them still raises: no kernel) when the extension cannot
load, then imports torchvision. Where the extension loads (a matching torch/torchvision pair, a
GPU image) nothing is defined and torchvision is imported as is.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import importlib.util
import os
import sys
import threading
from types import ModuleType
from typing import Any

# Schemas as torchvision's C++ extension declares them (csrc/ops/nms.cpp and its quantized twin).
_SCHEMAS = {
    "nms": "nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms": "qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
}
_lock = threading.Lock()
_library: Any = None  # the torch.library fragment; kept alive (its destructor would drop the schemas)
_stubbed = False


def _extension_path() -> str | None:
    spec = importlib.util.find_spec("torchvision")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("torchvision is not installed (pip install the `vlm` extra)")
    folder = list(spec.submodule_search_locations)[0]
    for suffix in importlib.machinery.EXTENSION_SUFFIXES:
        path = os.path.join(folder, "_C" + suffix)
        if os.path.exists(path):
            return path
    return None


def _has_op(name: str) -> bool:
    import torch

    try:
        getattr(torch.ops.torchvision, name)
    except (AttributeError, RuntimeError):
        return False
    return True


def _extension_loads() -> bool:
    """Whether torchvision's C++ extension loads into this torch (loading it is what torchvision's
    own import does first; dlopen of the same file again is a no-op)."""
    import torch

    path = _extension_path()
    if path is None:
        return False
    try:
        torch.ops.load_library(path)
    except (OSError, ImportError, RuntimeError):
        return False
    return True


def import_torchvision() -> ModuleType:
    """``torchvision``, imported so that it works on CPU torch (see the module docstring).
    Idempotent and thread-safe; ``stubbed_ops()`` says whether schemas had to be defined."""
    global _library, _stubbed
    with _lock:
        module = sys.modules.get("torchvision")
        if module is not None and hasattr(module, "__version__"):
            return module
        import torch

        if not _has_op("nms") and not _extension_loads():
            missing = [name for name in _SCHEMAS if not _has_op(name)]
            if missing:
                _library = torch.library.Library("torchvision", "FRAGMENT")
                for name in missing:
                    _library.define(_SCHEMAS[name])
                _stubbed = True
        return importlib.import_module("torchvision")


def stubbed_ops() -> bool:
    """True when ``import_torchvision`` defined the operator schemas itself (CPU torch)."""
    return _stubbed
