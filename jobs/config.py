"""`pipeline.yml` parsed into typed specs, validated before any work starts."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml


class ConfigError(ValueError):
    """Bad configuration or input: the CLI prints it as one line and exits 2."""


@dataclass(frozen=True)
class Source:
    """A place videos come from: a local folder, ``s3://bucket/prefix`` or ``dbfs:/`` path."""

    name: str
    uri: str
    license: str = "unknown"
    identity: str | None = None  # "folder" (parent folder = person) or a CSV manifest path,identity
    labels: str | None = None  # a CSV manifest path,<attributes>[,start_s,end_s] (bronze/manifest.py)


@dataclass(frozen=True)
class Resources:
    """How a stage runs on the executors (see pipeline.yml's comment block for each field)."""

    batch: int = 32  # rows a model/UDF call sees at once (batch ops) and the Arrow batch size
    commit_rows: int = 2000  # pending keys per chunk: one distributed job and one MERGE commit each
    partitions: int = 0  # 0 = the engine's default parallelism (cores here, the cluster's on Spark)
    gpu: float = 0.0
    processes: int = 0  # >0: rows run in crash-isolated worker processes inside each task
    max_attempts: int = 3  # transient errors are retried by later runs until a row has this many attempts
    timeout_s: float = 0.0  # per-row deadline (0 = none); decode loops stop at it, workers are killed past it

    def __post_init__(self) -> None:
        if self.batch < 1 or self.commit_rows < 1:
            raise ConfigError(f"resources.batch and commit_rows must be >= 1, got {self.batch}, {self.commit_rows}")
        if self.partitions < 0 or self.processes < 0 or not 0 <= self.gpu <= 8:
            raise ConfigError("resources.partitions/processes must be >= 0 and gpu in [0, 8]")
        if self.max_attempts < 1 or self.timeout_s < 0:
            raise ConfigError(f"resources.max_attempts must be >= 1 and timeout_s >= 0, got "
                              f"{self.max_attempts}, {self.timeout_s}")


@dataclass(frozen=True)
class StageSpec:
    """One declared stage: which op (UDF) runs, what it reads and writes, at which version."""

    name: str
    op: str
    inputs: tuple[str, ...]  # the first drives the stage (its keys are the pending units)
    output: str
    version: int
    resources: Resources
    params: Any  # the op's typed params dataclass

    @property
    def input(self) -> str | None:
        """The driving input table (``None`` for source stages such as ingest)."""
        return self.inputs[0] if self.inputs else None


def is_uri(path: str) -> bool:
    """An absolute location: a URI (``s3://``, ``dbfs:/``, ``file://``) or an absolute local path."""
    return "://" in path or path.startswith(("dbfs:", "/"))


@dataclass
class PipelineConfig:
    path: Path
    lake: str
    engine: str
    sources: list[Source]
    stages: dict[str, StageSpec] = field(default_factory=dict)
    raw: dict[str, Any] = field(default_factory=dict)
    files: str = ""  # the files root: crops, validation results, the report (see file_uri)

    @property
    def files_root(self) -> str:
        """Where everything that is a file, not a table, goes: ``files:`` / ``--files`` /
        ``FACEVID_FILES``, by default the lake root itself (required for a ``uc:`` lake)."""
        return self.files.rstrip("/")

    def file_uri(self, path: str) -> str:
        """``path`` itself when absolute (a local path, ``s3://``, ``dbfs:/``), else under the files root."""
        if is_uri(path):
            return path.rstrip("/") or path
        rel = path.strip("/")
        return f"{self.files_root}/{rel}" if rel else self.files_root

    def producer(self, table: str) -> StageSpec | None:
        """The stage whose output is ``table``."""
        return next((s for s in self.stages.values() if s.output == table), None)

    def ordered(self, names: list[str] | None = None) -> list[StageSpec]:
        """Stages in dependency order (inputs before outputs); optionally only ``names``."""
        order: list[StageSpec] = []
        seen: set[str] = set()

        def visit(spec: StageSpec, stack: tuple[str, ...]) -> None:
            if spec.name in seen:
                return
            if spec.name in stack:
                raise ConfigError(f"stage cycle: {' -> '.join(stack + (spec.name,))}")
            for table in spec.inputs:
                dep = self.producer(table)
                if dep is not None and dep.name != spec.name:
                    visit(dep, stack + (spec.name,))
            seen.add(spec.name)
            order.append(spec)

        for spec in self.stages.values():
            visit(spec, ())
        if names is None:
            return order
        unknown = [n for n in names if n not in self.stages]
        if unknown:
            raise ConfigError(f"unknown stage(s) {', '.join(unknown)}; declared: {', '.join(self.stages)}")
        return [s for s in order if s.name in names]


