"""databricks.yml validates against the Databricks bundle JSON schema and runs our CLI contract."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest
import yaml

from jobs.cli import build_parser

REPO = Path(__file__).resolve().parents[1]
SCHEMA = REPO.parent / "shared" / "databricks" / "bundle_schema.json"


def bundle() -> dict:
    return yaml.safe_load((REPO / "databricks.yml").read_text())


def test_bundle_matches_schema() -> None:
    jsonschema = pytest.importorskip("jsonschema")
    if not SCHEMA.exists():
        pytest.skip(f"bundle schema not found at {SCHEMA}")
    # the schema's patterns use \p{L}/\p{N} (Go RE2); Python's re needs ASCII classes instead
    text = SCHEMA.read_text().replace(r"[\\p{L}\\p{N}]", "[A-Za-z0-9]").replace(r"\\p{L}", "[A-Za-z]")
    validator = jsonschema.Draft7Validator(json.loads(text))
    errors = sorted(validator.iter_errors(bundle()), key=lambda e: list(e.path))
    assert not errors, [f"{list(e.path)}: {e.message[:200]}" for e in errors]


def test_every_task_parses_with_the_cli_and_names_declared_stages() -> None:
    from jobs.config import load_config

    stages = set(load_config(REPO / "pipeline.yml").stages)
    tasks = bundle()["resources"]["jobs"]["facevid_pipeline"]["tasks"]
    covered = set()
    for task in tasks:
        wheel = task["python_wheel_task"]
        assert (wheel["package_name"], wheel["entry_point"]) == ("facevid_lake", "facevid")
        args = build_parser().parse_args(shlex.split(" ".join(wheel["parameters"])))
        if args.command == "run":
            covered |= set(args.stages.split(","))
    assert covered == stages
