"""``mlflow_projects/evaluate``: generate test videos with a trained model and score them.

The paper's protocol: one generated video per test prompt (T2V) or per test first frame + prompt
(I2V) for a declared number of held-out test clips (2,048); FID on 4 uniformly sampled frames per video
(real vs generated), FVD over a video encoder's features, CLIPScore between the prompt and the
frames, everything at 512x512; plus the image-quality scorers (aesthetic, imaging quality, face IQA) and
two weight-free scores (temporal flicker, sharpness) for generated and real videos alike. Feature
extractors and scorers load from configured paths only; a metric whose model is not configured is
reported as not computed (``facevid.metric.<name> = not configured``), never with a stand-in.

The data is a gold split (or a declared cross-dataset evaluation set, ``eval_set`` + ``config``) at a
pinned Delta version, recorded as the run's ``evaluation`` input. Results: MLflow metrics, the
``table2.json``/``table2.md`` artifacts (one Table-2-like row), up to ``save_videos`` generated mp4s,
and rows appended to ``meta.evaluations``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from facevid.jobs.ml.data import resolve_table
from facevid.jobs.ml.params import EVALUATE, add_arguments
from facevid.jobs.ml.tracking import TAG, log_lineage, log_params_once, log_selection, setup_tracking

TABLE2 = ("FVD", "FID", "CLIPScore", "aesthetic", "iqa", "fiqa", "temporal_flicker", "sharpness")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m facevid.jobs.ml.evaluate", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(p, EVALUATE)
    return p


def select_rows(args: argparse.Namespace, rows: Any, version: int) -> tuple[Any, str]:
    """The evaluated clips (at most ``videos``, in a seeded order) and the dataset's name."""
    from facevid.udfs.train.mixing import rank_keys

    name = f"{args.eval_set}@v{version}" if args.eval_set else f"{args.table}@v{version}/{args.split}"
    order = np.argsort(rank_keys(rows["clip_id"].to_numpy(), args.seed), kind="stable")
    return rows.iloc[order[: args.videos]].reset_index(drop=True), name


class Scores:
    """Streaming accumulation of every configured metric over batches of (real, generated) videos."""

    def __init__(self, args: argparse.Namespace, device: str, frames: int) -> None:
        from facevid.udfs.metrics.extractors import load_extractor

        self.args, self.notes = args, {}
        self.fid = self.fvd = self.clip = self.quality = None
        self.fvd_frames = min(16, frames)
        self.acc: dict[str, Any] = {}
        self.values: dict[str, list[float]] = {}
        if args.fid_model_path:
            self.fid = load_extractor(args.fid_model_path, "evaluate.fid_model_path", "image", args.fid_model_kind,
                                      device)
        if args.fvd_model_path:
            self.fvd = load_extractor(args.fvd_model_path, "evaluate.fvd_model_path", "video", args.fvd_model_kind,
                                      device, probe_frames=self.fvd_frames)
        if args.clip_model_path:
            from facevid.udfs.metrics.clip_score import ClipScorer

            self.clip = ClipScorer.load(args.clip_model_path, "evaluate.clip_model_path", device,
                                        frames_per_video=args.fid_frames, resolution=args.resolution)
        models = {n: (getattr(args, f"{n}_path"), f"evaluate.{n}_path") for n in ("aesthetic", "iqa", "fiqa")
                  if getattr(args, f"{n}_path")}
        if models:
            from facevid.udfs.metrics.image_quality import ImageQualityScorer

            self.quality = ImageQualityScorer(models, frames_per_video=args.fid_frames, resolution=args.resolution)
        for name, on in (("FID", self.fid), ("FVD", self.fvd), ("CLIPScore", self.clip)):
            if on is None:
                self.notes[name] = "not configured"

    def _merge(self, key: str, acc: Any) -> None:
        self.acc[key] = acc if key not in self.acc else self.acc[key].merge(acc)

    def _add(self, key: str, values: Any) -> None:
        self.values.setdefault(key, []).extend(float(v) for v in np.asarray(values).ravel())

    def update(self, real: Any, generated: Any, prompts: list[str]) -> None:
        from facevid.udfs.metrics.fid import image_stats, video_stats
        from facevid.udfs.metrics.temporal import sharpness, temporal_flicker

        a = self.args
        for side, videos in (("real", real), ("generated", generated)):
            if self.fid is not None:
                self._merge(f"fid_{side}", image_stats(videos, self.fid, a.fid_frames, a.resolution))
            if self.fvd is not None:
                self._merge(f"fvd_{side}", video_stats(videos, self.fvd, self.fvd_frames, resolution=a.resolution))
            suffix = "" if side == "generated" else "_real"
            self._add(f"temporal_flicker{suffix}", temporal_flicker(videos))
            self._add(f"sharpness{suffix}", sharpness(videos))
            if self.quality is not None:
                for name, scores in self.quality.score_videos(videos).items():
                    self._add(f"{name}{suffix}", scores)
        if self.clip is not None:
            self._add("CLIPScore", self.clip.scores(generated, prompts))

    def results(self) -> dict[str, dict[str, Any]]:
        from facevid.udfs.metrics.frechet import frechet_distance

        out: dict[str, dict[str, Any]] = {}
        for name, extractor in (("FID", self.fid), ("FVD", self.fvd)):
            if extractor is not None:
                real, gen = self.acc[f"{name.lower()}_real"], self.acc[f"{name.lower()}_generated"]
                facts = extractor.describe()
                out[name] = {"value": frechet_distance(real.stats(), gen.stats()), "n": gen.stats().n,
                             "extractor": f"{facts['format']}@{facts['weights_sha256']}"}
        for key, values in self.values.items():
            out[key] = {"value": float(np.mean(values)), "n": len(values), "extractor": None}
        return out