def build_params(cls: type, values: dict[str, Any] | None, where: str) -> Any:
    """Instantiate an op's params dataclass, turning unknown keys and bad values into ConfigError."""
    values = dict(values or {})
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(f"{where}: unknown parameter(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    try:
        return cls(**values)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{where}: {exc}") from exc


def _resolve(uri: str, base: Path) -> str:
    """Relative local paths are relative to the config file; URIs pass through."""
    if "://" in uri or uri.startswith(("dbfs:", "uc:")):
        return uri
    p = Path(os.path.expanduser(uri))
    return str(p if p.is_absolute() else (base / p).resolve())


def _resolve_paths(params: dict[str, Any] | None, base: Path) -> dict[str, Any] | None:
    """Parameters named ``*_path`` (model weights) are relative to the config file, like sources."""
    if not params:
        return params
    return {k: _resolve(v, base) if k.endswith("_path") and isinstance(v, str) else v for k, v in params.items()}


def _inputs(stage: str, value: Any) -> tuple[str, ...]:
    """``input:`` is one table or a list of tables (the first drives the stage)."""
    if value is None:
        return ()
    tables = [value] if isinstance(value, str) else value
    if not isinstance(tables, list) or not tables or not all(isinstance(t, str) and t for t in tables):
        raise ConfigError(f"stage {stage}: input must be a table name or a non-empty list of table names")
    if len(set(tables)) != len(tables):
        raise ConfigError(f"stage {stage}: input lists a table twice")
    return tuple(tables)


def _manifest(i: int, key: str, value: Any, base: Path, hint: str = "") -> str:
    """A source's manifest file (``identity:``/``labels:``): relative to the config file, must exist
    unless it is a URI (checked when ingest reads it)."""
    path = _resolve(str(value), base)
    if "://" not in path and not Path(path).is_file():
        raise ConfigError(f"sources[{i}].{key}: manifest {path} not found{hint}")
    return path


def apply_overrides(raw: dict[str, Any], overrides: list[str], where: str) -> None:
    """``KEY=VALUE`` overrides (``--set``) written into the parsed file, as if the file said so:
    ``KEY`` is a dotted path (``stages.embed.params.model_path``), ``VALUE`` a YAML scalar."""
    for item in overrides:
        key, sep, text = item.partition("=")
        parts = [p for p in key.strip().split(".") if p]
        if not sep or not parts:
            raise ConfigError(f"--set {item!r}: expected KEY=VALUE, e.g. stages.embed.params.model_path=/Volumes/...")
        try:
            value = yaml.safe_load(text) if text.strip() else None
        except yaml.YAMLError:
            value = text
        if parts[0] == "stages" and len(parts) > 2 and parts[1] not in (raw.get("stages") or {}):
            raise ConfigError(f"--set {key}: no stage {parts[1]!r} in {where}; declared: "
                              f"{', '.join(raw.get('stages') or {})}")
        node: Any = raw
        for depth, part in enumerate(parts[:-1]):
            if node.get(part) is None:
                node[part] = {}
            node = node[part]
            if not isinstance(node, dict):
                raise ConfigError(f"--set {key}: {'.'.join(parts[:depth + 1])} is not a mapping")
        node[parts[-1]] = value


def _files_root(files: str | None, lake: str, raw: dict[str, Any], base: Path, cfg_path: Path) -> str:
    """``--files`` > ``FACEVID_FILES`` > ``files:`` > the lake root (path lakes only)."""
    value = files or os.environ.get("FACEVID_FILES")
    origin = Path.cwd()
    if not value and raw.get("files"):
        value, origin = str(raw["files"]), base
    if not value:
        if lake.startswith("uc:"):
            catalog, _, schema = lake[3:].partition(".")
            raise ConfigError(f"lake {lake} holds tables only: set the files root for crops, validation "
                              f"results and the report (`files:` in {cfg_path.name}, --files or FACEVID_FILES), "
                              f"e.g. files: /Volumes/{catalog or 'main'}/{schema or 'facevid'}/files")
        return lake
    if value.startswith("uc:"):
        raise ConfigError(f"files root {value!r} must be a folder (a path, /Volumes/..., dbfs:/ or s3://), not uc:")
    return _resolve(value, origin)


def load_config(
    path: str | os.PathLike[str],
    lake: str | None = None,
    sources: list[str] | None = None,
    engine: str | None = None,
    files: str | None = None,
    overrides: list[str] | None = None,
) -> PipelineConfig:
    """Read and validate ``pipeline.yml``; CLI overrides win over the file (``overrides`` are
    ``--set KEY=VALUE`` items applied to the file's content before validation)."""
    import importlib

    from facevid.jobs.stages import registry  # late import: stages import this module

    cfg_path = Path(path)
    if not cfg_path.is_file():
        raise ConfigError(f"config file not found: {cfg_path}")
    try:
        raw = yaml.safe_load(cfg_path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{cfg_path}: invalid YAML: {exc}".splitlines()[0]) from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"{cfg_path}: top level must be a mapping")
    apply_overrides(raw, overrides or [], cfg_path.name)
    base = cfg_path.resolve().parent
    for module in raw.get("plugins") or []:  # modules whose import registers more ops
        try:
            importlib.import_module(str(module))
        except ImportError as exc:
            raise ConfigError(f"{cfg_path}: plugin {module!r} cannot be imported: {exc}") from exc
    lake_root = lake or os.environ.get("FACEVID_LAKE") or raw.get("lake")
    if not lake_root:
        raise ConfigError(f"{cfg_path}: no lake root (set `lake:` or pass --lake)")
    if sources:
        srcs = [Source(name=Path(s.rstrip("/")).name or "source", uri=_resolve(s, Path.cwd())) for s in sources]
    else:
        srcs = []
        for i, s in enumerate(raw.get("sources") or []):
            if not isinstance(s, dict) or "uri" not in s:
                raise ConfigError(f"sources[{i}]: needs at least `uri`")
            extra = sorted(set(s) - {"name", "uri", "license", "identity", "labels"})
            if extra:
                raise ConfigError(f"sources[{i}]: unknown key(s) {', '.join(extra)}")
            ident, labels = s.get("identity"), s.get("labels")
            if ident is not None and ident != "folder":
                ident = _manifest(i, "identity", ident, base, " (or use `folder`)")
            srcs.append(Source(name=str(s.get("name", f"source{i}")), uri=_resolve(str(s["uri"]), base),
                               license=str(s.get("license", "unknown")), identity=ident,
                               labels=None if labels is None else _manifest(i, "labels", labels, base)))
    lake_uri = _resolve(str(lake_root), Path.cwd() if lake else base)
    cfg = PipelineConfig(path=cfg_path, lake=lake_uri, engine=engine or str(raw.get("engine", "auto")),
                         sources=srcs, raw=raw, files=_files_root(files, lake_uri, raw, base, cfg_path))
    stages = raw.get("stages") or {}
    if not isinstance(stages, dict) or not stages:
        raise ConfigError(f"{cfg_path}: `stages:` must map stage names to declarations")
    for name, decl in stages.items():
        decl = decl or {}
        op_name = decl.get("udf", name)
        op = registry.get(op_name)
        if op is None:
            raise ConfigError(f"stage {name}: unknown udf {op_name!r}; registered: {', '.join(sorted(registry))}")
        extra = sorted(set(decl) - {"udf", "input", "output", "version", "resources", "params"})
        if extra:
            raise ConfigError(f"stage {name}: unknown key(s) {', '.join(extra)}")
        try:
            res = Resources(**(decl.get("resources") or {}))
        except TypeError as exc:
            raise ConfigError(f"stage {name}: resources: {exc}") from exc
        version = decl.get("version", 1)
        if not isinstance(version, int) or version < 1:
            raise ConfigError(f"stage {name}: version must be a positive integer")
        cfg.stages[name] = StageSpec(
            name=name, op=op_name, inputs=_inputs(name, decl.get("input", op.default_input)),
            output=decl.get("output", op.default_output), version=version, resources=res,
            params=build_params(op.params_cls, _resolve_paths(decl.get("params"), base), f"stage {name}"),
        )
    for spec in cfg.stages.values():
        owners = [s.name for s in cfg.stages.values() if s.output == spec.output]
        if len(owners) > 1:
            raise ConfigError(f"table {spec.output} is written by several stages: {', '.join(owners)}")
    for spec in cfg.stages.values():
        for table in spec.inputs:
            if cfg.producer(table) is None:
                raise ConfigError(f"stage {spec.name}: input table {table} is produced by no declared stage")
    cfg.ordered()  # raises on cycles
    return cfg
