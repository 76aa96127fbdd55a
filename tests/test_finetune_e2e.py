"""The MLflow projects on the shared videos' gold, as users run them: `mlflow run` of finetune (the tiny CPU
model learns; an injected NaN and a SIGKILL both roll back to the last checkpoint with a cut learning rate)
and of evaluate (FID/FVD through the published call conventions, an ONNX scorer, meta.evaluations), the
`facevid train` / `evaluate` wrappers with the default tracking store, CogVideoX through both projects, and
people's ratings imported as MOS."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO, copy_lake, rows

pytestmark = [pytest.mark.e2e, pytest.mark.spark]
BIN = Path(sys.executable).parent
STEPS, NAN_AT, KILL_AT = 300, 120, 200


def mlflow_run(project: str, store: dict, params: dict, entry: str = "main") -> str:
    """``mlflow run`` of a project folder against the test's sqlite store; returns the run id."""
    cmd = [str(BIN / "mlflow"), "run", str(REPO / "mlflow_projects" / project), "--env-manager", "local",
           "--experiment-id", store["experiment"], "-e", entry]
    for key, value in params.items():
        cmd += ["-P", f"{key}={value}"]
    env = {**os.environ, "MLFLOW_TRACKING_URI": store["uri"], "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-5000:]
    return re.findall(r"Run \(ID '([0-9a-f]+)'\) succeeded", done.stderr + done.stdout)[-1]


@pytest.fixture(scope="module")
def lake(full_run, tmp_path_factory):
    """A private copy of the shared lake (the projects add mlflow/, meta/evaluations and leases to it)."""
    ctx, _ = full_run
    return copy_lake(ctx, tmp_path_factory.mktemp("ml"))


@pytest.fixture(scope="module")
def store(lake, tmp_path_factory) -> dict:
    import mlflow

    root = tmp_path_factory.mktemp("mlflow")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    exp = mlflow.create_experiment("e2e", artifact_location=(root / "artifacts").as_uri())
    return {"uri": uri, "experiment": exp, "client": mlflow.MlflowClient(uri)}


@pytest.fixture(scope="module")
def trained(lake, store) -> str:
    """One tiny-model fine-tune of a few hundred steps, with a NaN and a kill injected."""
    return mlflow_run("finetune", store, {
        "lake": lake.cfg.lake, "steps": STEPS, "size": 32, "frames": 8, "channels": 16, "workers": 1,
        "offset": "start", "checkpoint_every": 50, "faults": f"nan@{NAN_AT},kill@{KILL_AT}",
        "register_as": "facevid-e2e"})


def test_the_tiny_model_learns_on_gold_and_recovers_from_a_nan_and_a_kill(lake, store, trained) -> None:
    client = store["client"]
    run = client.get_run(trained)
    tags, metrics = run.data.tags, run.data.metrics
    assert run.info.status == "FINISHED" and tags["facevid.status"] == "trained"
    nan = json.loads(tags["facevid.recovery.1"])
    assert nan["reason"] == "nan_loss" and nan["at_step"] == NAN_AT and nan["to_step"] == 100
    assert nan["lr_before"] == pytest.approx(1e-3) and nan["lr_after"] == pytest.approx(5e-4)
    assert json.loads(tags["facevid.crash.1"])["exit"] == -9  # SIGKILL: the supervisor restarted the worker
    crash = json.loads(tags["facevid.recovery.2"])
    assert crash["reason"] == "crash (exit -9)" and crash["to_step"] == 150  # killed inside step 200
    assert crash["lr_after"] == pytest.approx(2.5e-4)
    lrs = [m.value for m in client.get_metric_history(trained, "lr")]
    assert lrs[0] == pytest.approx(1e-3) and lrs[-1] == pytest.approx(2.5e-4) and 5e-4 in lrs
    # it learned: the last 20 healthy losses average well under the first 20
    assert metrics["loss_last20"] < 0.5 * metrics["loss_first20"], metrics
    steps = sorted(a.path.rpartition("-")[2] for a in client.list_artifacts(trained, "checkpoints"))
    assert [int(s) for s in steps] == list(range(0, STEPS + 1, 50))
    # lineage: the gold version it read, as tags and as an mlflow.data Delta input
    from deltalake import DeltaTable

    gold = lake.lake.location("gold.clips")
    train = DeltaTable(gold).to_pandas(columns=["split"]).query("split == 'train'")
    assert tags["facevid.table_version"] == str(DeltaTable(gold).version()) and tags["facevid.table_uri"] == gold
    assert tags["facevid.rows"] == str(len(train))
    (inp,) = run.inputs.dataset_inputs
    assert json.loads(inp.dataset.source) == {"path": gold, "delta_table_version": DeltaTable(gold).version()}
    version = client.get_model_version("facevid-e2e", "1")
    assert version.run_id == trained
    import mlflow
    import pandas as pd

    mlflow.set_tracking_uri(store["uri"])
    model = mlflow.pyfunc.load_model("models:/facevid-e2e/1")  # the registered pyfunc generates videos
    (video,) = model.predict(pd.DataFrame({"prompt": ["A person talks."]}),
                             params={"size": 32, "num_frames": 8, "steps": 2})
    assert video.shape == (8, 3, 32, 32) and video.min() >= 0 and video.max() <= 1


def test_evaluate_scores_generated_videos_into_meta_evaluations(lake, store, trained, tmp_path) -> None:
    from deltalake import DeltaTable
    from tiny_metrics import I3dLike, InceptionLike, onnx_scorer, scripted

    from facevid.udfs.media.video import iter_frames

    run_id = mlflow_run("evaluate", store, {
        "lake": lake.cfg.lake, "model_uri": "models:/facevid-e2e/1", "split": "all", "videos": 6, "size": 32,
        "frames": 8, "steps": 4, "resolution": 128, "save_videos": 2,
        "fid_model_path": scripted(InceptionLike(), tmp_path / "inception.pt"),
        "fvd_model_path": scripted(I3dLike(), tmp_path / "i3d.pt"),
        "aesthetic_path": onnx_scorer(tmp_path / "aesthetic.onnx", "sharpness")})
    client = store["client"]
    run = client.get_run(run_id)
    m = run.data.metrics
    assert m["FID"] > 0 and m["FVD"] > 0 and 0 < m["temporal_flicker"] <= 1 and "aesthetic" in m
    assert "CLIPScore" not in m and run.data.tags["facevid.metric.CLIPScore"] == "not configured"
    assert m["aesthetic_real"] != m["aesthetic"]
    table = DeltaTable(f"{lake.cfg.lake}/meta/evaluations").to_pandas()
    mine = table[table["run_id"] == run_id].set_index("metric")
    assert mine.loc["FID", "value"] == pytest.approx(m["FID"]) and mine.loc["FID", "n"] == 6 * 4  # frames
    assert mine.loc["FVD", "n"] == 6 and mine.loc["temporal_flicker", "n"] == 6
    assert mine.loc["FID", "extractor"].startswith("nvidia-inception@")
    assert set(mine["model_name"]) == {"facevid-e2e"} and set(mine["model_version"]) == {"1"}
    assert set(mine["table_version"]) == {DeltaTable(lake.lake.location("gold.clips")).version()}
    row = json.loads(Path(client.download_artifacts(run_id, "table2.json", str(tmp_path))).read_text())
    assert row["FID"] == pytest.approx(m["FID"]) and row["CLIPScore"] == "not configured"
    from test_annotations_e2e import readme_sql

    table2, _ = (rows(lake, s) for s in readme_sql("evaluation-sql"))  # the README's SQL, as written
    mine_row = [r for r in table2 if r["model_uri"] == "models:/facevid-e2e/1"]
    assert len(mine_row) == 1 and mine_row[0]["fid"] == pytest.approx(m["FID"])
    assert mine_row[0]["gold_version"] == DeltaTable(lake.lake.location("gold.clips")).version()
    videos = client.list_artifacts(run_id, "videos")
    assert len(videos) == 2
    local = client.download_artifacts(run_id, videos[0].path, str(tmp_path))
    assert len(list(iter_frames(local))) == 8


def test_facevid_wrappers_use_the_default_store_and_import_ratings(lake, trained, tmp_path, monkeypatch) -> None:
    import mlflow
    from deltalake import DeltaTable

    from facevid.jobs.cli import main

    cfg = lake.cfg.path
    ratings = tmp_path / "ratings.csv"
    ratings.write_text("rater,model,dataset,video_id,adherence,naturalness,visual_quality,overall\n"
                       + "".join(f"r{r},tiny,gold,v{v},{3 + (r + v) % 3},{2 + r % 2},4,{3 + v % 2}\n"
                                 for r in range(5) for v in range(4)))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)  # (set_tracking_uri exports it) the default store
    assert main(["evaluate", "--config", str(cfg), "--mos", str(ratings)]) == 0
    store = mlflow.MlflowClient(f"sqlite:///{Path(lake.cfg.files_root) / 'mlflow' / 'mlflow.db'}")
    (exp,) = [e for e in store.search_experiments() if e.name == "facevid"]
    assert exp.artifact_location == (Path(lake.cfg.files_root) / "mlflow" / "artifacts").as_uri()
    table = DeltaTable(f"{lake.cfg.lake}/meta/evaluations").to_pandas().query("model_uri == 'tiny'")
    overall = table.set_index("metric").loc["mos_overall"]
    assert overall["value"] == pytest.approx(3.5) and overall["n"] == 20
    ci = json.loads(overall["settings"])
    assert ci["ci_low"] < 3.5 < ci["ci_high"] and ci["raters"] == 5 and ci["videos"] == 4
    from test_annotations_e2e import readme_sql

    mos = {r["metric"]: r for r in rows(lake, readme_sql("evaluation-sql")[1]) if r["model_uri"] == "tiny"}
    assert set(mos) == {"mos_adherence", "mos_naturalness", "mos_visual_quality", "mos_overall"}
    assert float(mos["mos_overall"]["ci_low"]) == pytest.approx(ci["ci_low"], abs=0.005)
    assert main(["train", "--config", str(cfg), "-P", "steps=2", "-P", "size=16", "-P", "frames=4",
                 "-P", "channels=8", "-P", "register_as="]) == 0
    runs = store.search_runs([exp.experiment_id], "tags.`facevid.project` = 'finetune'")
    assert len(runs) == 1 and runs[0].data.tags["facevid.status"] == "trained"
    assert runs[0].data.params["steps"] == "2"


