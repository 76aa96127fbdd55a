"""The layout holds: unique import names, udfs/ never depends on the job layer, no import cycles,
modules of a readable size, ops named after the module that holds them."""

from __future__ import annotations

import ast
from pathlib import Path

from conftest import REPO

from facevid.jobs.stages import registry

PACKAGES = {"jobs": "facevid.jobs", "udfs": "facevid.udfs"}
MAX_LINES = 400


def modules() -> dict[str, Path]:
    out = {}
    for folder, package in PACKAGES.items():
        for path in sorted((REPO / folder).rglob("*.py")):
            rel = path.relative_to(REPO / folder).with_suffix("")
            parts = [p for p in rel.parts if p != "__init__"]
            out[".".join([package, *parts])] = path
    return out


def top_level_imports(path: Path, name: str) -> set[str]:
    """Modules imported at import time (not inside functions: those are deliberate late imports)."""
    tree = ast.parse(path.read_text())
    found: set[str] = set()
    is_package = path.name == "__init__.py"
    for node in tree.body:
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            base = node.module
            if node.level:
                pkg = name if is_package else name.rpartition(".")[0]
                base = ".".join([*pkg.split(".")[: len(pkg.split(".")) - node.level + 1], node.module])
            found.add(base)
            found |= {f"{base}.{a.name}" for a in node.names}
        elif isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            continue
    return {m for m in found if m.startswith("facevid.")}


def test_every_module_has_a_unique_facevid_name_and_no_old_names_remain() -> None:
    mods = modules()
    assert "facevid.jobs.runner" in mods and "facevid.udfs.media.video" in mods
    for name, path in mods.items():
        text = path.read_text()
        assert "from jobs" not in text and "from udfs" not in text and "import udfs" not in text, name


def test_udfs_never_import_the_job_layer() -> None:
    for name, path in modules().items():
        if name.startswith("facevid.udfs"):
            bad = {m for m in top_level_imports(path, name) if m.startswith("facevid.jobs")}
            assert not bad, (name, bad)
            assert "import facevid.jobs" not in path.read_text() and "from facevid.jobs" not in path.read_text(), name


def test_no_import_cycles() -> None:
    mods = modules()
    graph = {n: {m for m in top_level_imports(p, n) if m in mods and m != n} for n, p in mods.items()}
    state: dict[str, int] = {}

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for dep in sorted(graph[node]):
            if state.get(dep) == 1:
                raise AssertionError("import cycle: " + " -> ".join(stack[stack.index(dep):] + [dep]))
            if dep not in state:
                visit(dep, stack + [dep])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])


def test_modules_stay_readable() -> None:
    long = {n: len(p.read_text().splitlines()) for n, p in modules().items()}
    assert all(v <= MAX_LINES for v in long.values()), {n: v for n, v in long.items() if v > MAX_LINES}


def test_each_op_lives_in_the_module_or_folder_of_its_name() -> None:
    for name, cls in registry.items():
        if cls.__module__.startswith(("tests", "ops_for_tests", "test_")):
            continue
        prefix = name.split(".")[0]
        parts = cls.__module__.split(".")
        assert prefix in (parts[-1], parts[-2]), (name, cls.__module__)
        layer = parts[parts.index("stages") + 1]
        assert layer in ("bronze", "silver", "gold"), (name, cls.__module__)
