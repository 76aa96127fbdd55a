"""The MLflow projects' parameters, declared once: the entry points' argparse, ``facevid train`` /
``evaluate`` and the ``MLproject`` files all follow these lists (``tests/test_mlflow_projects.py`` checks
that each MLproject declares exactly these names, types and defaults)."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Any

TYPES = {"string": str, "int": int, "float": float}


@dataclass(frozen=True)
class Param:
    name: str
    type: str  # MLproject types: string | int | float
    default: Any
    help: str


LAKE = [  # every entry point: where the tables are, and the files root (leases)
    Param("lake", "string", None, "lake root: a directory, s3://bucket/prefix or uc:catalog.schema (required)"),
    Param("files", "string", "", "the files root (leases; default: the lake root, as in pipeline.yml)"),
]

COMMON = LAKE + [
    Param("config", "string", "", "pipeline.yml declaring training.mixes / training.eval_sets (facevid passes it)"),
    Param("table", "string", "gold.clips", "the table to read"),
    Param("table_uri", "string", "", "the table's Delta location when the lake is uc: (DESCRIBE DETAIL ... location); "
          "default <lake>/<layer>/<name>"),
    Param("version", "string", "latest", "Delta version to read; `latest` is resolved when the run starts and "
          "recorded (tag facevid.table_version, mlflow.data input)"),
    Param("frames", "int", 8, "frames per sample (cogvideox: 4k+1, e.g. 49)"),
    Param("stride", "int", 2, "take every stride-th frame of the crop"),
    Param("size", "int", 32, "frame height = width in pixels (the crops are 512x512)"),
    Param("device", "string", "auto", "auto (CUDA when visible) | cpu | cuda"),
    Param("seed", "int", 0, "seeds data order, noise and initial weights"),
]

FINETUNE = COMMON + [
    Param("backend", "string", "tiny", "tiny (a small model trained from scratch, CPU) | cogvideox (diffusers, "
          "weights from model_path)"),
    Param("mode", "string", "t2v", "t2v (from the caption) | i2v (caption + the clip's first frame)"),
    Param("split", "string", "train", "gold split to train on (`all` = every row)"),
    Param("mix", "string", "", "train on a declared mix of sources (training.mixes; its own split applies)"),
    Param("model_path", "string", "", "cogvideox: a diffusers pipeline folder (local, dbfs:/, /Volumes or s3://)"),
    Param("training", "string", "lora", "cogvideox: lora | full"),
    Param("lora_rank", "int", 64, "cogvideox: LoRA rank"),
    Param("lora_alpha", "float", 64.0, "cogvideox: LoRA alpha"),
    Param("channels", "int", 32, "tiny: width of the first U-Net level"),
    Param("reader", "string", "native", "native (torch IterableDataset over the Delta table) | mosaic (MDS shards "
          "written from the same rows, read by Mosaic Streaming)"),
    Param("workers", "int", 0, "DataLoader worker processes"),
    Param("offset", "string", "random", "where a sample starts in its clip: random (seeded per epoch and clip; "
          "seeks cost a decode from the previous keyframe) | start"),
    Param("steps", "int", 300, "optimizer steps"),
    Param("batch_size", "int", 4, "samples per step and process"),
    Param("lr", "float", 1e-3, "base learning rate (AdamW)"),
    Param("weight_decay", "float", 0.0, "AdamW weight decay"),
    Param("warmup_steps", "int", 0, "linear learning-rate warm-up"),
    Param("grad_clip", "float", 1.0, "gradient norm clip (0 = off)"),
    Param("mixed_precision", "string", "no", "no | bf16 | fp16 (accelerate)"),
    Param("checkpoint_every", "int", 50, "steps between checkpoints (artifacts checkpoints/step-N)"),
    Param("log_every", "int", 10, "steps between loss/lr metrics"),
    Param("spike_factor", "float", 10.0, "a loss above this x the median of the recent healthy losses is a spike"),
    Param("spike_window", "int", 50, "healthy losses the spike rule looks back on"),
    Param("lr_decay", "float", 0.5, "each recovery multiplies the learning rate by this (paper: cut it)"),
    Param("min_lr", "float", 2e-6, "the learning rate never goes below this (paper: 2e-6)"),
    Param("max_recoveries", "int", 5, "anomalies + crashes a run survives"),
    Param("max_restarts", "int", 3, "crashed training processes the supervisor restarts"),
    Param("resume_from", "string", "", "continue another run (its id) from its newest checkpoint, with the learning "
          "rate cut as after a crash (a run whose supervisor died too)"),
    Param("num_processes", "int", 1, "training processes (accelerate launch; one per GPU)"),
    Param("faults", "string", "", "inject anomalies for drills/tests: nan@STEP, spike@STEP, kill@STEP (comma-separated)"),
    Param("register_as", "string", "facevid-video", "registered model name (`` = do not register)"),
    Param("workdir", "string", "", "local folder for checkpoints in flight (default: a temp folder per run)"),
]

EVALUATE = COMMON + [
    Param("model_uri", "string", "", "the model to evaluate: models:/NAME/VERSION, runs:/RUN_ID/model, or a local "
          "folder a finetune run saved"),
    Param("split", "string", "test", "gold split to evaluate on"),
    Param("eval_set", "string", "", "a declared cross-dataset evaluation set (training.eval_sets in pipeline.yml)"),
    Param("videos", "int", 2048, "test videos (paper: 2,048), capped by what the split holds"),
    Param("steps", "int", 20, "sampling steps per video"),
    Param("guidance_scale", "float", 6.0, "classifier-free guidance"),
    Param("resolution", "int", 512, "real and generated frames are resized to resolution x resolution"),
    Param("fid_frames", "int", 4, "uniformly sampled frames per video for FID (paper: 4)"),
    Param("fid_model_path", "string", "", "image feature extractor for FID (e.g. inception-2015-12-05.pt)"),
    Param("fid_model_kind", "string", "auto", "how to call fid_model_path (see README \"Metrics\")"),
    Param("fvd_model_path", "string", "", "video feature extractor for FVD (e.g. i3d_torchscript.pt)"),
    Param("fvd_model_kind", "string", "auto", "how to call fvd_model_path"),
    Param("clip_model_path", "string", "", "CLIP folder (transformers) for CLIPScore"),
    Param("aesthetic_path", "string", "", "ONNX aesthetic scorer (image -> score)"),
    Param("iqa_path", "string", "", "ONNX imaging-quality scorer (image -> score)"),
    Param("fiqa_path", "string", "", "ONNX face-image-quality scorer, e.g. DSL-FIQA (image -> score)"),
    Param("batch_size", "int", 4, "videos generated and scored at once"),
    Param("save_videos", "int", 8, "generated videos kept as mp4 artifacts"),
]


MOS = LAKE + [
    Param("ratings", "string", None, "ratings CSV: rater,model,dataset,video_id + criterion,score (long) or one "
          "column per criterion (wide)"),
    Param("criteria", "string", "adherence,naturalness,visual_quality,overall", "the study's criteria (paper's four)"),
    Param("scale_min", "float", 1.0, "lowest score of the scale"),
    Param("scale_max", "float", 5.0, "highest score of the scale"),
    Param("method", "string", "bootstrap", "interval: bootstrap (raters x videos, two-way) | t_videos"),
    Param("level", "float", 0.95, "confidence level"),
    Param("seed", "int", 0, "bootstrap seed"),
]


def add_arguments(parser: argparse.ArgumentParser, params: list[Param]) -> None:
    for p in params:
        parser.add_argument(f"--{p.name.replace('_', '-')}", dest=p.name, type=TYPES[p.type], default=p.default,
                            required=p.default is None, help=p.help)


def mlproject_parameters(params: list[Param]) -> dict[str, dict[str, Any]]:
    """The ``parameters:`` block an MLproject entry point must declare for ``params``."""
    return {p.name: {"type": p.type, **({} if p.default is None else {"default": p.default})} for p in params}


def command_line(module: str, params: list[Param]) -> str:
    """The MLproject ``command:`` running ``module`` with every parameter passed through."""
    args = " ".join(f"--{p.name.replace('_', '-')} {{{p.name}}}" for p in params)
    return f"python -m {module} {args}"


def rewrite_mlproject(path: str, entries: dict[str, tuple[list[Param], str]]) -> None:
    """Rewrite the ``entry_points:`` block of an MLproject file from ``entries`` (entry point -> its
    parameters and module; the comment header and ``name`` above are kept):
    ``python -m facevid.jobs.ml.params`` after changing a list."""
    import yaml

    def scalar(p: Param) -> str:  # YAML that reads back as the same value and type (2e-06 would be a string)
        style = '"' if p.type == "string" else None
        return yaml.safe_dump(p.default, default_style=style).strip().removesuffix("...").strip()

    text = open(path).read()  # noqa: SIM115 - tiny file, rewritten in place
    out = [text[: text.index("entry_points:\n") + len("entry_points:\n")].rstrip("\n")]
    for entry, (params, module) in entries.items():
        out += [f"  {entry}:", "    parameters:"]
        out += [f"      {p.name}: {{type: {p.type}" + ("" if p.default is None else f", default: {scalar(p)}") + "}"
                for p in params]
        out.append(f'    command: "{command_line(module, params)}"')
    with open(path, "w") as fh:
        fh.write("\n".join(out) + "\n")


PROJECT_ENTRIES = {
    "finetune": {"main": (FINETUNE, "facevid.jobs.ml.finetune")},
    "evaluate": {"main": (EVALUATE, "facevid.jobs.ml.evaluate"), "mos": (MOS, "facevid.jobs.ml.mos")},
}

if __name__ == "__main__":
    from pathlib import Path

    root = Path(__file__).resolve().parents[2] / "mlflow_projects"
    for project, entries in PROJECT_ENTRIES.items():
        rewrite_mlproject(str(root / project / "MLproject"), entries)