@pytest.mark.parametrize("mode", ["t2v", "i2v"])
def test_cogvideox_through_both_projects(lake, store, tiny_cogvideox, mode) -> None:
    run_id = mlflow_run("finetune", store, {
        "lake": lake.cfg.lake, "backend": "cogvideox", "model_path": tiny_cogvideox(mode), "mode": mode,
        "training": "lora", "lora_rank": 4, "lora_alpha": 4, "frames": 9, "size": 64, "batch_size": 1, "steps": 2,
        "lr": 1e-3, "checkpoint_every": 1, "register_as": f"facevid-cogvideox-{mode}"})
    client = store["client"]
    assert client.get_run(run_id).data.tags["facevid.status"] == "trained"
    weights = client.list_artifacts(run_id, "checkpoints/step-0000002")
    assert {Path(a.path).name for a in weights} >= {"trainable.pt", "optimizer.pt", "state.json"}
    eval_id = mlflow_run("evaluate", store, {
        "lake": lake.cfg.lake, "model_uri": f"models:/facevid-cogvideox-{mode}/1", "split": "all", "videos": 2,
        "frames": 9, "size": 64, "steps": 2, "resolution": 64, "save_videos": 1})
    m = client.get_run(eval_id).data.metrics
    assert 0 < m["temporal_flicker"] <= 1 and m["sharpness"] > 0