def _batches(rows: Any, size: int) -> Any:
    for start in range(0, len(rows), size):
        yield start, rows.iloc[start:start + size]


def real_videos(uris: list[str], spec: Any, skipped: dict[str, str]) -> tuple[Any, list[int]]:
    """The real clips ``(B, T, C, H, W)`` uint8 and the positions that decoded (a crop that cannot be read is
    left out and recorded in ``skipped``, as the training reader does)."""
    import torch

    from facevid.udfs.train.reader import load_clip

    videos, kept = [], []
    for i, uri in enumerate(uris):
        try:
            videos.append(torch.from_numpy(load_clip(uri, spec)).permute(0, 3, 1, 2))
            kept.append(i)
        except Exception as exc:  # noqa: BLE001 - a missing or broken crop: recorded, the rest is scored
            skipped[uri] = f"{type(exc).__name__}: {exc}"[:300]
    return (torch.stack(videos) if videos else None), kept


def evaluate(args: argparse.Namespace, rows: Any, backend: Any, device: str, out: Path) -> dict[str, Any]:
    """Generate and score every row; returns the metrics and writes up to ``save_videos`` mp4s to ``out``."""
    from torch.nn import functional as F

    from facevid.udfs.media.encode import write_frames
    from facevid.udfs.train.backend import GenerationRequest
    from facevid.udfs.train.reader import ClipSpec

    spec = ClipSpec(frames=args.frames, stride=args.stride, height=args.resolution, width=args.resolution)
    scores = Scores(args, device, args.frames)
    saved, skipped = 0, {}
    for start, batch in _batches(rows, args.batch_size):
        real, kept = real_videos(list(batch["crop_uri"]), spec, skipped)  # at the evaluation resolution
        if real is None:
            continue
        batch = batch.iloc[kept]
        prompts = [str(c or "") for c in batch["caption"]]
        first = None
        if backend.mode == "i2v":
            first = F.interpolate(real[:, 0].float() / 127.5 - 1, size=(args.size, args.size), mode="area")
        request = GenerationRequest(prompts=prompts, first_frames=first, num_frames=args.frames, height=args.size,
                                    width=args.size, steps=args.steps, guidance_scale=args.guidance_scale,
                                    seed=args.seed + start)
        generated = backend.generate(request)  # (B, T, C, h, w) float in [0, 1]
        scores.update(real, generated, prompts)
        for i in range(len(batch)):
            if saved < args.save_videos:
                frames = (generated[i].permute(0, 2, 3, 1).numpy() * 255).round().astype(np.uint8)
                write_frames(str(out / f"{batch['clip_id'].iloc[i]}.mp4"), frames)
                saved += 1
    if not scores.values:
        raise ValueError(f"no test clip could be read ({len(skipped)} skipped)")
    return {"metrics": scores.results(), "notes": scores.notes, "skipped": skipped}


