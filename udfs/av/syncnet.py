"""SyncNet lip-sync backend (Chung & Zisserman 2016, "Out of time: automated lip sync in the
wild"), in-tree, weights from ``stages.av.params.syncnet_path``.

``SyncNetModel`` is the architecture of the public reference implementation (joonson/syncnet_python,
``SyncNetModel.py``) with the same module and parameter names and shapes, so its released
``syncnet_v2.model`` state dict loads strictly (``num_batches_tracked`` buffers, which files saved
before PyTorch 0.4.1 lack, are the only keys allowed to be missing). Its inputs are the reference's:
windows of 5 face crops at 25 fps (0.2 s; ``B x 3 x 5 x 224 x 224``, **BGR** 0..255 as OpenCV
reads them) and 13 x 20 MFCCs of the same 0.2 s (100 Hz, computed on int16-scaled 16 kHz audio).

Scoring follows ``SyncNetInstance.evaluate``: one lip and one audio embedding per 5-frame window
(video window ``i`` = frames ``i..i+4``, audio window ``i`` = MFCC columns ``4i..4i+19``), the
Euclidean distance between video window ``i`` and audio window ``i + d`` for every offset ``d`` in
``-vshift..vshift`` frames, averaged over ``i`` into a curve; the offset is its argmin and the
confidence ``median(curve) - min(curve)`` (the reference's; in distance units of the embedding,
>= 0, higher = a sharper minimum; with the released weights values above ~3 are usually in sync).

Conventions. ``offset_ms = d * 40``: positive = the audio is later than the video (the sound of
video window ``i`` is found at audio window ``i + d``). The reference prints ``vshift - argmin``,
i.e. ``-d``: its ``AV offset`` is the negative of ours. ``curve[k]`` is the mean distance at
``d = k - vshift``. Unlike the reference, which pads the audio embeddings with zero vectors and
averages those distances too, the curve averages only the overlapping window pairs, so each
offset needs ``min_overlap`` of them: a clip shorter than ``vshift + min_overlap`` windows
(0.96 s at the defaults) gets nulls with a note, as does a clip without audio or face crops.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from fractions import Fraction

import cv2
import numpy as np
import torch
from scipy.signal import resample_poly
from torch import nn

from facevid.udfs.av.mfcc import mfcc
from facevid.udfs.av.sync_api import SyncInput, SyncResult
from facevid.udfs.media.storage import local_path

PARAM = "stages.av.params.syncnet_path"
FPS = 25  # the rate SyncNet was trained at: frames are resampled to it
SAMPLE_RATE = 16000
WINDOW = 5  # video frames per window (0.2 s)
MFCC_STEP = 4  # MFCC columns (100 Hz) per video frame (25 fps)
MFCC_WINDOW = WINDOW * MFCC_STEP  # 20
SIZE = 224  # face crop side
_INT16 = 32768.0  # the reference computed MFCCs on int16 samples

# Conv blocks of the two towers: (in, out, kernel, stride, padding, max-pool kwargs or None). Each
# block is Conv, BatchNorm, ReLU[, MaxPool], flattened into one Sequential, which reproduces the
# reference's layer indices (netcnnaud.0, .1, ... .18).
_AUD = [
    (1, 64, (3, 3), (1, 1), (1, 1), {"kernel_size": (1, 1), "stride": (1, 1)}),
    (64, 192, (3, 3), (1, 1), (1, 1), {"kernel_size": (3, 3), "stride": (1, 2)}),
    (192, 384, (3, 3), (1, 1), (1, 1), None),
    (384, 256, (3, 3), (1, 1), (1, 1), None),
    (256, 256, (3, 3), (1, 1), (1, 1), {"kernel_size": (3, 3), "stride": (2, 2)}),
    (256, 512, (5, 4), (1, 1), (0, 0), None),
]
_LIP = [
    (3, 96, (5, 7, 7), (1, 2, 2), 0, {"kernel_size": (1, 3, 3), "stride": (1, 2, 2)}),
    (96, 256, (1, 5, 5), (1, 2, 2), (0, 1, 1), {"kernel_size": (1, 3, 3), "stride": (1, 2, 2), "padding": (0, 1, 1)}),
    (256, 256, (1, 3, 3), (1, 1, 1), (0, 1, 1), None),
    (256, 256, (1, 3, 3), (1, 1, 1), (0, 1, 1), None),
    (256, 256, (1, 3, 3), (1, 1, 1), (0, 1, 1), {"kernel_size": (1, 3, 3), "stride": (1, 2, 2)}),
    (256, 512, (1, 6, 6), (1, 1, 1), 0, None),
]


def _tower(blocks: list[tuple], conv: type, norm: type, pool: type) -> nn.Sequential:
    layers: list[nn.Module] = []
    for cin, cout, kernel, stride, padding, pooling in blocks:
        layers += [conv(cin, cout, kernel_size=kernel, stride=stride, padding=padding), norm(cout), nn.ReLU(inplace=True)]
        if pooling is not None:
            layers.append(pool(**pooling))
    return nn.Sequential(*layers)


def _head(dim: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(512, 512), nn.BatchNorm1d(512), nn.ReLU(), nn.Linear(512, dim))


class SyncNetModel(nn.Module):
    """The reference SyncNet (``S`` in syncnet_python): an audio tower over 1 x 13 x 20 MFCCs and a
    lip tower over 3 x 5 x 224 x 224 BGR crops, each ending in a ``dim``-d embedding."""

    def __init__(self, dim: int = 1024) -> None:
        super().__init__()
        self.netcnnaud = _tower(_AUD, nn.Conv2d, nn.BatchNorm2d, nn.MaxPool2d)
        self.netfcaud = _head(dim)
        self.netfclip = _head(dim)
        self.netcnnlip = _tower(_LIP, nn.Conv3d, nn.BatchNorm3d, nn.MaxPool3d)

    def forward_aud(self, mfccs: torch.Tensor) -> torch.Tensor:
        """``(B, 1, 13, 20)`` MFCC windows -> ``(B, dim)``."""
        return self.netfcaud(self.netcnnaud(mfccs).flatten(1))

    def forward_lip(self, frames: torch.Tensor) -> torch.Tensor:
        """``(B, 3, 5, 224, 224)`` BGR 0..255 windows -> ``(B, dim)``."""
        return self.netfclip(self.netcnnlip(frames).flatten(1))


def _weights_error(path: str | None, why: str) -> str:
    return (f"syncnet weights {path!r}: {why}; set {PARAM} to a SyncNet state dict (.model/.pt/.pth or "
            ".safetensors; local, s3:// or dbfs:/), e.g. syncnet_v2.model from joonson/syncnet_python")


def _read(path: str, local: str) -> object:
    if not os.path.isfile(local):
        raise FileNotFoundError(_weights_error(path, "no such file"))
    try:
        if local.endswith(".safetensors"):
            from safetensors.torch import load_file

            return load_file(local)
        return torch.load(local, map_location="cpu", weights_only=True)
    except OSError as exc:
        raise FileNotFoundError(_weights_error(path, f"unreadable ({exc})")) from exc
    except Exception as exc:  # pickle/zip/safetensors errors, a missing safetensors package
        raise ValueError(_weights_error(path, f"could not be read as a state dict ({type(exc).__name__}: "
                                              f"{str(exc)[:200]})")) from exc


def read_state_dict(path: str | None) -> dict[str, torch.Tensor]:
    """The tensors of a SyncNet weights file (a state dict, optionally under ``state_dict`` /
    ``model``, keys optionally prefixed ``module.`` or ``__S__.``). Raises ``FileNotFoundError``
    (missing or unreadable, an S3 download that fails included) or ``ValueError`` (not a state
    dict), both naming ``PARAM``."""
    if not path:
        raise FileNotFoundError(_weights_error(path, "no path configured"))
    try:
        with local_path(str(path)) as local:
            loaded = _read(str(path), local)
    except Exception as exc:  # ours (already clear), or an S3 download that failed
        if PARAM in str(exc):
            raise
        raise FileNotFoundError(_weights_error(path, f"unreadable ({type(exc).__name__}: {str(exc)[:200]})")) from exc
    for key in ("state_dict", "model"):
        if isinstance(loaded, dict) and isinstance(loaded.get(key), dict):
            loaded = loaded[key]
    if not isinstance(loaded, dict) or not all(isinstance(v, torch.Tensor) for v in loaded.values()):
        raise ValueError(_weights_error(path, f"not a state dict of tensors (got {type(loaded).__name__})"))
    return {k.removeprefix("module.").removeprefix("__S__."): v for k, v in loaded.items()}


def _brief(keys: list[str], most: int = 6) -> str:
    return ", ".join(keys[:most]) + (f", ... ({len(keys)} in all)" if len(keys) > most else "")


def load_syncnet(path: str | None, device: str = "cpu") -> SyncNetModel:
    """``SyncNetModel`` with the weights at ``path``, in eval mode on ``device``. A state dict that
    does not fit the architecture (missing, unexpected or mis-shaped keys) is a ``ValueError``."""
    state = read_state_dict(path)
    model = SyncNetModel()
    own = model.state_dict()
    missing = [k for k in own if k not in state and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state if k not in own]
    shapes = [f"{k} {tuple(state[k].shape)} != {tuple(v.shape)}" for k, v in own.items()
              if k in state and state[k].shape != v.shape]
    if missing or unexpected or shapes:
        parts = [f"{name} keys: {_brief(keys)}" for name, keys in
                 (("missing", missing), ("unexpected", unexpected), ("mis-shaped", shapes)) if keys]
        raise ValueError(_weights_error(path, "does not fit the SyncNet architecture (" + "; ".join(parts) + ")"))
    model.load_state_dict(state, strict=False)  # only num_batches_tracked may be absent (checked above)
    return model.to(device).eval()


def save_random_weights(path: str, seed: int = 0) -> str:
    """Save a randomly initialised ``SyncNetModel`` state dict to ``path`` (safetensors when it ends
    in ``.safetensors``, else ``torch.save``); the global RNG is left as it was. Returns ``path``."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        state = SyncNetModel().state_dict()
    if path.endswith(".safetensors"):
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in state.items()}, path)
    else:
        torch.save(state, path)
    return path


