"""pipeline.yml validation: every mistake is a clear ConfigError before any work starts."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from jobs.cli import main
from jobs.config import ConfigError, load_config

REPO = Path(__file__).resolve().parents[1]


def write(tmp_path: Path, doc: dict) -> Path:
    path = tmp_path / "pipeline.yml"
    path.write_text(yaml.safe_dump(doc))
    return path


def base_doc() -> dict:
    doc = yaml.safe_load((REPO / "pipeline.yml").read_text())
    doc["stages"]["gold"]["params"]["expectations_path"] = str(REPO / "expectations")  # written elsewhere
    return doc


def test_repo_pipeline_loads_in_dependency_order() -> None:
    cfg = load_config(REPO / "pipeline.yml")
    order = [s.name for s in cfg.ordered()]
    assert order == ["ingest", "probe", "split", "faces", "quality", "crops", "embed", "identities", "gold"]
    assert cfg.stages["gold"].inputs[0] == "silver.clips" and len(cfg.stages["gold"].inputs) == 6
    assert Path(cfg.stages["gold"].params.expectations_path).is_dir()
    assert cfg.stages["faces"].params.sample_fps == 2.0
    assert cfg.stages["split"].params.min_clip_s == 2.0
    assert Path(cfg.lake).is_absolute()


def test_overrides_win(tmp_path: Path) -> None:
    cfg = load_config(REPO / "pipeline.yml", lake=str(tmp_path / "l"), sources=["s3://b/p"], engine="local")
    assert cfg.lake == str(tmp_path / "l")
    assert [(s.name, s.uri) for s in cfg.sources] == [("p", "s3://b/p")]
    assert cfg.engine == "local"


def test_stage_subset_keeps_order() -> None:
    cfg = load_config(REPO / "pipeline.yml")
    assert [s.name for s in cfg.ordered(["faces", "probe"])] == ["probe", "faces"]


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda d: d["stages"]["faces"].update(udf="faces.nope"), "unknown udf 'faces.nope'"),
        (lambda d: d["stages"]["faces"]["params"].update(sample_rate=3), "unknown parameter(s) sample_rate"),
        (lambda d: d["stages"]["faces"]["params"].update(sample_fps=-1), "stage faces"),
        (lambda d: d["stages"]["faces"].update(input="silver.nothing"), "input table silver.nothing"),
        (lambda d: d["stages"]["probe"].update(version=0), "version must be a positive integer"),
        (lambda d: d["stages"]["probe"].update(resources={"batch": 0}), "resources.batch"),
        (lambda d: d["stages"]["probe"].update(resources={"cores": 2}), "resources"),
        (lambda d: d["stages"]["probe"].update(colour="red"), "unknown key(s) colour"),
        (lambda d: d["stages"]["split"].update(output="bronze.videos"), "written by several stages"),
        (lambda d: d.pop("lake"), "no lake root"),
    ],
)
def test_bad_config_is_a_clear_error(tmp_path: Path, mutate, message: str) -> None:
    doc = base_doc()
    mutate(doc)
    with pytest.raises(ConfigError, match=None) as err:
        load_config(write(tmp_path, doc))
    assert message in str(err.value)


def test_cli_bad_config_exits_2_with_one_line(tmp_path: Path, capsys) -> None:
    doc = base_doc()
    doc["stages"]["faces"]["params"]["detector"] = "nope"
    code = main(["run", "--config", str(write(tmp_path, doc))])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("facevid: error:") and err.count("\n") == 1
    assert main(["status", "--config", str(tmp_path / "missing.yml")]) == 2
    assert main(["run", "--config", str(REPO / "pipeline.yml"), "--stages", "nope"]) == 2


def test_model_paths_resolve_relative_to_the_config_and_must_exist(tmp_path: Path) -> None:
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "yunet.onnx").write_bytes(b"onnx")
    doc = base_doc()
    doc["stages"]["faces"]["params"].update(detector="yunet", model_path="models/yunet.onnx", min_score=0.6)
    cfg = load_config(write(tmp_path, doc))
    assert cfg.stages["faces"].params.model_path == str(tmp_path / "models" / "yunet.onnx")
    doc["stages"]["faces"]["params"]["model_path"] = "models/missing.onnx"
    with pytest.raises(ConfigError, match="missing.onnx does not exist"):
        load_config(write(tmp_path, doc))
    doc["stages"]["faces"]["params"].pop("model_path")
    with pytest.raises(ConfigError, match="model_path is required for detector yunet"):
        load_config(write(tmp_path, doc))


def test_unknown_engine_is_a_config_error() -> None:
    from jobs.engine import start_engine

    with pytest.raises(ConfigError, match="unknown engine 'yarn'"):
        start_engine("yarn")


def test_multi_input_stages_and_bad_input_lists(tmp_path: Path) -> None:
    doc = base_doc()
    doc["stages"]["quality"]["input"] = ["silver.faces", "silver.faces"]
    with pytest.raises(ConfigError, match="input lists a table twice"):
        load_config(write(tmp_path, doc))
    doc = base_doc()
    doc["stages"]["quality"]["input"] = ["silver.faces", "silver.nowhere"]
    with pytest.raises(ConfigError, match="input table silver.nowhere is produced by no declared stage"):
        load_config(write(tmp_path, doc))


@pytest.mark.parametrize("rule, message", [
    ({"column": "x", "is_null": True, "min": 1}, "cannot be combined"),
    ({"min": 1}, "needs `column`"),
    ({"column": "x", "null": True}, "unknown key"),
])
def test_bad_gold_rules_are_config_errors(tmp_path: Path, rule: dict, message: str) -> None:
    doc = base_doc()
    doc["stages"]["gold"]["params"]["rules"]["bad"] = rule
    with pytest.raises(ConfigError, match=message):
        load_config(write(tmp_path, doc))
