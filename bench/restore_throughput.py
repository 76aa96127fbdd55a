"""Face-restoration throughput on a lake's gold crops, against bare decode + encode, in one run.

    python bench/restore_throughput.py [--lake ./lake] [--config pipeline.yml]
        [--arch gfpgan | codeformer | restoreformer_tiny | PATH] [--device auto] [--dtype auto]
        [--frame-batch 16] [--face-size 512] [--clips 0] [--threads 0] [--out bench/out/restore.json]

The lake must hold gold (``make demo`` builds one; without it this runs ``facevid run`` first). On
every gold crop (or the first ``--clips``), frames per second of:

1. bare: ``transcode`` with a frame function that changes nothing: decode, RGB round trip, H.264
   encode and the audio (the floor every restored file pays);
2. landmarks: the dlib pass over every crop frame (``fit_crop``, the prepare step);
3. enhance: the CPU default, the whole file (align, restore, paste back, measure, encode, eyes)
   after the landmarks;
4. learned: the same with ``SpandrelRestorer`` on ``--device``: ``gfpgan`` / ``codeformer`` /
   ``restoreformer_tiny`` are the tests' random-weight checkpoints (``tests/fixtures_restore.py``;
   the speed does not depend on the weights), ``PATH`` a real checkpoint; one warm-up clip first;
5. model only: the restorer on ``--frame-batch`` aligned faces at a time (no video work).

Ratios: enhance / bare, learned / bare, learned / model only (what the video work costs).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))


def gold_rows(lake: str) -> list[dict[str, Any]]:
    from deltalake import DeltaTable

    read = lambda t: DeltaTable(f"{lake}/{t.replace('.', '/')}").to_pandas()  # noqa: E731
    gold = set(read("gold.clips")["clip_id"])
    faces = read("silver.faces")[["clip_id", "track_t", "track_boxes", "track_scores"]]
    rows = read("silver.crops").merge(faces, on="clip_id").to_dict("records")
    return sorted((r for r in rows if r["clip_id"] in gold), key=lambda r: r["clip_id"])


def restorer_path(arch: str, folder: Path) -> str:
    if Path(arch).exists() or "://" in arch or arch.startswith("dbfs:"):
        return arch
    from fixtures_restore import build, save

    return str(save(build(arch), folder / f"{arch}.pth", half=True))


def timed(fn: Any) -> tuple[Any, float]:
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def rate(frames: int, seconds: float) -> dict[str, float]:
    return {"frames": frames, "seconds": round(seconds, 3), "fps": round(frames / max(seconds, 1e-9), 2)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lake", default=str(REPO / "lake"))
    ap.add_argument("--config", default=str(REPO / "pipeline.yml"))
    ap.add_argument("--arch", default="gfpgan")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--dtype", default="auto")
    ap.add_argument("--frame-batch", type=int, default=16)
    ap.add_argument("--face-size", type=int, default=512)
    ap.add_argument("--clips", type=int, default=0)
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch's default)")
    ap.add_argument("--out", default=str(REPO / "bench" / "out" / "restore.json"))
    args = ap.parse_args()

    import numpy as np
    import torch

    from facevid.udfs.media.encode import transcode
    from facevid.udfs.media.video import VideoSpan, to_array
    from facevid.udfs.models.runtime import resolve_device
    from facevid.udfs.restore.align import similarity, template, warp_face
    from facevid.udfs.restore.backends import EnhanceRestorer, SpandrelRestorer
    from facevid.udfs.restore.clip import Prepared, restore_clip
    from facevid.udfs.restore.landmarks import fit_crop
    from facevid.udfs.restore.params import RestoreParams

    if args.threads:
        torch.set_num_threads(args.threads)
    if not (Path(args.lake) / "gold" / "clips" / "_delta_log").is_dir():
        subprocess.run([sys.executable, "-m", "facevid.jobs.cli", "run", "--config", args.config, "--lake", args.lake],
                       check=True)
    rows = gold_rows(args.lake)[: args.clips or None]
    device = resolve_device(args.device, "--device")
    params = RestoreParams(backend="spandrel", model_path="bench", dtype=args.dtype, frame_batch=args.frame_batch,
                           face_size=args.face_size, allow_noncommercial=True)
    result: dict[str, Any] = {"clips": len(rows), "device": device, "arch": args.arch, "torch": torch.__version__,
                              "gpu": torch.cuda.get_device_name() if device.startswith("cuda") else None,
                              "frame_batch": args.frame_batch, "face_size": args.face_size}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        total = sum(int(r["n_frames"]) for r in rows)
        _, s = timed(lambda: [transcode(r["crop_uri"], str(folder / f"bare-{i}.mp4"), lambda idx, f: f,
                                        args.frame_batch) for i, r in enumerate(rows)])
        result["bare"] = rate(total, s)
        faces, s = timed(lambda: [fit_crop(r["crop_uri"], r, params.min_face_px, None) for r in rows])
        result["landmarks"] = rate(total, s)
        items = lambda: [Prepared(r, "bench", f) for r, f in zip(rows, faces, strict=True)]  # noqa: E731

        def restore_all(restorer: Any, root: str) -> list[dict[str, Any]]:
            return [restore_clip(it, restorer, params, root) for it in items()]

        enhance = EnhanceRestorer(params.denoise, params.sharpen, params.sharpen_sigma)
        _, s = timed(lambda: restore_all(enhance, str(folder / "enhance")))
        result["enhance"] = rate(total, s)

        path = restorer_path(args.arch, folder)
        model = SpandrelRestorer(path, device, args.dtype, params.fidelity, args.frame_batch, args.face_size, True)
        result.update(arch_detected=model.arch, dtype=model.dtype)
        restore_clip(items()[0], model, params, str(folder / "warmup"))  # CUDA kernels, cudnn autotune
        if device.startswith("cuda"):
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        out, s = timed(lambda: restore_all(model, str(folder / "learned")))
        result["learned"] = {**rate(total, s), "eye_flagged": sum(bool(o["eye_flagged"]) for o in out)}
        aligned = []
        for r, f in zip(rows, faces, strict=True):
            i = f.usable[0]
            with VideoSpan(r["crop_uri"]) as span:
                frame = next(to_array(fr, "rgb24") for k, (_, fr) in enumerate(span.frames()) if k == i)
            aligned.append(warp_face(frame, similarity(f.aligned_points(1)[i], template(args.face_size)),
                                     args.face_size))
        batch = np.stack([aligned[k % len(aligned)] for k in range(4 * args.frame_batch)])
        _, s = timed(lambda: (model.restore(batch), torch.cuda.synchronize() if device.startswith("cuda") else None))
        result["model_only"] = rate(len(batch), s)
        if device.startswith("cuda"):
            result["cuda_peak_gb"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
    bare = result["bare"]["fps"]
    result["ratios"] = {"enhance_vs_bare": round(result["enhance"]["fps"] / bare, 3),
                        "learned_vs_bare": round(result["learned"]["fps"] / bare, 3),
                        "learned_vs_model_only": round(result["learned"]["fps"] / result["model_only"]["fps"], 3)}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