def test_two_training_processes_through_accelerate_launch(lake, store) -> None:
    """num_processes=2 (DDP over gloo on the CPU): both ranks train their own shard, rank 0 reports."""
    run_id = mlflow_run("finetune", store, {
        "lake": lake.cfg.lake, "steps": 6, "size": 16, "frames": 4, "channels": 8, "batch_size": 2,
        "checkpoint_every": 3, "num_processes": 2, "device": "cpu", "register_as": ""})
    client = store["client"]
    run = client.get_run(run_id)
    assert run.data.tags["facevid.status"] == "trained" and run.data.params["num_processes"] == "2"
    steps = [m.step for m in client.get_metric_history(run_id, "loss")]
    assert steps == sorted(set(steps)) and steps[-1] == 6  # one report per step, not one per rank
    state = json.loads(Path(client.download_artifacts(run_id, "checkpoints/step-0000006/state.json")).read_text())
    assert state["step"] == 6 and state["samples_seen"] == 12  # this rank's 6 x 2 samples


def test_a_new_run_continues_a_finished_one_from_its_newest_checkpoint(lake, store, trained) -> None:
    run_id = mlflow_run("finetune", store, {
        "lake": lake.cfg.lake, "steps": STEPS + 10, "size": 32, "frames": 8, "channels": 16, "offset": "start",
        "checkpoint_every": 50, "resume_from": trained, "register_as": ""})
    client = store["client"]
    tags = client.get_run(run_id).data.tags
    assert tags["facevid.resumed_from"] == trained
    event = json.loads(tags["facevid.recovery.3"])  # the recoveries count on from the checkpoint's two
    assert event["reason"] == f"resumed from run {trained}" and event["to_step"] == STEPS
    assert event["lr_after"] == pytest.approx(1.25e-4)
    assert [m.step for m in client.get_metric_history(run_id, "loss")] == [STEPS + 10]


def test_the_mosaic_reader_trains_across_epochs_and_resumes_after_a_kill(lake, store) -> None:
    """reader=mosaic: MDS shards written from the pinned snapshot; 8 train clips in batches of 4 are 2 steps
    an epoch, so 6 steps cross 3 epochs; a SIGKILL at step 5 resumes at the step-3 checkpoint's position."""
    run_id = mlflow_run("finetune", store, {
        "lake": lake.cfg.lake, "reader": "mosaic", "steps": 6, "size": 16, "frames": 4, "channels": 8,
        "batch_size": 4, "checkpoint_every": 3, "faults": "kill@5", "register_as": ""})
    client = store["client"]
    tags = client.get_run(run_id).data.tags
    assert tags["facevid.status"] == "trained" and json.loads(tags["facevid.recovery.1"])["to_step"] == 3
    state = json.loads(Path(client.download_artifacts(run_id, "checkpoints/step-0000006/state.json")).read_text())
    assert state["step"] == 6 and state["samples_seen"] == 24  # stream positions, not Mosaic's sample ids
