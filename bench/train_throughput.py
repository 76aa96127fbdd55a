"""Training-data and training-loop throughput on a lake's gold clips, against bare decode, in one run.

    python bench/train_throughput.py [--lake ./lake] [--config pipeline.yml] [--steps 60] [--out bench/out/train.json]

The lake must hold gold (``make demo`` builds one; without it this runs ``facevid run`` first). On the
gold train split, the same samples (``--frames`` frames every ``--stride`` of each crop, at ``--size``):

1. bare decode: PyAV decodes each sample's span of its crop file (no resize, no tensors): the floor;
2. the native reader (``GoldVideoDataset``), samples/s, with the sample at the clip's start and at a
   random offset (a seek: the decode starts at the previous keyframe);
3. Mosaic Streaming: ``write_mds`` of the snapshot, then ``MosaicVideoDataset`` samples/s;
4. the tiny model: optimizer steps/s on one fixed batch (model only), then the whole loop
   (``facevid.udfs.train.loop.Trainer``: reader + model + checkpoints every 20 steps).

Ratios: reader / bare decode, loop / model-only (what data loading and checkpoints cost).
"""

from __future__ import annotations

import argparse
import itertools
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]


class _Hooks:
    def metrics(self, values: dict, step: int) -> None: ...
    def checkpoint(self, folder: Path, state: Any) -> None: ...
    def event(self, name: str, detail: dict) -> None: ...
    def fired(self) -> set[str]:
        return set()
    def mark_fired(self, fault: str) -> None: ...


def timed(fn: Any) -> tuple[Any, float]:
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def bare_decode(snapshot: Any, spec: Any) -> int:
    from facevid.udfs.media.video import VideoSpan

    frames = 0
    for uri in snapshot.rows["crop_uri"]:
        with VideoSpan(uri) as span:
            for _, _frame in itertools.islice(span.frames(), spec.span_frames):
                frames += 1
    return frames


def samples_per_s(dataset: Any, n: int) -> float:
    """Samples per second over at most ``n`` samples (an epoch of a finite dataset may hold fewer)."""
    count, seconds = timed(lambda: sum(1 for _ in itertools.islice(iter(dataset), n)))
    return count / seconds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lake", default=str(REPO / "lake"))
    ap.add_argument("--config", default=str(REPO / "pipeline.yml"))
    ap.add_argument("--frames", type=int, default=8)
    ap.add_argument("--stride", type=int, default=2)
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--out", default=str(REPO / "bench" / "out" / "train.json"))
    args = ap.parse_args()
    gold = Path(args.lake) / "gold" / "clips"
    if not (gold / "_delta_log").is_dir():
        subprocess.run([str(Path(sys.executable).parent / "facevid"), "run", "--config", args.config,
                        "--lake", args.lake], check=True)
    import torch

    from facevid.udfs.train.datasets import GoldVideoDataset, make_loader
    from facevid.udfs.train.loop import Trainer, TrainSettings
    from facevid.udfs.train.mosaic import MosaicVideoDataset, write_mds
    from facevid.udfs.train.reader import ClipSpec, latest_version, load_snapshot
    from facevid.udfs.train.tiny_video import TinyBackend, TinyConfig

    torch.set_num_threads(2)
    snap = load_snapshot(str(gold), latest_version(str(gold)), "train")
    spec = ClipSpec(frames=args.frames, stride=args.stride, height=args.size, width=args.size)
    n = 4 * len(snap)
    r: dict[str, Any] = {"clips": len(snap), "samples": n, "spec": vars(args)}
    frames, seconds = timed(lambda: bare_decode(snap, spec))
    r["bare_decode_samples_s"] = len(snap) / seconds
    r["bare_decode_frames"] = frames
    for offset in ("start", "random"):
        s = ClipSpec(frames=args.frames, stride=args.stride, height=args.size, width=args.size, offset=offset)
        r[f"native_{offset}_samples_s"] = samples_per_s(GoldVideoDataset(snap, s, epochs=None), n)
    with tempfile.TemporaryDirectory() as tmp:
        _, r["mosaic_write_s"] = timed(lambda: write_mds(snap, Path(tmp) / "mds"))
        r["mosaic_samples_s"] = samples_per_s(MosaicVideoDataset(Path(tmp) / "mds", spec, shuffle=False), n)
        backend = TinyBackend(TinyConfig(channels=16))
        batch = next(iter(make_loader(GoldVideoDataset(snap, spec, epochs=None), args.batch)))
        module = backend.trainable_module()
        opt = torch.optim.AdamW(module.parameters(), 1e-3)

        def model_only() -> None:
            for _ in range(args.steps):
                loss = backend.loss(module, batch)
                opt.zero_grad()
                loss.backward()
                opt.step()
        _, seconds = timed(model_only)
        r["model_only_steps_s"] = args.steps / seconds
        settings = TrainSettings(steps=args.steps, batch_size=args.batch, checkpoint_every=20)

        def batches(offset: int) -> Any:
            return iter(make_loader(GoldVideoDataset(snap, spec, epochs=None, start_offset=offset), args.batch))
        trainer = Trainer(TinyBackend(TinyConfig(channels=16)), batches, settings, _Hooks(), Path(tmp) / "run")
        _, seconds = timed(trainer.run)
        r["loop_steps_s"] = args.steps / seconds
    r["ratios"] = {"native_start / bare_decode": r["native_start_samples_s"] / r["bare_decode_samples_s"],
                   "native_random / native_start": r["native_random_samples_s"] / r["native_start_samples_s"],
                   "mosaic / native_start": r["mosaic_samples_s"] / r["native_start_samples_s"],
                   "loop / model_only (steps/s)": r["loop_steps_s"] / r["model_only_steps_s"]}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(r, indent=1))
    print(json.dumps(r, indent=1))


if __name__ == "__main__":
    main()
