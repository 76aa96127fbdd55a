"""Tiny random-weight models for the metrics tests and bench, written to files and loaded back through
the production loaders (``facevid.udfs.metrics``): feature nets as TorchScript, stand-ins with the call
signatures of NVIDIA's Inception and StyleGAN-V's I3D TorchScript files, a CLIP folder with an offline
tokenizer, and ONNX image scorers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn


def tiny_image_net(path: Path, seed: int = 0) -> str:
    """A random conv net ``(N, 3, S, S)`` float -> ``(N, 16)`` (mean-pooled ReLU responses), TorchScript."""
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Conv2d(3, 16, 5, stride=2), nn.ReLU(), nn.Conv2d(16, 16, 3, stride=2), nn.ReLU(),
                        nn.AdaptiveAvgPool2d(1), nn.Flatten()).eval()
    torch.jit.trace(net, torch.zeros(1, 3, 32, 32)).save(str(path))
    return str(path)


def tiny_video_net(path: Path, seed: int = 0) -> str:
    """A random 3-D conv net ``(N, 3, T, S, S)`` float -> ``(N, 16)``, TorchScript. Its first layer has 8
    motion channels (a random spatial kernel times [-1, +1] over two frames: frame differences) and 8
    appearance channels (the kernel times [1/2, 1/2]), like a video encoder that sees both."""
    torch.manual_seed(seed)
    first = nn.Conv3d(3, 16, (2, 5, 5), stride=(1, 2, 2))
    with torch.no_grad():
        k = torch.randn(16, 3, 1, 5, 5) * 0.2
        first.weight.copy_(torch.cat([k[:8] * torch.tensor([-1.0, 1.0]).view(1, 1, 2, 1, 1),
                                      k[8:] * torch.tensor([0.5, 0.5]).view(1, 1, 2, 1, 1)]))
    net = nn.Sequential(first, nn.ReLU(), nn.Conv3d(16, 16, 3, stride=(1, 2, 2)), nn.ReLU(),
                        nn.AdaptiveAvgPool3d(1), nn.Flatten()).eval()
    torch.jit.trace(net, torch.zeros(1, 3, 8, 32, 32)).save(str(path))
    return str(path)


class InceptionLike(nn.Module):
    """The call signature of NVIDIA's ``inception-2015-12-05.pt``: uint8-range images (N, 3, H, W);
    2048 features with ``return_features``, else 1008 logits. Refuses anything but 299 x 299 uint8."""

    def __init__(self) -> None:
        super().__init__()
        self.proj = nn.Linear(3, 2048)
        self.head = nn.Linear(2048, 1008)

    def forward(self, img: torch.Tensor, return_features: bool = False, use_fp16: bool = False,
                no_output_bias: bool = False) -> torch.Tensor:
        if img.dtype != torch.uint8 or img.shape[1] != 3 or img.shape[2] != 299 or img.shape[3] != 299:
            raise RuntimeError("expected uint8 (N, 3, 299, 299)")
        x = (img.to(torch.float32) - 128.0) / 128.0
        features = self.proj(x.mean(dim=(2, 3)))
        return features if return_features else self.head(features)


class I3dLike(nn.Module):
    """The call signature of StyleGAN-V's ``i3d_torchscript.pt``: uint8 videos (N, 3, T, H, W) with
    ``rescale`` (x / 255 * 2 - 1) and ``resize`` flags; 400 features with ``return_features``."""

    def __init__(self) -> None:
        super().__init__()
        self.proj = nn.Linear(6, 400)

    def forward(self, x: torch.Tensor, rescale: bool = False, resize: bool = False,
                return_features: bool = False) -> torch.Tensor:
        if x.dtype != torch.uint8 or x.shape[1] != 3 or x.shape[3] != 224 or x.shape[4] != 224:
            raise RuntimeError("expected uint8 (N, 3, T, 224, 224)")
        if not (rescale and resize and return_features):
            raise RuntimeError("FVD calls rescale=True, resize=True, return_features=True")
        v = x.to(torch.float32) / 255.0 * 2.0 - 1.0
        motion = (v[:, :, 1:] - v[:, :, :-1]).abs().mean(dim=(2, 3, 4))
        return self.proj(torch.cat([v.mean(dim=(2, 3, 4)), motion], dim=1))


def read_clip(path: str, size: int, end_s: float, every_s: float) -> torch.Tensor:
    """A real video's frames of ``[0, end_s)``, one every ``every_s`` seconds, as uint8 ``(T, 3, size, size)``
    RGB (test data for the metrics; production reads crops with ``facevid.udfs.train.reader``)."""
    import cv2
    import numpy as np

    from facevid.udfs.media.video import iter_frames
    from facevid.udfs.metrics.frames import resize_frames

    frames = [cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB) for _, bgr in iter_frames(path, 0.0, end_s, every_s=every_s)]
    return resize_frames(torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2).contiguous(), size)


def scripted(module: nn.Module, path: Path, seed: int = 0) -> str:
    torch.manual_seed(seed)
    torch.jit.script(module.eval()).save(str(path))
    return str(path)


def _byte_alphabet() -> list[str]:
    """GPT-2/CLIP's byte-to-unicode alphabet (256 printable characters)."""
    keep = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    extra = [b for b in range(256) if b not in keep]
    return [chr(c) for c in keep] + [chr(256 + i) for i in range(len(extra))]


