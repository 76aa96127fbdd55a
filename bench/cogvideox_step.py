"""Seconds per training step of the ``cogvideox`` backend, and peak memory.

    python bench/cogvideox_step.py [--size tiny | 2b] [--steps 3] [--device auto] [--mode t2v | i2v]
        [--batch N] [--training lora | full] [--rank 64] [--no-checkpointing] [--threads N] [--out FILE]

- ``tiny``: the tests' tiny pipeline (``tests/tiny_cogvideox.py``), saved to a temporary folder and
  loaded through ``CogVideoXBackend``; 9 frames of 64x64, T5 prompts encoded every step (CPU runs).
- ``2b``: CogVideoX-2B's transformer config and the real VAE config with random weights, built on
  the device in bf16 (GPU; speed does not depend on the weights); 49 frames of 480x720 (latents
  13x60x90); no T5 (4.7 B parameters): random ``prompt_embeds`` (B, 226, 4096) instead.
- A step = ``backend.loss`` (VAE encode, noise, transformer forward) + backward + AdamW step, as the
  training loop runs it; one warm-up step, then ``--steps`` timed ones. The VAE encode alone is
  timed once more apart. Peak memory: CUDA's max allocated, or the process's max RSS on the CPU.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", choices=("tiny", "2b"), default="tiny")
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--mode", choices=("t2v", "i2v"), default="t2v")
    ap.add_argument("--batch", type=int, default=None, help="clips per step (tiny: 2, 2b: 1)")
    ap.add_argument("--training", choices=("lora", "full"), default="lora")
    ap.add_argument("--rank", type=int, default=64)
    ap.add_argument("--no-checkpointing", action="store_true")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--out", default=None, help="also write the result as JSON here")
    args = ap.parse_args()

    import torch
    from tiny_cogvideox import CAPTIONS, build_tiny_pipeline, real_size_pipeline

    from facevid.udfs.models.runtime import resolve_device
    from facevid.udfs.train.cogvideox import CogVideoXBackend, CogVideoXSettings

    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    common = dict(mode=args.mode, training=args.training, lora_rank=args.rank, lora_alpha=args.rank,
                  device=device, gradient_checkpointing=not args.no_checkpointing)
    gen = torch.Generator().manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        if args.size == "tiny":
            folder = build_tiny_pipeline(args.mode, Path(tmp) / "tiny")
            backend = CogVideoXBackend(CogVideoXSettings(model_path=str(folder), num_frames=9, height=64, width=64,
                                                         **common))
            b, extra = args.batch or 2, {}
        else:
            if args.mode != "t2v":
                ap.error("--size 2b builds the T2V 2B model only")
            backend = CogVideoXBackend(CogVideoXSettings(**common), pipe=real_size_pipeline(device, torch.bfloat16))
            b = args.batch or 1
            extra = {"prompt_embeds": torch.randn(b, 226, 4096, generator=gen)}
        build_s = time.perf_counter() - t0
        s = backend.settings
        video = torch.rand(b, s.num_frames, 3, s.height, s.width, generator=gen) * 2 - 1
        batch = {"video": video, "first_frame": video[:, 0], "caption": (CAPTIONS * b)[:b], **extra}
        module = backend.trainable_module()
        opt = torch.optim.AdamW(backend.trainable_parameters(module), lr=1e-4)

        def sync() -> None:
            if device.startswith("cuda"):
                torch.cuda.synchronize()

        times = []
        for _ in range(args.steps + 1):
            sync()
            t0 = time.perf_counter()
            loss = backend.loss(module, batch, gen)
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            sync()
            times.append(time.perf_counter() - t0)
        from facevid.udfs.train.cogvideox_loss import encode_video

        sync()
        t0 = time.perf_counter()
        encode_video(backend.pipe.vae, video.to(device, backend.dtype), gen)
        sync()
        vae_s = time.perf_counter() - t0
    peak = (torch.cuda.max_memory_allocated() / 2**30 if device.startswith("cuda")
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20)
    facts = backend.describe()
    result = {
        "size": args.size, "mode": args.mode, "training": args.training, "device": device,
        "gpu": torch.cuda.get_device_name() if device.startswith("cuda") else None,
        "dtype": facts["dtype"], "batch": b, "frames": s.num_frames, "height": s.height, "width": s.width,
        "latent_shape": facts["latent_shape"], "gradient_checkpointing": s.gradient_checkpointing,
        "transformer_params": facts["transformer_params"], "trainable_params": facts["trainable_params"],
        "threads": torch.get_num_threads(), "build_s": round(build_s, 2), "warmup_step_s": round(times[0], 3),
        "step_s": round(sum(times[1:]) / max(1, len(times) - 1), 3), "vae_encode_s": round(vae_s, 3),
        "peak_gib": round(peak, 2), "peak_kind": "cuda_max_allocated" if device.startswith("cuda") else "max_rss",
        "loss": round(loss.item(), 4),
    }
    print(json.dumps(result, indent=2))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