def table2(model: str, dataset: str, metrics: dict[str, dict[str, Any]], notes: dict[str, str]) -> dict[str, Any]:
    """One row of the paper's Table 2 (plus the reference values of real videos where measured)."""
    row: dict[str, Any] = {"model": model, "dataset": dataset}
    for name in TABLE2:
        row[name] = metrics[name]["value"] if name in metrics else notes.get(name, "not configured")
    row.update({k: v["value"] for k, v in metrics.items() if k.endswith("_real")})
    return row


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    import mlflow

    from facevid.jobs.ml.evaluations import append, evaluation_rows, markdown
    from facevid.jobs.ml.registry import load_model_folder, resolve_model_uri
    from facevid.udfs.models.runtime import resolve_device
    from facevid.udfs.train.backends import load_trained

    try:
        ref, rows, selection = resolve_table(args)
        rows, dataset = select_rows(args, rows, ref.version)
        if not args.model_uri:
            raise ValueError("model_uri is required (models:/NAME/VERSION, runs:/RUN_ID/model or a folder)")
        setup_tracking(args.lake, args.files or None)
        args.model_uri = resolve_model_uri(args.model_uri)
        device = resolve_device(args.device, "evaluate.device")
        with tempfile.TemporaryDirectory(prefix="facevid-eval-") as tmp:
            backend = load_trained(load_model_folder(args.model_uri, Path(tmp)), device)
    except (ValueError, FileNotFoundError) as exc:
        print(f"evaluate: error: {exc}", file=sys.stderr)
        return 2
    with mlflow.start_run() as run, tempfile.TemporaryDirectory(prefix="facevid-eval-out-") as tmp:
        log_params_once({p.name: getattr(args, p.name) for p in EVALUATE})
        mlflow.set_tags({f"{TAG}.project": "evaluate", f"{TAG}.model_uri": args.model_uri,
                         f"{TAG}.dataset": dataset})
        log_lineage(ref.table, ref.uri, ref.version, args.split, rows[["clip_id", "caption"]], context="evaluation")
        log_selection(selection)
        videos = Path(tmp) / "videos"
        videos.mkdir()
        result = evaluate(args, rows, backend, device, videos)
        metrics, notes = result["metrics"], result["notes"]
        if result["skipped"]:  # crops that could not be read: left out, named
            mlflow.set_tag(f"{TAG}.skipped", json.dumps(result["skipped"])[:5000])
        mlflow.log_metric("skipped_clips", len(result["skipped"]))
        mlflow.log_metrics({k.replace("@", "_"): v["value"] for k, v in metrics.items()})
        mlflow.set_tags({f"{TAG}.metric.{k}": v for k, v in notes.items()})
        row = table2(args.model_uri, dataset, metrics, notes)
        (Path(tmp) / "table2.json").write_text(json.dumps(row, indent=1, default=str))
        (Path(tmp) / "table2.md").write_text(markdown([row]))
        mlflow.log_artifacts(tmp)
        settings = {k: getattr(args, k) for k in ("frames", "stride", "size", "steps", "guidance_scale", "seed",
                                                   "fid_frames")} | {"fvd_frames": min(16, args.frames)}
        meta = {"run_id": run.info.run_id, "model_uri": args.model_uri, "backend": backend.name,
                "mode": backend.mode, "dataset": dataset, "table_uri": ref.uri, "table_version": ref.version,
                "split": args.split, "eval_set": args.eval_set or None, "videos": len(rows) - len(result["skipped"]),
                "resolution": args.resolution, "settings": settings,
                **_registered(args.model_uri)}
        version = append(args.lake, args.files or args.lake, evaluation_rows(meta, metrics), run.info.run_id)
        mlflow.set_tag(f"{TAG}.evaluations_version", str(version))
        print(json.dumps({"run_id": run.info.run_id, **row}, default=str), flush=True)
    return 0


def _registered(uri: str) -> dict[str, Any]:
    parts = uri.split("/")
    if uri.startswith("models:/") and len(parts) >= 3:
        return {"model_name": parts[1], "model_version": parts[2]}
    return {"model_name": None, "model_version": None}


if __name__ == "__main__":
    sys.exit(main())
