"""pipeline.yml validation: every mistake is a clear ConfigError before any work starts."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from facevid.jobs.cli import main
from facevid.jobs.config import ConfigError, load_config

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
    assert order == ["ingest", "probe", "split", "faces", "quality", "crops", "restore", "embed", "av", "identities",
                     "caption", "gold", "review_tasks"]
    assert cfg.stages["gold"].inputs[0] == "silver.clips" and len(cfg.stages["gold"].inputs) == 9
    assert cfg.stages["gold"].params.side_inputs == ("review.verdicts",)
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
    from facevid.jobs.engine import start_engine

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


# -- the files root: everything that is a file, not a table ---------------------------------------

@pytest.mark.parametrize("lake", ["/data/lake", "s3://bucket/lake", "dbfs:/mnt/lake"])
def test_files_root_defaults_to_a_path_lake(tmp_path: Path, lake: str) -> None:
    cfg = load_config(write(tmp_path, base_doc()), lake=lake)
    assert cfg.files_root == lake
    assert cfg.file_uri("crops") == f"{lake}/crops"
    assert cfg.file_uri("_validation/") == f"{lake}/_validation"
    for absolute in ("/mnt/crops", "s3://other/crops", "dbfs:/x/crops", "/Volumes/main/facevid/files/crops"):
        assert cfg.file_uri(absolute + "/") == absolute  # absolute dirs are used as they are


def test_a_uc_lake_requires_the_files_root_naming_the_key(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("FACEVID_FILES", raising=False)
    path = write(tmp_path, base_doc())
    with pytest.raises(ConfigError, match="`files:` in pipeline.yml, --files or FACEVID_FILES") as err:
        load_config(path, lake="uc:main.facevid")
    assert "e.g. files: /Volumes/main/facevid/files" in str(err.value)
    doc = base_doc()
    doc["files"] = "/Volumes/main/facevid/files"
    cfg = load_config(write(tmp_path, doc), lake="uc:main.facevid")
    assert cfg.file_uri("crops") == "/Volumes/main/facevid/files/crops"
    assert cfg.file_uri(cfg.stages["gold"].params.result_dir) == "/Volumes/main/facevid/files/_validation"
    monkeypatch.setenv("FACEVID_FILES", "s3://b/files")  # the variable beats the file ...
    assert load_config(write(tmp_path, doc), lake="uc:main.facevid").files_root == "s3://b/files"
    cfg = load_config(write(tmp_path, doc), lake="uc:main.facevid", files=str(tmp_path / "f"))  # ... the flag both
    assert cfg.files_root == str(tmp_path / "f")
    with pytest.raises(ConfigError, match="must be a folder"):
        load_config(path, lake="uc:main.facevid", files="uc:main.other")


def test_relative_files_roots_follow_their_origin(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("FACEVID_FILES", raising=False)
    doc = base_doc()
    doc["files"] = "artifacts"  # in the file: relative to the file
    assert load_config(write(tmp_path, doc)).files_root == str(tmp_path / "artifacts")
    monkeypatch.chdir(tmp_path / "..")
    cfg = load_config(write(tmp_path, doc), files="here")  # on the command line: the working directory
    assert cfg.files_root == str((tmp_path / ".." / "here").resolve())


def test_cli_uc_lake_without_files_exits_2_before_any_engine(tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.delenv("FACEVID_FILES", raising=False)
    path = write(tmp_path, base_doc())
    for command in (["status"], ["report"], ["run", "--stages", "crops"], ["sql", "SELECT 1"]):
        assert main([*command, "--config", str(path), "--lake", "uc:main.facevid"]) == 2
        err = capsys.readouterr().err
        assert err.startswith("facevid: error: lake uc:main.facevid holds tables only") and err.count("\n") == 1


def test_crops_and_gate_results_go_under_the_files_root(tmp_path: Path, monkeypatch) -> None:
    import json
    from types import SimpleNamespace

    from facevid.jobs.gate import _write_result
    from facevid.jobs.stages.base import ClipTrackOp
    from facevid.jobs.stages.silver.crops import WriteCrops

    cfg = load_config(write(tmp_path, base_doc()), lake="uc:main.facevid", files=str(tmp_path / "files"))
    monkeypatch.setattr(ClipTrackOp, "input_frame", lambda self, ctx, spec: "frame")
    op = WriteCrops()
    ctx = SimpleNamespace(cfg=cfg, run_id="r1")
    assert op.input_frame(ctx, cfg.stages["crops"]) == "frame"
    assert op.root == str(tmp_path / "files" / "crops")
    uri = _write_result(ctx, cfg.stages["gold"], {"success": True})
    assert uri.startswith(str(tmp_path / "files" / "_validation" / "gold.clips" / ""))
    latest = tmp_path / "files" / "_validation" / "gold.clips" / "latest.json"
    assert json.loads(latest.read_text()) == {"success": True} == json.loads(Path(uri).read_text())


# -- --set KEY=VALUE -------------------------------------------------------------------------------

def test_set_overrides_a_declared_value_as_if_the_file_said_it(tmp_path: Path) -> None:
    path = write(tmp_path, base_doc())
    cfg = load_config(path, overrides=["stages.split.params.min_clip_s=3", "stages.crops.resources.batch=4"])
    assert cfg.stages["split"].params.min_clip_s == 3 and cfg.stages["crops"].resources.batch == 4
    (tmp_path / "m.dat").write_bytes(b"dlib")
    cfg = load_config(path, overrides=[f"stages.embed.params.model_path={tmp_path / 'm.dat'}"])
    assert cfg.stages["embed"].params.model_path == str(tmp_path / "m.dat")


@pytest.mark.parametrize("item, message", [
    ("stages.embd.params.model_path=/x.dat", "--set stages.embd.params.model_path: no stage 'embd' in pipeline.yml"),
    ("stages.split.params.min_clip=3", "stage split: unknown parameter(s) min_clip"),
    ("stages.split.params", "expected KEY=VALUE"),
    ("stages.split.version.x=1", "--set stages.split.version.x: stages.split.version is not a mapping"),
    ("stages.embed.params.model_path=/nowhere/x.dat", "model_path /nowhere/x.dat does not exist"),
])
def test_bad_set_overrides_are_clear_errors(tmp_path: Path, item: str, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, base_doc()), overrides=[item])
    assert message in str(err.value)


# -- the embed stage's dlib weights ----------------------------------------------------------------

def test_missing_dlib_weights_stop_the_run_up_front_but_not_other_stages(tmp_path: Path, capsys,
                                                                         monkeypatch) -> None:
    import facevid.udfs.face.embed

    monkeypatch.setattr(facevid.udfs.face.embed, "_bundled", lambda kind: None)  # a cluster without the package
    path = write(tmp_path, base_doc())
    cfg = load_config(path)  # other stages' commands still load the config
    assert cfg.stages["embed"].params.missing_weights() == ["model_path", "landmarks_path"]
    from facevid.jobs.cli import preflight

    preflight(cfg, ["ingest", "probe"])  # nothing to say about stages that need no weights
    assert main(["run", "--config", str(path), "--stages", "embed,identities"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and ("facevid: error: stage embed: no dlib weights: set stages.embed.params.model_path "
                                     "and stages.embed.params.landmarks_path") in err
    from facevid.jobs.stages.silver.identity import EmbedFaces

    with pytest.raises(ConfigError, match="stages.embed.params.model_path"):
        EmbedFaces().row_fn(cfg.stages["embed"])  # the runner path (no CLI) refuses as well
    (tmp_path / "r.dat").write_bytes(b"x")
    (tmp_path / "l.dat").write_bytes(b"x")
    cfg = load_config(path, overrides=[f"stages.embed.params.model_path={tmp_path / 'r.dat'}",
                                       f"stages.embed.params.landmarks_path={tmp_path / 'l.dat'}"])
    preflight(cfg, ["embed"])
