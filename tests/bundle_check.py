"""Offline checks of ``databricks.yml`` against this repository: what ``databricks bundle validate``
cannot know (our wheel, CLI and pipeline) plus what it only finds with a workspace.

``check_bundle(doc)`` takes the EXPANDED document (``yaml.safe_load`` resolves anchors and ``<<``
merges) and returns one message per problem, ``[]`` when the bundle is sound:

- the JSON schema of bundles (``../shared/databricks/bundle_schema.json``), when given;
- ``package_name`` is the wheel's normalised project name, ``entry_point`` a ``[project.scripts]`` name;
- every ``${var.x}`` is declared (also in variable defaults and targets), every ``${resources.*}``
  names a declared resource, no other reference namespace is used;
- every task's parameters parse with ``facevid``'s own parser, ``--stages`` names stages of
  ``pipeline.yml``, ``--set`` names a parameter of a declared stage, every stage runs in some task;
- ``depends_on`` and ``job_cluster_key`` name existing tasks and job clusters, task keys are unique
  and the dependencies have no cycle;
- every ``/Volumes/<catalog>/<schema>/<volume>`` path (resolved for each target) lies in a declared
  volume, and every volume in a declared schema;
- a task whose lake is ``uc:`` passes ``--files``;
- each stage's ``resources.gpu`` equals its cluster's ``spark.task.resource.gpu.amount`` (0 without).
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import re
import tomllib
from pathlib import Path
from typing import Any

from facevid.jobs.cli import build_parser
from facevid.jobs.config import ConfigError, PipelineConfig, apply_overrides

REF = re.compile(r"\$\{([A-Za-z0-9_.\-\[\]]+)\}")
VOLUME_PATH = re.compile(r"/Volumes/([^/\s=,\"']+)/([^/\s=,\"']+)/([^/\s=,\"']+)")
NAMESPACES = ("var", "bundle", "workspace", "resources", "artifacts")
GPU_CONF = "spark.task.resource.gpu.amount"


def _strings(node: Any, path: str = "") -> list[tuple[str, str]]:
    """Every string in ``node`` with its dotted location."""
    if isinstance(node, dict):
        return [s for k, v in node.items() for s in _strings(v, f"{path}.{k}" if path else str(k))]
    if isinstance(node, list):
        return [s for i, v in enumerate(node) for s in _strings(v, f"{path}[{i}]")]
    return [(path, node)] if isinstance(node, str) else []


def _lookup(doc: dict[str, Any], dotted: str) -> Any:
    node: Any = doc
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def resolve(value: str, doc: dict[str, Any], target: str | None = None, depth: int = 0) -> str:
    """``value`` with ``${var.x}`` (a target's override first, then the default) and plain
    ``${resources....}`` references substituted; other references are left as written."""
    overrides = ((doc.get("targets") or {}).get(target) or {}).get("variables") or {} if target else {}

    def sub(m: re.Match[str]) -> str:
        ref = m.group(1)
        if ref.startswith("var."):
            name = ref[4:]
            raw = overrides.get(name, ((doc.get("variables") or {}).get(name) or {}).get("default"))
            if isinstance(raw, dict):  # a target may give {default: ...}
                raw = raw.get("default")
            return m.group(0) if raw is None or depth > 8 else resolve(str(raw), doc, target, depth + 1)
        if ref.startswith("resources."):
            found = _lookup(doc, ref)
            return resolve(found, doc, target, depth + 1) if isinstance(found, str) and depth <= 8 else m.group(0)
        return m.group(0)

    return REF.sub(sub, value)


def _schema_errors(doc: dict[str, Any], schema_path: Path) -> list[str]:
    import jsonschema

    # the schema's patterns use \p{L}/\p{N} (Go RE2); Python's re needs ASCII classes instead
    text = schema_path.read_text().replace(r"[\\p{L}\\p{N}]", "[A-Za-z0-9]").replace(r"\\p{L}", "[A-Za-z]")
    validator = jsonschema.Draft7Validator(json.loads(text))

    def deepest(e: Any) -> Any:
        """The schema's oneOf (object | ${...} string) reports at the top: take the deepest cause."""
        if not e.context:
            return e
        def rank(c: Any) -> tuple[int, bool]:  # deeper first; then a real cause over "not the other type"
            return len(c.absolute_path), c.validator not in ("type", "pattern")

        best = max((deepest(c) for c in e.context), key=rank)
        return best if rank(best) > (len(e.absolute_path), False) else e

    errors = {(".".join(str(p) for p in d.absolute_path) or "<root>", d.message[:200])
              for d in map(deepest, validator.iter_errors(doc))}
    return [f"schema: {where}: {message}" for where, message in sorted(errors)]


def _parse(params: list[str]) -> tuple[Any, str | None]:
    """Parse a task's parameters with the real CLI parser: (namespace, None) or (None, error)."""
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            return build_parser().parse_args([str(p) for p in params]), None
    except SystemExit:
        lines = [ln for ln in err.getvalue().strip().splitlines() if ln.strip()]
        return None, lines[-1] if lines else "does not parse"


def _cycle(deps: dict[str, list[str]]) -> list[str] | None:
    state: dict[str, int] = {}

    def visit(node: str, stack: list[str]) -> list[str] | None:
        if state.get(node) == 1:
            return stack[stack.index(node):] + [node]
        if state.get(node) == 2 or node not in deps:
            return None
        state[node] = 1
        for nxt in deps[node]:
            found = visit(nxt, stack + [node])
            if found:
                return found
        state[node] = 2
        return None

    for key in deps:
        found = visit(key, [])
        if found:
            return found
    return None


def check_bundle(doc: dict[str, Any], pyproject: dict[str, Any], cfg: PipelineConfig,
                 schema_path: Path | None = None) -> list[str]:
    """All problems of the expanded bundle ``doc`` against ``pyproject`` and the pipeline ``cfg``."""
    problems: list[str] = []
    if schema_path is not None:
        problems += _schema_errors(doc, schema_path)

    # -- references ------------------------------------------------------------------------
    declared = set(doc.get("variables") or {})
    for target, tdoc in (doc.get("targets") or {}).items():
        for name in sorted(set((tdoc or {}).get("variables") or {}) - declared):
            problems.append(f"targets.{target}.variables.{name}: variable {name} is not declared in `variables`")
    for where, text in _strings(doc):
        for ref in REF.findall(text):
            ns = ref.split(".")[0]
            if ns not in NAMESPACES:
                problems.append(f"{where}: unknown reference ${{{ref}}} (namespaces: {', '.join(NAMESPACES)})")
            elif ns == "var" and ref.split(".")[1] not in declared:
                problems.append(f"{where}: ${{{ref}}} is not a declared variable (declared: {', '.join(sorted(declared))})")
            elif ns == "resources" and _lookup(doc, ".".join(ref.split(".")[:3])) is None:
                problems.append(f"{where}: ${{{ref}}} names no declared resource")

    # -- volumes and schemas ---------------------------------------------------------------
    resources = doc.get("resources") or {}
    targets = [None, *(doc.get("targets") or {})]
    flagged: set[str] = set()  # a place wrong for every target is reported once, without a target
    for target in targets:
        label = f" (target {target})" if target else ""
        schemas = {(resolve(str(s.get("catalog_name")), doc, target), resolve(str(s.get("name")), doc, target))
                   for s in (resources.get("schemas") or {}).values()}
        volumes = {}
        for key, vol in (resources.get("volumes") or {}).items():
            cat, sch, name = (resolve(str(vol.get(k)), doc, target) for k in ("catalog_name", "schema_name", "name"))
            volumes[(cat, sch, name)] = key
            if (cat, sch) not in schemas:
                problems.append(f"resources.volumes.{key}{label}: schema {cat}.{sch} is not declared in resources.schemas")
        for where, text in _strings({k: v for k, v in doc.items() if k != "targets"}):
            for m in VOLUME_PATH.finditer(resolve(text, doc, target)):
                if tuple(m.groups()) not in volumes and where not in flagged:
                    flagged.add(where)
                    known = ", ".join(f"/Volumes/{'/'.join(v)}" for v in volumes)
                    problems.append(f"{where}{label}: {m.group(0)} is not under a declared volume ({known})")

    # -- the wheel -------------------------------------------------------------------------
    project = pyproject["project"]
    wheel_name = re.sub(r"[-_.]+", "_", project["name"]).lower()
    scripts = set(project.get("scripts") or {})

    # -- jobs ------------------------------------------------------------------------------
    covered: set[str] = set()
    for job_key, job in (resources.get("jobs") or {}).items():
        clusters = {c.get("job_cluster_key"): c.get("new_cluster") or {} for c in job.get("job_clusters") or []}
        tasks = job.get("tasks") or []
        keys = [t.get("task_key") for t in tasks]
        for dup in sorted({k for k in keys if keys.count(k) > 1}):
            problems.append(f"jobs.{job_key}: task_key {dup} is used twice")
        deps = {t.get("task_key"): [d.get("task_key") for d in t.get("depends_on") or []] for t in tasks}
        cycle = _cycle(deps)
        if cycle:
            problems.append(f"jobs.{job_key}: depends_on cycle {' -> '.join(cycle)}")
        for task in tasks:
            tk = task.get("task_key")
            where = f"jobs.{job_key}.tasks[{tk}]"
            for dep in deps.get(tk, []):
                if dep not in keys:
                    problems.append(f"{where}: depends_on {dep!r} is not a task (tasks: {', '.join(keys)})")
            ck = task.get("job_cluster_key")
            if ck is not None and ck not in clusters:
                problems.append(f"{where}: job_cluster_key {ck!r} is not a job cluster (declared: {', '.join(clusters)})")
            wheel = task.get("python_wheel_task")
            if wheel is None:
                continue
            if wheel.get("package_name") != wheel_name:
                problems.append(f"{where}: package_name {wheel.get('package_name')!r} is not the wheel's "
                                f"normalised project name {wheel_name!r}")
            if wheel.get("entry_point") not in scripts:
                problems.append(f"{where}: entry_point {wheel.get('entry_point')!r} is not a [project.scripts] "
                                f"name ({', '.join(sorted(scripts))})")
            args, error = _parse([resolve(str(p), doc) for p in wheel.get("parameters") or []])
            if args is None:
                problems.append(f"{where}: parameters do not parse with the facevid CLI: {error}")
                continue
            if not args.config:
                problems.append(f"{where}: no --config")
            elif not args.config.endswith("/" + cfg.path.name) and args.config != cfg.path.name:
                problems.append(f"{where}: --config {args.config} is not the synced {cfg.path.name}")
            lake = args.lake or ""
            if lake.startswith("uc:") and not args.files:
                problems.append(f"{where}: lake {lake} is Unity Catalog but the task passes no --files "
                                f"(crops, gate results and the report need a files root)")
            stages = [s.strip() for s in (getattr(args, "stages", None) or "").split(",") if s.strip()]
            if args.command == "run" and not stages:
                problems.append(f"{where}: `run` without --stages (each task runs its own stages)")
            for name in stages:
                if name not in cfg.stages:
                    problems.append(f"{where}: --stages names {name!r}, not a stage of {cfg.path.name} "
                                    f"({', '.join(cfg.stages)})")
            covered |= set(stages)
            for item in args.overrides:
                problems += _check_override(where, item, cfg)
            if args.command in ("train", "evaluate"):  # -P names and types: the MLflow project's parameters
                from facevid.jobs.ml.cli import PROJECTS, project_params

                try:
                    project_params(cfg, PROJECTS[args.command][0], PROJECTS[args.command][1], args.param)
                except ConfigError as exc:
                    problems.append(f"{where}: {exc}")
            amount = float((clusters.get(ck) or {}).get("spark_conf", {}).get(GPU_CONF, 0) or 0)
            for name in stages:
                spec = cfg.stages.get(name)
                if spec is not None and spec.resources.gpu != amount:
                    problems.append(f"{where}: stage {name} declares resources.gpu {spec.resources.gpu:g} but "
                                    f"cluster {ck} gives each task {amount:g} GPU ({GPU_CONF})")
    for name in cfg.stages:
        if resources.get("jobs") and name not in covered:
            problems.append(f"stage {name} of {cfg.path.name} runs in no task")
    return problems


def _check_override(where: str, item: str, cfg: PipelineConfig) -> list[str]:
    """``--set stages.<stage>.params.<name>=...`` must name a parameter the stage's op has."""
    key = item.partition("=")[0]
    try:
        apply_overrides({"stages": {n: {} for n in cfg.stages}}, [item], cfg.path.name)
    except ConfigError as exc:
        return [f"{where}: {exc}"]
    parts = key.split(".")
    if parts[0] == "stages" and len(parts) == 4 and parts[2] == "params":
        fields = {f.name for f in dataclasses.fields(type(cfg.stages[parts[1]].params))}
        if parts[3] not in fields:
            return [f"{where}: --set {key}: stage {parts[1]} has no parameter {parts[3]} ({', '.join(sorted(fields))})"]
    return []


def load_pyproject(repo: Path) -> dict[str, Any]:
    return tomllib.loads((repo / "pyproject.toml").read_text())


def task_args(doc: dict[str, Any], job: str = "facevid_pipeline") -> dict[str, Any]:
    """``task_key -> parsed facevid arguments`` of a job (for tests)."""
    return {t["task_key"]: build_parser().parse_args(t["python_wheel_task"]["parameters"])
            for t in doc["resources"]["jobs"][job]["tasks"]}


