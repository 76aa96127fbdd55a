"""MLflow for the projects: where runs go, lineage to Delta versions, checkpoints as artifacts.

- **Where**: ``training.mlflow`` in ``pipeline.yml`` (or the environment): a tracking URI (default
  ``sqlite:///<files root>/mlflow/mlflow.db``, an absolute path, so every process and ``mlflow ui``
  finds the same store; ``databricks`` on a workspace) and an experiment created with an explicit
  artifact location (default ``<files root>/mlflow/artifacts``; never ``./mlruns`` of whatever folder
  a process happened to start in).
- **Lineage**: every run logs the Delta table it read as an ``mlflow.data`` input whose source is a
  ``DeltaDatasetSource`` (path or Unity Catalog name + version) and, because that source drops
  version 0 when serialised, the tags ``facevid.table``, ``facevid.table_uri``,
  ``facevid.table_version`` and ``facevid.split``.
- **Checkpoints**: the loop's checkpoint folders go to the run's artifacts under
  ``checkpoints/step-N``; a resume takes the newest complete one (local copy first, else downloaded).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from facevid.jobs.config import ConfigError
from facevid.udfs.media.storage import is_s3, to_local
from facevid.udfs.train.checkpoints import FILES, LoopState, local_checkpoints

TAG = "facevid"


def default_tracking_uri(files_root: str) -> str:
    """``sqlite:///<abs files root>/mlflow/mlflow.db`` for a local files root."""
    if is_s3(files_root) or files_root.startswith("/Volumes/"):
        raise ConfigError(f"files root {files_root} is not a local folder: set training.mlflow.tracking_uri "
                          "(e.g. `databricks` on a workspace, or sqlite:////abs/path/mlflow.db)")
    db = Path(to_local(files_root)).expanduser().resolve() / "mlflow" / "mlflow.db"
    db.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{db}"


def default_artifact_location(files_root: str) -> str:
    if is_s3(files_root):
        return f"{files_root.rstrip('/')}/mlflow/artifacts"
    return (Path(to_local(files_root)).expanduser().resolve() / "mlflow" / "artifacts").as_uri()


def experiment_id(tracking_uri: str, name: str, artifact_location: str | None) -> str:
    """The experiment ``name`` on ``tracking_uri``, created with ``artifact_location`` if new."""
    import mlflow

    mlflow.set_tracking_uri(tracking_uri)
    exp = mlflow.get_experiment_by_name(name)
    if exp is not None:
        return exp.experiment_id
    try:
        return mlflow.create_experiment(name, artifact_location=artifact_location)
    except Exception:  # created meanwhile by another process
        exp = mlflow.get_experiment_by_name(name)
        if exp is None:
            raise
        return exp.experiment_id


def setup_tracking(lake: str, files_root: str | None = None) -> str:
    """Point this process at the tracking store: ``MLFLOW_TRACKING_URI`` when set (``facevid train`` and
    ``mlflow run`` set it), else the default store under the files root (the lake root for a path lake),
    and the experiment ``MLFLOW_EXPERIMENT_NAME`` (default ``facevid``) unless ``MLFLOW_EXPERIMENT_ID``
    is set, created with its artifact location. Returns the experiment id."""
    import os

    import mlflow

    root = files_root or lake
    uri = os.environ.get("MLFLOW_TRACKING_URI") or default_tracking_uri(root)
    mlflow.set_tracking_uri(uri)
    if os.environ.get("MLFLOW_EXPERIMENT_ID"):
        return os.environ["MLFLOW_EXPERIMENT_ID"]
    name = os.environ.get("MLFLOW_EXPERIMENT_NAME") or "facevid"
    exp = experiment_id(uri, name, os.environ.get("FACEVID_ARTIFACT_LOCATION") or default_artifact_location(root))
    mlflow.set_experiment(experiment_id=exp)
    return exp


def log_params_once(params: dict[str, Any]) -> None:
    """Log the parameters the active run does not have yet (``mlflow run`` logs the project's own)."""
    import mlflow

    run = mlflow.active_run()
    have = mlflow.MlflowClient().get_run(run.info.run_id).data.params if run else {}
    mlflow.log_params({k: v for k, v in params.items() if k not in have})


