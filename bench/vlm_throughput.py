"""Captioning throughput of the ``vlm`` backend: clips per second at batch sizes 1, 8 and 32.

    python bench/vlm_throughput.py [--model qwen2_5_vl_7b | tiny-qwen2_5_vl | tiny-qwen3_vl |
        tiny-llava_onevision | PATH] [--batches 1,8,32] [--rounds 2] [--new-tokens 64] [--side 448]
        [--device auto] [--dtype auto] [--attn sdpa] [--threads N] [--videos DIR] [--out FILE]

- ``qwen2_5_vl_7b``: Qwen2.5-VL-7B's architecture with random weights, built in place on the
  device (GPU; throughput does not depend on the weights). ``tiny-<family>``: the tests' tiny
  models, saved to a temporary folder and loaded by ``VlmCaptioner.load`` (CPU smoke runs).
  ``PATH``: a real model folder (local, dbfs:/, /Volumes/..., s3://) through ``VlmCaptioner.load``.
- Frames: ``sample_frames`` (first frame + 3 random non-consecutive ones, ``--side`` px) of each
  shared video, sampled once before timing (decode time reported apart); clips cycle over them.
- Prompt: the attribute options of ``../shared/vocabulary/dh_facevid_attributes.yml`` asked as
  JSON, about the size of the real template. The tiny models' tokenizer has a 512-token vocabulary,
  so their prompts are longer in tokens than the real tokenizer's; ``prompt_tokens`` says how long.
- Every answer is exactly ``--new-tokens`` long (``min_new_tokens`` = ``max_new_tokens``): random
  weights would otherwise stop at random points.
- Per batch size: one warm-up batch, then ``--rounds`` timed batches through
  ``VlmCaptioner.generate`` (chat template, processor, left-padded ``generate``, decode);
  clips/s = clips / seconds; CUDA peak memory per batch size.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
SHARED = REPO.parent / "shared"


def build_prompt(vocabulary: Path) -> str:
    import yaml

    attrs = yaml.safe_load(vocabulary.read_text())["attributes"]
    lines = ["Look at the frames of this video of one person (the first frame, then three later ones).",
             "Answer with one JSON object with these keys; use only the listed options."]
    for name, spec in attrs.items():
        how = "one option" if "one" in str(spec.get("kind", "")) else "a list of options"
        lines.append(f"{name} ({how}): " + ", ".join(map(str, spec["options"])))
    lines.append('caption: one sentence describing the person, e.g. "A young woman with glasses talks and smiles."')
    return "\n".join(lines)


def load_captioner(model: str, args: argparse.Namespace, tmp: Path) -> Any:
    from tiny_vlm import build_tiny_vlm, real_size_captioner

    from facevid.udfs.annotate.vlm import VlmCaptioner, VlmSettings

    settings = {"device": args.device, "dtype": args.dtype, "attn_implementation": args.attn,
                "max_new_tokens": args.new_tokens, "frame_side": args.side, "max_pixels": args.side * args.side}
    if model == "qwen2_5_vl_7b":
        return real_size_captioner(VlmSettings(**settings))
    if model.startswith("tiny-"):
        model = str(build_tiny_vlm(model[len("tiny-"):], tmp / model))
    return VlmCaptioner.load(VlmSettings(model_path=model, **settings))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="qwen2_5_vl_7b")
    ap.add_argument("--batches", default="1,8,32")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--new-tokens", type=int, default=64)
    ap.add_argument("--side", type=int, default=448)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--dtype", default="auto")
    ap.add_argument("--attn", default="sdpa")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--videos", default=str(SHARED / "data" / "videos"))
    ap.add_argument("--out", default=str(REPO / "bench" / "out" / "vlm_throughput.json"))
    args = ap.parse_args()

    import torch

    from facevid.udfs.annotate.frames import sample_frames

    if args.threads:
        torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    videos = sorted(Path(args.videos).glob("*.mp4"))
    clips = []
    for v in videos:
        try:
            clips.append(sample_frames(str(v), n_random=3, seed=0, side=args.side))
        except Exception as exc:  # noqa: BLE001 - a bench input that does not decode is skipped, said
            print(f"skip {v.name}: {exc}", file=sys.stderr)
    decode_s = time.perf_counter() - t0
    prompt = build_prompt(SHARED / "vocabulary" / "dh_facevid_attributes.yml")
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        captioner = load_captioner(args.model, args, Path(tmp))
        load_s = time.perf_counter() - t0
        cuda = captioner.device.startswith("cuda")
        one = captioner.prepare([(clips[0][0], prompt, clips[0][1])])
        report: dict[str, Any] = {
            "model": args.model, "model_type": captioner.model_type, "device": captioner.device,
            "gpu": torch.cuda.get_device_name() if cuda else None, "dtype": str(captioner.model.dtype),
            "attn": args.attn, "params_b": round(sum(p.numel() for p in captioner.model.parameters()) / 1e9, 3),
            "frames_per_clip": len(clips[0][0]), "side": args.side, "new_tokens": args.new_tokens,
            "prompt_tokens": int(one["input_ids"].shape[1]), "clips_sampled": len(clips),
            "decode_s": round(decode_s, 2), "load_s": round(load_s, 2), "runs": []}
        for batch in (int(b) for b in args.batches.split(",")):
            items = [(clips[i % len(clips)][0], prompt, clips[i % len(clips)][1]) for i in range(batch)]
            kw = {"min_new_tokens": args.new_tokens}
            captioner.generate(items, **kw)  # warm-up (kernels, allocator)
            if cuda:
                torch.cuda.synchronize()
                torch.cuda.reset_peak_memory_stats()
            t0 = time.perf_counter()
            for _ in range(args.rounds):
                captioner.generate(items, **kw)
            if cuda:
                torch.cuda.synchronize()
            seconds = time.perf_counter() - t0
            run = {"batch": batch, "clips": batch * args.rounds, "seconds": round(seconds, 3),
                   "clips_per_s": round(batch * args.rounds / seconds, 3),
                   "new_tokens_per_s": round(batch * args.rounds * args.new_tokens / seconds, 1),
                   "peak_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2) if cuda else None}
            report["runs"].append(run)
            print(json.dumps(run), flush=True)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    print(json.dumps({k: v for k, v in report.items() if k != "runs"}))


if __name__ == "__main__":
    main()