def parameter_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@dataclass
class _Clip:
    frames: torch.Tensor  # (T, 224, 224, 3) uint8 RGB at 25 fps (the caller's array when it can be)
    mfcc: torch.Tensor  # (13, M) float32
    windows: int


def _at_25fps(faces: np.ndarray, fps: float) -> np.ndarray:
    """The frame shown at each ``k / 25`` s (nearest earlier frame); as is when already 25 fps."""
    if abs(fps - FPS) < 1e-3:
        return faces
    n = int(math.floor(len(faces) * FPS / fps + 1e-6))
    idx = np.minimum(np.floor(np.arange(n) * fps / FPS + 1e-6).astype(np.int64), len(faces) - 1)
    return faces[idx]


def _to_16k(audio: np.ndarray, rate: int) -> np.ndarray:
    if rate == SAMPLE_RATE:
        return audio
    ratio = Fraction(SAMPLE_RATE, int(rate))
    return resample_poly(audio, ratio.numerator, ratio.denominator).astype(np.float32)


class SyncNetBackend:
    """``SyncBackend`` ``syncnet``: the learned SyncNet offset search over face crops and MFCCs.

    ``batch`` windows go through the model at once (the windows of all clips of a ``score`` call,
    in order); ``vshift`` is the search range in frames at 25 fps (±600 ms at 15); each offset is
    averaged over at least ``min_overlap`` window pairs. ``confidence`` is SyncNet's
    ``median - min`` of the distance curve (>= 0). Module docstring: conventions."""

    name = "syncnet"
    needs_faces = True

    def __init__(self, weights_path: str, device: str = "cpu", batch: int = 64, vshift: int = 15,
                 min_overlap: int = 5) -> None:
        if batch < 1 or vshift < 0 or min_overlap < 1:
            raise ValueError(f"syncnet: batch {batch} and min_overlap {min_overlap} must be >= 1, vshift {vshift} >= 0")
        self.device = torch.device(device)
        self.model = load_syncnet(weights_path, device)
        self.weights_path, self.batch, self.vshift, self.min_overlap = weights_path, batch, vshift, min_overlap

    @property
    def min_windows(self) -> int:
        return self.vshift + self.min_overlap

    def score(self, batch: list[SyncInput]) -> list[SyncResult]:
        prepared = [self._prepare(item) for item in batch]
        clips = [p for p in prepared if isinstance(p, _Clip)]
        embedded = iter(self._embed(clips))
        return [p if isinstance(p, SyncResult) else self._search(*next(embedded)) for p in prepared]

    def _prepare(self, item: SyncInput) -> _Clip | SyncResult:
        """The clip at 25 fps and its MFCCs, or the null result that says why it cannot be scored."""
        if item.audio is None or np.size(item.audio) == 0:
            return SyncResult(None, None, "no audio")
        if item.faces is None or len(item.faces) == 0:
            return SyncResult(None, None, "no face crops")
        faces, audio = np.asarray(item.faces), np.asarray(item.audio)
        if faces.ndim != 4 or faces.shape[-1] != 3:
            return SyncResult(None, None, f"face crops are not (T, H, W, 3) RGB: shape {faces.shape}")
        if audio.ndim != 1:
            return SyncResult(None, None, f"audio is not mono: shape {audio.shape}")
        if not (math.isfinite(item.fps) and item.fps > 0 and item.sample_rate > 0):
            return SyncResult(None, None, f"bad clock: fps {item.fps}, sample rate {item.sample_rate}")
        audio = _to_16k(np.nan_to_num(audio.astype(np.float32), nan=0.0, posinf=1.0, neginf=-1.0),
                        int(item.sample_rate))
        if np.max(np.abs(audio)) < 1 / _INT16:
            return SyncResult(None, None, "silent audio")
        faces = _at_25fps(faces, float(item.fps))
        cols = mfcc(audio * _INT16, SAMPLE_RATE).T.astype(np.float32)  # (13, M)
        windows = min(len(faces) - WINDOW + 1, (cols.shape[1] - MFCC_WINDOW) // MFCC_STEP + 1)
        if windows < self.min_windows:
            return SyncResult(None, None, f"too short for syncnet: {max(windows, 0)} windows of 0.2 s at 25 fps "
                                          f"over audio and video, needs {self.min_windows} (vshift {self.vshift})")
        faces = faces[: windows + WINDOW - 1]
        if faces.dtype != np.uint8:
            faces = np.clip(faces, 0, 255).astype(np.uint8)
        if faces.shape[1:3] != (SIZE, SIZE):
            faces = np.stack([cv2.resize(f, (SIZE, SIZE), interpolation=cv2.INTER_AREA) for f in faces])
        return _Clip(torch.from_numpy(np.ascontiguousarray(faces)), torch.from_numpy(cols), windows)

    @torch.inference_mode()
    def _embed(self, clips: list[_Clip]) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """(lip, audio) embeddings ``(windows, dim)`` per clip; all windows in chunks of ``batch``."""
        index = [(c, i) for c, clip in enumerate(clips) for i in range(clip.windows)]
        lips: list[torch.Tensor] = []
        auds: list[torch.Tensor] = []
        for start in range(0, len(index), self.batch):
            chunk = index[start:start + self.batch]
            video = torch.stack([clips[c].frames[i:i + WINDOW] for c, i in chunk]).to(self.device)
            video = video.flip(-1).permute(0, 4, 1, 2, 3).float()  # (B, 5, H, W, RGB) -> (B, BGR, 5, H, W)
            sound = torch.stack([clips[c].mfcc[:, i * MFCC_STEP:i * MFCC_STEP + MFCC_WINDOW] for c, i in chunk])
            lips.append(self.model.forward_lip(video).float().cpu())
            auds.append(self.model.forward_aud(sound.unsqueeze(1).to(self.device)).float().cpu())
        if not index:
            return []
        sizes = [clip.windows for clip in clips]
        return list(zip(torch.cat(lips).split(sizes), torch.cat(auds).split(sizes), strict=True))

    def _search(self, lip: torch.Tensor, aud: torch.Tensor) -> SyncResult:
        curve = offset_curve(lip, aud, self.vshift)
        if not np.isfinite(curve).all():
            return SyncResult(None, None, "syncnet embeddings are not finite", curve.tolist())
        best = int(np.argmin(curve))
        return SyncResult(offset_ms=float((best - self.vshift) * 1000 / FPS),
                          confidence=float(np.median(curve) - curve[best]), curve=curve.tolist())


def offset_curve(lip: torch.Tensor, aud: torch.Tensor, vshift: int) -> np.ndarray:
    """Mean distance between video window ``i`` and audio window ``i + d`` over the overlapping
    windows, for ``d = -vshift..vshift`` (index ``d + vshift``); positive ``d`` = audio later."""
    n = len(lip)
    out = []
    for d in range(-vshift, vshift + 1):
        a, b = lip[max(0, -d):n - max(0, d)], aud[max(0, d):n - max(0, -d)]
        out.append(float(nn.functional.pairwise_distance(a, b).mean()) if len(a) else math.nan)
    return np.asarray(out)
