"""``facevid train``, ``facevid evaluate``, ``facevid export``: the MLflow projects and the trainer exports
on the lake that ``pipeline.yml`` declares.

``train`` and ``evaluate`` run ``mlflow_projects/finetune`` / ``evaluate`` (shipped in the wheel as
``facevid.mlflow_projects``) with ``mlflow.projects.run(..., env_manager="local")``: the parameters are
``training.finetune`` / ``training.evaluate`` of ``pipeline.yml`` overridden by ``-P KEY=VALUE``, the
lake is the configured one, and the tracking store / experiment come from ``training.mlflow`` (defaults:
``sqlite:///<files root>/mlflow/mlflow.db``, experiment ``facevid`` with its artifacts under
``<files root>/mlflow/artifacts``).
"""

from __future__ import annotations

import argparse
import importlib.resources
import json
import os
import sys
from pathlib import Path
from typing import Any

from facevid.jobs.config import ConfigError, PipelineConfig
from facevid.jobs.ml.params import EVALUATE, FINETUNE, MOS, TYPES, Param

PROJECTS = {"train": ("finetune", FINETUNE), "evaluate": ("evaluate", EVALUATE)}
MLFLOW_KEYS = ("tracking_uri", "experiment", "artifact_location")
SECTION_KEYS = ("mlflow", "finetune", "evaluate", "mixes", "eval_sets")


def training_section(cfg: PipelineConfig) -> dict[str, Any]:
    """``training:`` of pipeline.yml, its keys checked."""
    section = cfg.raw.get("training") or {}
    if not isinstance(section, dict):
        raise ConfigError("training: must be a mapping")
    unknown = sorted(set(section) - set(SECTION_KEYS))
    if unknown:
        raise ConfigError(f"training: unknown key(s) {', '.join(unknown)}; known: {', '.join(SECTION_KEYS)}")
    mlflow_keys = sorted(set(section.get("mlflow") or {}) - set(MLFLOW_KEYS))
    if mlflow_keys:
        raise ConfigError(f"training.mlflow: unknown key(s) {', '.join(mlflow_keys)}; known: {', '.join(MLFLOW_KEYS)}")
    from facevid.udfs.metrics.evalsets import load_eval_sets
    from facevid.udfs.train.mixing import load_mixes

    try:  # validated before any run starts (the projects read them again from the same file)
        load_mixes(section.get("mixes"), prefix="training.mixes")
        load_eval_sets(section.get("eval_sets"), prefix="training.eval_sets")
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc
    return section


def project_dir(name: str) -> Path:
    """The MLproject folder inside the installed package."""
    folder = Path(str(importlib.resources.files("facevid.mlflow_projects") / name))
    if not (folder / "MLproject").is_file():
        raise ConfigError(f"MLflow project {name} not found at {folder} (reinstall facevid-lake)")
    return folder


def project_params(cfg: PipelineConfig, project: str, declared: list[Param], overrides: list[str],
                   section: bool = True) -> dict[str, Any]:
    """``training.<project>`` values (unless ``section`` is False) overridden by ``-P KEY=VALUE``, typed and
    checked by name, plus the lake, files root and config of ``cfg``."""
    known = {p.name: p for p in declared}
    values = dict(training_section(cfg).get(project) or {}) if section else {}
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep:
            raise ConfigError(f"-P {item!r}: expected KEY=VALUE, e.g. -P steps=200")
        values[key.strip()] = value
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ConfigError(f"training.{project}: unknown parameter(s) {', '.join(unknown)}; "
                          f"known: {', '.join(sorted(known))}")
    out: dict[str, Any] = {}
    for key, value in values.items():
        if value is None:
            continue
        try:
            out[key] = TYPES[known[key].type](value)
        except ValueError as exc:
            raise ConfigError(f"training.{project}.{key}: {value!r} is not a {known[key].type}") from exc
    for key in list(out):
        if key.endswith("_path") and out[key] and "://" not in str(out[key]) and not str(out[key]).startswith(
                ("/", "dbfs:")):
            out[key] = str((cfg.path.resolve().parent / str(out[key])).resolve())
    out.update(lake=cfg.lake, files=cfg.files_root, config=str(cfg.path.resolve()))
    return {k: v for k, v in out.items() if k in known}


def tracking(cfg: PipelineConfig, experiment: str | None) -> tuple[str, str]:
    """Point this process (and the project's subprocess, through the environment) at the tracking store;
    returns ``(tracking_uri, experiment_id)``."""
    from facevid.jobs.ml.tracking import default_artifact_location, default_tracking_uri, experiment_id

    section = training_section(cfg).get("mlflow") or {}
    uri = os.environ.get("MLFLOW_TRACKING_URI") or section.get("tracking_uri") or default_tracking_uri(cfg.files_root)
    name = experiment or section.get("experiment") or "facevid"
    workspace = uri.startswith("databricks")  # a workspace experiment keeps the workspace's artifact store
    artifacts = section.get("artifact_location") or (None if workspace else default_artifact_location(cfg.files_root))
    exp = experiment_id(uri, name, artifacts)
    os.environ["MLFLOW_TRACKING_URI"] = uri
    if artifacts:
        os.environ["FACEVID_ARTIFACT_LOCATION"] = artifacts
    return uri, exp


