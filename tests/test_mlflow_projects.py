"""The MLflow project folders: declared parameters, `facevid train/evaluate` parameter handling."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from conftest import REPO, write_config

from facevid.jobs.config import ConfigError, load_config
from facevid.jobs.ml.cli import project_dir, project_params
from facevid.jobs.ml.params import EVALUATE, FINETUNE, PROJECT_ENTRIES, command_line, mlproject_parameters


@pytest.mark.parametrize("name", sorted(PROJECT_ENTRIES))
def test_each_mlproject_declares_exactly_the_entry_points_parameters(name) -> None:
    doc = yaml.safe_load((REPO / "mlflow_projects" / name / "MLproject").read_text())
    assert set(doc["entry_points"]) == set(PROJECT_ENTRIES[name])
    for entry, (params, module) in PROJECT_ENTRIES[name].items():
        declared = doc["entry_points"][entry]
        assert declared["parameters"] == mlproject_parameters(params)
        assert declared["command"] == command_line(module, params)
    assert project_dir(name) == REPO / "mlflow_projects" / name  # the installed package points at the folder


def test_project_parameters_come_from_pipeline_yml_and_p_overrides(tmp_path: Path) -> None:
    cfg = load_config(write_config(tmp_path, tmp_path / "lake"))
    params = project_params(cfg, "finetune", FINETUNE, ["steps=12", "lr=0.5", "faults=nan@3"])
    assert params["steps"] == 12 and params["lr"] == 0.5 and params["faults"] == "nan@3"
    assert params["backend"] == "tiny" and params["frames"] == 8  # training.finetune of pipeline.yml
    assert params["lake"] == str(tmp_path / "lake") and params["files"] == str(tmp_path / "lake")
    with pytest.raises(ConfigError, match="unknown parameter.*stepz"):
        project_params(cfg, "finetune", FINETUNE, ["stepz=3"])
    with pytest.raises(ConfigError, match="training.finetune.steps: 'many' is not a int"):
        project_params(cfg, "finetune", FINETUNE, ["steps=many"])
    with pytest.raises(ConfigError, match="expected KEY=VALUE"):
        project_params(cfg, "evaluate", EVALUATE, ["videos"])
    rel = project_params(cfg, "evaluate", EVALUATE, ["fid_model_path=models/inception.pt"])
    assert rel["fid_model_path"] == str((tmp_path / "models" / "inception.pt").resolve())


def test_unknown_training_keys_are_config_errors(tmp_path: Path) -> None:
    path = write_config(tmp_path, tmp_path / "lake")
    doc = yaml.safe_load(path.read_text())
    doc["training"]["mlfow"] = {}
    path.write_text(yaml.safe_dump(doc))
    with pytest.raises(ConfigError, match="training: unknown key.*mlfow"):
        project_params(load_config(path), "finetune", FINETUNE, [])


def test_evaluation_leaves_out_a_crop_it_cannot_read_and_names_it(shared_videos: Path, tmp_path: Path) -> None:
    from facevid.jobs.ml.evaluate import real_videos
    from facevid.udfs.train.reader import ClipSpec

    (tmp_path / "broken.mp4").write_bytes(b"\x00" * 100)
    uris = [str(shared_videos / "lp_d18.mp4"), str(tmp_path / "missing.mp4"), str(tmp_path / "broken.mp4")]
    skipped: dict[str, str] = {}
    videos, kept = real_videos(uris, ClipSpec(frames=4, stride=2, height=64, width=64), skipped)
    assert kept == [0] and tuple(videos.shape) == (1, 4, 3, 64, 64) and str(videos.dtype) == "torch.uint8"
    assert set(skipped) == set(uris[1:])
