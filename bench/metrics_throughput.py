"""Throughput of the evaluation metrics' models at real size, random weights (speed does not depend on them).

    python bench/metrics_throughput.py [--models inception,i3d,clip,frechet] [--image-batches 1,8,32]
        [--video-batches 1,4] [--clip-batches 1,8] [--frames 16] [--resolution 512] [--rounds 2]
        [--device auto] [--threads N] [--out FILE]

- ``inception``: torchvision's InceptionV3 (the FID network's architecture and cost), saved as a state
  dict and loaded by ``load_extractor`` (format ``torchvision-inception``); uint8 frames at
  ``--resolution`` go in, so the 512 -> 299 resize is timed too. frames/s per batch size.
- ``i3d``: the in-tree InceptionI3d (12.7 M params) the same way (format ``i3d``), ``--frames`` x
  ``--resolution``^2 uint8 videos, resized to 224; videos/s per batch size (videos per call).
- ``clip``: openai/clip-vit-large-patch14's architecture (``tests/tiny_metrics.vit_l14_clip``) in
  torchmetrics' ``CLIPScore`` through ``ClipScorer``: one video of ``batch`` frames per call; frames/s.
- ``frechet``: ``frechet_distance`` at d = 400 (I3D) and 2048 (Inception), and ``FeatureAccumulator``
  updates of 1024 rows: seconds.
Per batch size: one warm-up call, then ``--rounds`` timed calls. Prints a table, writes JSON to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))


def _timed(fn: Callable[[], Any], rounds: int, cuda: bool) -> float:
    import torch

    fn()  # warm-up
    if cuda:
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(rounds):
        fn()
    if cuda:
        torch.cuda.synchronize()
    return (time.perf_counter() - t0) / rounds


def _extractor(kind: str, tmp: Path, device: str) -> Any:
    import torch

    from facevid.udfs.metrics.extractors import load_extractor
    from facevid.udfs.metrics.i3d import InceptionI3d

    torch.manual_seed(0)
    if kind == "i3d":
        net = InceptionI3d()
    else:
        from facevid.udfs.models.torch_compat import import_torchvision

        import_torchvision()
        from torchvision.models import inception_v3

        net = inception_v3(weights=None, aux_logits=False, init_weights=False)
    torch.save(net.state_dict(), tmp / f"{kind}.pt")
    return load_extractor(str(tmp / f"{kind}.pt"), f"bench.{kind}", "video" if kind == "i3d" else "image", device=device)


def bench_extractor(kind: str, batches: list[int], args: argparse.Namespace, tmp: Path, device: str) -> list[dict]:
    import torch

    t0 = time.perf_counter()
    extractor = _extractor(kind, tmp, device)
    load_s = time.perf_counter() - t0
    rows = []
    for batch in batches:
        shape = (batch, args.frames, 3, args.resolution, args.resolution) if kind == "i3d" else \
            (batch, 3, args.resolution, args.resolution)
        x = torch.randint(0, 256, shape, dtype=torch.uint8, device=device)
        seconds = _timed(lambda x=x: extractor(x), args.rounds, device == "cuda")
        unit = "videos" if kind == "i3d" else "frames"
        rows.append({"model": kind, "batch": batch, "unit": unit, "seconds_per_call": round(seconds, 4),
                     f"{unit}_per_s": round(batch / seconds, 2), "input": list(shape), "load_s": round(load_s, 2)})
    return rows


def bench_clip(batches: list[int], args: argparse.Namespace, device: str) -> list[dict]:
    import torch
    from tiny_metrics import vit_l14_clip

    from facevid.udfs.metrics.clip_score import ClipScorer

    t0 = time.perf_counter()
    model, processor = vit_l14_clip()
    scorer = ClipScorer(model.to(device), processor, device=device, resolution=args.resolution)
    load_s = time.perf_counter() - t0
    rows = []
    for batch in batches:
        video = torch.randint(0, 256, (batch, 3, args.resolution, args.resolution), dtype=torch.uint8)
        seconds = _timed(lambda v=video: scorer.score_video(v, "a young woman with glasses talks and smiles"),
                         args.rounds, device == "cuda")
        rows.append({"model": "clip-vit-l14", "batch": batch, "unit": "frames", "seconds_per_call": round(seconds, 4),
                     "frames_per_s": round(batch / seconds, 2), "input": [batch, 3, args.resolution, args.resolution],
                     "load_s": round(load_s, 2)})
    return rows


def bench_frechet(args: argparse.Namespace) -> list[dict]:
    import numpy as np

    from facevid.udfs.metrics.frechet import FeatureAccumulator, frechet_distance

    rows = []
    rng = np.random.default_rng(0)
    for dim in (400, 2048):
        feats = rng.normal(size=(1024, dim))
        update_s = _timed(lambda f=feats: FeatureAccumulator().update(f), args.rounds, False)
        a = FeatureAccumulator().update(feats).stats()
        b = FeatureAccumulator().update(feats + 0.1).stats()
        seconds = _timed(lambda a=a, b=b: frechet_distance(a, b), args.rounds, False)
        rows.append({"model": f"frechet-d{dim}", "batch": 1024, "unit": "rows", "seconds_per_call": round(seconds, 4),
                     "update_1024_rows_s": round(update_s, 4)})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="inception,i3d,clip,frechet")
    ap.add_argument("--image-batches", default="1,8,32")
    ap.add_argument("--video-batches", default="1,4")
    ap.add_argument("--clip-batches", default="1,8")
    ap.add_argument("--frames", type=int, default=16)
    ap.add_argument("--resolution", type=int, default=512)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--out", default=str(REPO / "bench" / "out" / "metrics_throughput.json"))
    args = ap.parse_args()

    import torch

    from facevid.udfs.models.runtime import pick_device

    if args.threads:
        torch.set_num_threads(args.threads)
    device = pick_device(1.0 if args.device != "cpu" else 0.0, args.device)
    ints = {name: [int(b) for b in getattr(args, name).split(",")] for name in
            ("image_batches", "video_batches", "clip_batches")}
    rows: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models.split(","):
            if name == "inception":
                rows += bench_extractor("inception", ints["image_batches"], args, Path(tmp), device)
            elif name == "i3d":
                rows += bench_extractor("i3d", ints["video_batches"], args, Path(tmp), device)
            elif name == "clip":
                rows += bench_clip(ints["clip_batches"], args, device)
            elif name == "frechet":
                rows += bench_frechet(args)
            else:
                raise SystemExit(f"unknown model {name}")
    report = {"device": device, "gpu": torch.cuda.get_device_name() if device == "cuda" else None,
              "threads": torch.get_num_threads(), "resolution": args.resolution, "frames": args.frames,
              "rounds": args.rounds, "runs": rows}
    print(f"{'model':<14}{'batch':>6}{'s/call':>10}{'per s':>10}  unit")
    for r in report["runs"]:
        rate = r.get(f"{r['unit']}_per_s", "")
        print(f"{r['model']:<14}{r['batch']:>6}{r['seconds_per_call']:>10}{rate!s:>10}  {r['unit']}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    print(json.dumps(report))


if __name__ == "__main__":
    main()