def run_project(cfg: PipelineConfig, args: argparse.Namespace) -> int:
    """``facevid train`` / ``facevid evaluate``: one MLflow project run; prints its run id and outcome."""
    import mlflow
    from mlflow.exceptions import ExecutionException

    name, declared = PROJECTS[args.command]
    entry = "mos" if getattr(args, "mos", None) else "main"
    if entry == "mos":  # people's ratings: the CSV, not the generation settings
        params = project_params(cfg, name, MOS, [*args.param, f"ratings={Path(args.mos).resolve()}"], section=False)
    else:
        params = project_params(cfg, name, declared, args.param)
    uri, exp = tracking(cfg, args.experiment)
    # `python` in the MLproject command must be this interpreter (the venv that has facevid installed)
    os.environ["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    print(f"{args.command}: mlflow run {project_dir(name)} ({uri}, experiment {exp})", flush=True)
    try:
        submitted = mlflow.projects.run(uri=str(project_dir(name)), entry_point=entry, parameters=params,
                                        env_manager="local", experiment_id=exp, synchronous=True)
    except ExecutionException as exc:
        print(f"facevid: {args.command} failed: {exc}", file=sys.stderr)
        return 1
    run = mlflow.MlflowClient(uri).get_run(submitted.run_id)
    keep = {k: v for k, v in run.data.tags.items() if k.startswith("facevid.") and "." not in k[8:]}
    print(json.dumps({"run_id": submitted.run_id, "status": run.info.status, "metrics": run.data.metrics,
                      "tags": keep}, indent=1, default=str))
    return 0


def cmd_export(cfg: PipelineConfig, args: argparse.Namespace) -> int:
    """``facevid export``: a gold split (or a declared mix) at a pinned version in a trainer's format."""
    from facevid.jobs.ml.data import selected_snapshot
    from facevid.udfs.train.exports import export_snapshot

    training_section(cfg)  # mixes validated
    query = argparse.Namespace(lake=cfg.lake, table=args.table, table_uri=args.table_uri or "", version=args.version,
                               split=args.split, mix=args.mix or "", config=str(cfg.path.resolve()))
    try:
        snapshot, selection = selected_snapshot(query)
        meta = export_snapshot(snapshot, args.out or cfg.file_uri("exports"), args.format, args.videos,
                               overwrite=args.overwrite, mix=selection.params() if selection else None)
    except (ValueError, FileNotFoundError, FileExistsError) as exc:
        raise ConfigError(str(exc)) from exc
    print(json.dumps({k: meta.get(k) for k in ("folder", "format", "table_uri", "version", "split", "rows",
                                               "clip_ids_sha256", "skipped", "selection")}, indent=1))
    return 0


def add_parsers(sub: Any, common: Any) -> None:
    """The ``train``, ``evaluate`` and ``export`` subcommands (``common`` adds --config/--lake/...)."""
    for command, (name, declared) in PROJECTS.items():
        what = "fine-tune a video generation model on gold" if command == "train" else \
            "generate test videos and score them (FID, FVD, CLIPScore, image quality) into meta.evaluations"
        p = sub.add_parser(command, help=f"{what} (MLflow project {name})",
                           description=f"Run mlflow_projects/{name} on this lake. Parameters: "
                           + ", ".join(x.name for x in declared if x.name != "lake")
                           + f" (training.{name} in pipeline.yml, -P overrides; README \"Training and evaluation\").")
        common(p)
        p.add_argument("-P", "--param", action="append", default=[], metavar="KEY=VALUE",
                       help="a project parameter, e.g. -P steps=200 (repeatable)")
        p.add_argument("--experiment", help="MLflow experiment name (default training.mlflow.experiment or facevid)")
        if command == "evaluate":
            p.add_argument("--mos", metavar="RATINGS_CSV", help="instead: import people's ratings (rater,model,dataset,"
                           "video_id + criterion,score or one column per criterion) -> MOS with 95%% intervals, "
                           "Table 3, meta.evaluations (entry point mos; -P criteria=..., method=...)")
    from facevid.udfs.train.exports import FORMATS, VIDEO_MODES

    exp = sub.add_parser("export", help="write a gold split at a pinned Delta version in a trainer's format",
                         description="Export gold (or another table) at a Delta version for finetrainers/CogVideoX "
                         "(prompts.txt + videos.txt), Open-Sora (data.csv) or EasyAnimate (metadata.json), into "
                         "<out>/<format>/<table>-v<version>-<split>/ with export.json (lineage).")
    common(exp)
    exp.add_argument("--format", required=True, choices=FORMATS)
    exp.add_argument("--table", default="gold.clips")
    exp.add_argument("--table-uri", help="the table's Delta location (needed for a uc: lake)")
    exp.add_argument("--version", default="latest", help="Delta version (default: the latest, resolved and recorded)")
    exp.add_argument("--split", default="train", help="train | test | all (default train)")
    exp.add_argument("--mix", help="a mix declared in training.mixes (its own split applies)")
    exp.add_argument("--videos", choices=VIDEO_MODES, help="link (default locally), copy, or uri")
    exp.add_argument("--out", help="output root (default <files root>/exports)")
    exp.add_argument("--overwrite", action="store_true", help="replace an existing export of the same version")


COMMANDS = {"train": run_project, "evaluate": run_project, "export": cmd_export}