def log_lineage(table: str, table_uri: str, version: int, split: str | None, rows: Any, context: str) -> None:
    """The Delta table/version the ACTIVE run read: an ``mlflow.data`` input plus tags (module docstring).
    ``rows`` is a pandas frame of the rows read (clip ids and captions; no tensors)."""
    import mlflow
    from mlflow.data.delta_dataset_source import DeltaDatasetSource

    source = (DeltaDatasetSource(delta_table_name=table_uri[3:], delta_table_version=version)
              if table_uri.startswith("uc:") else DeltaDatasetSource(path=table_uri, delta_table_version=version))
    name = f"{table}@v{version}" + (f"/{split}" if split else "")
    mlflow.log_input(mlflow.data.from_pandas(rows, source=source, name=name), context=context)
    prefix = f"{TAG}." if context == "training" else f"{TAG}.{context}."
    mlflow.set_tags({prefix + "table": table, prefix + "table_uri": table_uri, prefix + "table_version": str(version),
                     prefix + "split": split or "all", prefix + "rows": str(len(rows))})


def log_selection(selection: Any) -> None:
    """A mix or evaluation set the active run used: its facts as params, its per-source and per-ethnicity
    report (hours, clips, target vs achieved share) as artifacts ``selection/*.csv``, its notes as a tag."""
    import tempfile

    import mlflow

    if selection is None:
        return
    log_params_once(selection.params())
    with tempfile.TemporaryDirectory() as tmp:
        selection.report.to_csv(Path(tmp) / "sources.csv", index=False)
        selection.ethnicity.to_csv(Path(tmp) / "ethnicity.csv", index=False)
        mlflow.log_artifacts(tmp, "selection")
    if selection.notes:
        mlflow.set_tag(f"{TAG}.selection_notes", " | ".join(selection.notes)[:5000])


def fault_tag(fault: str) -> str:
    return f"{TAG}.fault.{fault.replace('@', '_at_')}"


class MlflowHooks:
    """The training loop's hooks (``facevid.udfs.train.loop.Hooks``) on one MLflow run."""

    def __init__(self, client: Any, run_id: str) -> None:
        self.client, self.run_id = client, run_id

    def metrics(self, values: dict[str, float], step: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self.client.log_batch(self.run_id, metrics=[Metric(k, float(v), now, step) for k, v in values.items()])

    def checkpoint(self, folder: Path, state: LoopState) -> None:
        self.client.log_artifacts(self.run_id, str(folder), artifact_path=f"checkpoints/{folder.name}")
        self.client.set_tag(self.run_id, f"{TAG}.last_checkpoint", folder.name)

    def event(self, name: str, detail: dict[str, Any]) -> None:
        n = detail.get("recovery", int(time.time()))
        self.client.set_tag(self.run_id, f"{TAG}.{name}.{n}", json.dumps(detail, sort_keys=True))

    def fired(self) -> set[str]:
        tags = self.client.get_run(self.run_id).data.tags
        return {k[len(f"{TAG}.fault."):].replace("_at_", "@") for k in tags if k.startswith(f"{TAG}.fault.")}

    def mark_fired(self, fault: str) -> None:
        self.client.set_tag(self.run_id, fault_tag(fault), "fired")


def newest_checkpoint(client: Any, run_id: str, workdir: Path) -> Path | None:
    """The newest complete checkpoint of the run: the local copy in ``workdir`` when there is one
    (a restart on the same machine), else the newest complete one in the run's artifacts."""
    local = local_checkpoints(workdir / "checkpoints")
    complete = [p for p in local if all((p / f).is_file() for f in FILES)]
    names = sorted((a.path.rpartition("/")[2] for a in client.list_artifacts(run_id, "checkpoints") if a.is_dir),
                   reverse=True)
    if complete and (not names or complete[-1].name >= names[0]):
        return complete[-1]
    for name in names:
        dst = workdir / "downloaded"
        dst.mkdir(parents=True, exist_ok=True)
        folder = Path(client.download_artifacts(run_id, f"checkpoints/{name}", str(dst)))
        if all((folder / f).is_file() for f in FILES):
            return folder
    return complete[-1] if complete else None
