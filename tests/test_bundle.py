"""databricks.yml, checked offline (no workspace): the JSON schema of bundles and our own contract
(wheel, CLI, pipeline stages, variables, volumes, clusters) by ``bundle_check.check_bundle``.

The document is the EXPANDED YAML (``yaml.safe_load`` resolves the anchors and ``<<`` merges the
bundle uses), so a check sees every task as the bundle CLI does. Each seeded typo below mutates a
fresh copy of the real document and must be reported with a precise message."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from bundle_check import check_bundle, load_pyproject, resolve, task_args

from facevid.jobs.config import load_config

REPO = Path(__file__).resolve().parents[1]
SCHEMA = REPO.parent / "shared" / "databricks" / "bundle_schema.json"


def bundle() -> dict[str, Any]:
    """The expanded document, as plain data (aliased nodes unshared, so a mutation hits one task)."""
    return json.loads(json.dumps(yaml.safe_load((REPO / "databricks.yml").read_text())))


@pytest.fixture(scope="module")
def cfg():
    return load_config(REPO / "pipeline.yml")


def schema_path() -> Path | None:
    pytest.importorskip("jsonschema")
    return SCHEMA if SCHEMA.exists() else None


def check(doc: dict[str, Any], cfg) -> list[str]:
    return check_bundle(doc, load_pyproject(REPO), cfg, schema_path())


def tasks(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {t["task_key"]: t for t in doc["resources"]["jobs"]["facevid_pipeline"]["tasks"]}


def params(doc: dict[str, Any], task: str) -> list[str]:
    return tasks(doc)[task]["python_wheel_task"]["parameters"]


def replace_param(task: str, old: str, new: str) -> Callable[[dict[str, Any]], None]:
    def mutate(doc: dict[str, Any]) -> None:
        p = params(doc, task)
        p[p.index(old)] = new
    return mutate


def drop_files(task: str) -> Callable[[dict[str, Any]], None]:
    def mutate(doc: dict[str, Any]) -> None:
        p = params(doc, task)
        i = p.index("--files")
        del p[i:i + 2]
    return mutate


def test_the_real_bundle_passes_every_check(cfg) -> None:
    if schema_path() is None:
        pytest.skip(f"bundle schema not found at {SCHEMA}")
    assert check(bundle(), cfg) == []


def test_anchors_expand_to_complete_tasks() -> None:
    """The shared task block is written once (anchors) but every expanded task carries it."""
    text = (REPO / "databricks.yml").read_text()
    assert text.count("package_name:") == 1 and text.count("whl: ./dist/*.whl") == 1
    for key, task in tasks(bundle()).items():
        wheel = task["python_wheel_task"]
        assert (wheel["package_name"], wheel["entry_point"]) == ("facevid_lake", "facevid"), key
        assert task["libraries"] == [{"whl": "./dist/*.whl"}] and task["job_cluster_key"] == "cpu", key
        assert wheel["parameters"], key


def test_unity_catalog_schema_volumes_and_paths() -> None:
    doc = bundle()
    assert resolve("${var.lake}", doc) == "uc:main.facevid"
    assert resolve("${var.lake}", doc, "prod") == "uc:prod.facevid"
    assert resolve("${var.files}", doc, "prod") == "/Volumes/prod/facevid/files"
    assert resolve("${var.lake}", doc, "dev") == "uc:main.facevid_${workspace.current_user.short_name}"
    assert set(doc["resources"]["volumes"]) == {"raw", "files", "reports", "models"}
    assert resolve(doc["resources"]["volumes"]["raw"]["schema_name"], doc) == "facevid"
    for key, args in task_args(doc).items():
        assert (args.lake, args.files, args.config) == ("${var.lake}", "${var.files}", "${var.config}"), key
    embed = task_args(doc)["identities"]
    assert sorted(o.split("=")[0] for o in embed.overrides) == ["stages.embed.params.landmarks_path",
                                                                "stages.embed.params.model_path"]
    assert all(o.split("=")[1].startswith("${var.dlib_weights}/") for o in embed.overrides)


def test_every_stage_runs_on_the_cpu_cluster_and_the_gpu_cluster_waits(cfg) -> None:
    doc = bundle()
    job = doc["resources"]["jobs"]["facevid_pipeline"]
    clusters = {c["job_cluster_key"]: c["new_cluster"] for c in job["job_clusters"]}
    assert clusters["gpu"]["spark_conf"]["spark.task.resource.gpu.amount"] == "0.25"
    assert "spark_conf" not in clusters["cpu"]
    assert {t["job_cluster_key"] for t in job["tasks"]} == {"cpu"}
    assert all(spec.resources.gpu == 0 for spec in cfg.stages.values())


def train_task(doc: dict[str, Any], key: str) -> dict[str, Any]:
    return {t["task_key"]: t for t in doc["resources"]["jobs"]["facevid_train"]["tasks"]}[key]


def replace_train_param(task: str, old: str, new: str) -> Callable[[dict[str, Any]], None]:
    def mutate(doc: dict[str, Any]) -> None:
        p = train_task(doc, task)["python_wheel_task"]["parameters"]
        p[p.index(old)] = new
    return mutate


def test_the_train_job_runs_both_projects_on_one_gpu_node_with_the_ml_libraries() -> None:
    doc = bundle()
    job = doc["resources"]["jobs"]["facevid_train"]
    (cluster,) = job["job_clusters"]
    assert cluster["new_cluster"]["num_workers"] == 0 and "gpu" in cluster["new_cluster"]["spark_version"]
    train, evaluate = train_task(doc, "train"), train_task(doc, "evaluate")
    assert evaluate["depends_on"] == [{"task_key": "train"}]
    args = task_args(doc, "facevid_train")
    assert args["train"].command == "train" and args["evaluate"].command == "evaluate"
    assert "backend=cogvideox" in args["train"].param and "training.mlflow.tracking_uri=databricks" in \
        args["train"].overrides
    wanted = {"diffusers>=0.42,<0.43", "peft>=0.21,<0.22", "torchmetrics>=1.9,<2"}
    for task in (train, evaluate):
        assert {lib["pypi"]["package"] for lib in task["libraries"] if "pypi" in lib} == wanted


def _gpu_faces(doc: dict[str, Any]) -> None:
    tasks(doc)["faces"]["job_cluster_key"] = "gpu"


@pytest.mark.parametrize("mutate, message", [
    (lambda d: tasks(d)["split"]["python_wheel_task"].update(package_name="facevid-lake"),
     "tasks[split]: package_name 'facevid-lake' is not the wheel's normalised project name 'facevid_lake'"),
    (lambda d: tasks(d)["gold"]["python_wheel_task"].update(entry_point="facevd"),
     "tasks[gold]: entry_point 'facevd' is not a [project.scripts] name (facevid)"),
    (replace_param("quality", "${var.lake}", "${var.lak}"),
     "tasks[3].python_wheel_task.parameters[6]: ${var.lak} is not a declared variable"),
    (lambda d: d["variables"]["files"].update(default="/Volumes/${var.catalog}/${var.shema}/files"),
     "variables.files.default: ${var.shema} is not a declared variable"),
    (lambda d: d["targets"]["prod"]["variables"].update(catalogue="prod"),
     "targets.prod.variables.catalogue: variable catalogue is not declared"),
    (replace_param("split", "split", "splt"),
     "tasks[split]: --stages names 'splt', not a stage of pipeline.yml"),
    (replace_param("identities", "embed,identities", "embed,identity"),
     "tasks[identities]: --stages names 'identity', not a stage of pipeline.yml"),
    (lambda d: tasks(d)["gold"].update(depends_on=[{"task_key": "quality"}, {"task_key": "crop"}]),
     "tasks[gold]: depends_on 'crop' is not a task"),
    (lambda d: tasks(d)["crops"].update(job_cluster_key="cpus"),
     "tasks[crops]: job_cluster_key 'cpus' is not a job cluster (declared: cpu, gpu)"),
    (lambda d: d["variables"]["source"].update(default="/Volumes/${var.catalog}/${var.schema}/videos"),
     "/Volumes/main/facevid/videos is not under a declared volume"),
    (replace_param("report", "${var.report_dir}", "/Volumes/main/facevid/report/card"),
     "tasks[7].python_wheel_task.parameters[2]: /Volumes/main/facevid/report is not under a declared volume"),
    (lambda d: d["resources"]["volumes"]["models"].update(schema_name="facevd"),
     "resources.volumes.models: schema main.facevd is not declared in resources.schemas"),
    (drop_files("crops"),
     "tasks[crops]: lake uc:main.facevid is Unity Catalog but the task passes no --files"),
    (drop_files("status"),
     "tasks[status]: lake uc:main.facevid is Unity Catalog but the task passes no --files"),
    (replace_param("identities", "stages.embed.params.model_path=${var.dlib_weights}/"
                   "dlib_face_recognition_resnet_model_v1.dat", "stages.embed.params.model=x.dat"),
     "--set stages.embed.params.model: stage embed has no parameter model"),
    (replace_param("faces", "--stages", "--stgaes"),
     "tasks[faces]: parameters do not parse with the facevid CLI: facevid: error: unrecognized arguments: --stgaes"),
    (_gpu_faces,
     "tasks[faces]: stage faces declares resources.gpu 0 but cluster gpu gives each task 0.25 GPU"),
    (lambda d: tasks(d)["split"].update(depends_on=[{"task_key": "gold"}]),
     "depends_on cycle"),
    (lambda d: tasks(d)["faces"].update(max_retries="twice"),
     "schema: resources.jobs.facevid_pipeline.tasks.2.max_retries: 'twice' is not valid under any of the given schemas"),
    (replace_train_param("train", "training=lora", "trainng=lora"),
     "tasks[train]: training.finetune: unknown parameter(s) trainng"),
    (replace_train_param("evaluate", "steps=50", "steps=fifty"),
     "tasks[evaluate]: training.evaluate.steps: 'fifty' is not a int"),
    (lambda d: tasks(d)["faces"].update(job_cluster="cpu"),
     "schema: resources.jobs.facevid_pipeline.tasks.2: Additional properties are not allowed ('job_cluster'"),
])
def test_a_seeded_typo_is_caught_with_a_precise_message(cfg, mutate, message: str) -> None:
    if "schema:" in message and schema_path() is None:
        pytest.skip(f"bundle schema not found at {SCHEMA}")
    doc = bundle()
    mutate(doc)
    problems = check(doc, cfg)
    assert any(message in p for p in problems), problems


def test_a_stage_in_no_task_is_caught(cfg) -> None:
    doc = bundle()
    doc["resources"]["jobs"]["facevid_pipeline"]["tasks"] = [
        t for t in doc["resources"]["jobs"]["facevid_pipeline"]["tasks"] if t["task_key"] != "quality"]
    for t in tasks(doc).values():
        t["depends_on"] = [d for d in t.get("depends_on", []) if d["task_key"] != "quality"]
    assert "stage quality of pipeline.yml runs in no task" in check(doc, cfg)


def test_a_gpu_stage_on_the_cpu_cluster_is_caught(tmp_path: Path) -> None:
    pipeline = yaml.safe_load((REPO / "pipeline.yml").read_text())
    pipeline["stages"]["faces"]["resources"]["gpu"] = 0.25
    pipeline["stages"]["gold"]["params"]["expectations_path"] = str(REPO / "expectations")
    (tmp_path / "pipeline.yml").write_text(yaml.safe_dump(pipeline))
    problems = check_bundle(bundle(), load_pyproject(REPO), load_config(tmp_path / "pipeline.yml"))
    assert ("jobs.facevid_pipeline.tasks[faces]: stage faces declares resources.gpu 0.25 but cluster cpu "
            "gives each task 0 GPU (spark.task.resource.gpu.amount)") in problems