MERGES = [("t", "h"), ("th", "e</w>"), ("a", "n</w>"), ("m", "an</w>"), ("s", "m"), ("i", "l"), ("e", "s</w>")]


def clip_parts(image_size: int, text: dict, vision: dict, projection: int) -> tuple[object, object]:
    """``(CLIPConfig, CLIPProcessor)`` with the offline byte-level BPE tokenizer (``MERGES``)."""
    from facevid.udfs.models.torch_compat import import_torchvision

    import_torchvision()
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPProcessor, CLIPTokenizer

    alphabet = _byte_alphabet()
    tokens = alphabet + [a + "</w>" for a in alphabet] + [a + b for a, b in MERGES]
    vocab = {t: i for i, t in enumerate(tokens + ["<|startoftext|>", "<|endoftext|>"])}
    images = CLIPImageProcessor(size={"shortest_edge": image_size}, crop_size={"height": image_size, "width": image_size})
    processor = CLIPProcessor(image_processor=images, tokenizer=CLIPTokenizer(vocab=vocab, merges=MERGES))
    bos, eos = vocab["<|startoftext|>"], vocab["<|endoftext|>"]
    config = CLIPConfig(
        text_config={"vocab_size": len(vocab), "max_position_embeddings": 77, "projection_dim": projection,
                     "bos_token_id": bos, "eos_token_id": eos, "pad_token_id": eos, **text},
        vision_config={"image_size": image_size, "projection_dim": projection, **vision}, projection_dim=projection)
    return config, processor


def tiny_clip(folder: Path, image_size: int = 32, seed: int = 0) -> Path:
    """A random CLIP (2 layers, width 32, projection 16) saved with ``save_pretrained`` (model and
    processor) into ``folder``."""
    from facevid.udfs.models.torch_compat import import_torchvision

    import_torchvision()
    from transformers import CLIPModel

    small = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2}
    config, processor = clip_parts(image_size, small, {**small, "patch_size": 8}, 16)
    torch.manual_seed(seed)
    CLIPModel(config).save_pretrained(str(folder))
    processor.save_pretrained(str(folder))  # type: ignore[attr-defined]
    return folder


def vit_l14_clip(seed: int = 0) -> tuple[object, object]:
    """openai/clip-vit-large-patch14's architecture (ViT-L/14 at 224, 12-layer 768 text tower, 768
    projection) with random weights, in memory: ``(TensorCLIP model, processor)``."""
    from facevid.udfs.metrics.clip_score import tensor_clip_class

    config, processor = clip_parts(
        224, {"hidden_size": 768, "intermediate_size": 3072, "num_hidden_layers": 12, "num_attention_heads": 12},
        {"hidden_size": 1024, "intermediate_size": 4096, "num_hidden_layers": 24, "num_attention_heads": 16,
         "patch_size": 14}, 768)
    torch.manual_seed(seed)
    return tensor_clip_class()(config).eval(), processor


def onnx_scorer(path: Path, kind: str, side: int | str = "S") -> str:
    """An ONNX image scorer ``(N, 3, H, W) -> (N, 1)``: ``kind="sharpness"`` is the mean absolute
    Laplacian response of the grey image (blur lowers it), ``"brightness"`` the mean pixel value.
    ``side``: a fixed input side (batch 1) or a symbolic one (any batch, any size)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    batch = 1 if isinstance(side, int) else "N"
    if kind == "sharpness":
        lap = np.array([[0, 1, 0], [1, -4, 1], [0, 1, 0]], np.float32)
        weight = np.stack([lap / 3.0] * 3)[None]  # (1, 3, 3, 3): grey Laplacian
        nodes = [helper.make_node("Conv", ["x", "w"], ["c"]), helper.make_node("Abs", ["c"], ["a"]),
                 helper.make_node("GlobalAveragePool", ["a"], ["p"]), helper.make_node("Flatten", ["p"], ["y"])]
        init = [numpy_helper.from_array(weight, "w")]
    elif kind == "brightness":
        nodes = [helper.make_node("ReduceMean", ["x"], ["m"], axes=[1, 2, 3], keepdims=1),
                 helper.make_node("Flatten", ["m"], ["y"])]
        init = []
    else:
        raise ValueError(kind)
    graph = helper.make_graph(nodes, kind, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, 3, side, side])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch, 1])], init)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8), str(path))
    return str(path)
