"""The package's import graph has no cycle: every module can be read knowing only the modules below
it (issue 27). Deferred imports inside functions count too: a cycle hidden in a function is still
a cycle for a reader, and for whoever moves the function."""
from __future__ import annotations

import ast
import graphlib
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "workflow_scripts"


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def package_imports(path: Path, modules: set[str]) -> set[str]:
    """The package's modules ``path`` imports, at module level or inside functions."""
    here = module_name(path)
    package = here if path.name == "__init__.py" else here.rpartition(".")[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = package.split(".")
            base = base[:len(base) - node.level + 1] if node.level else []
            target = ".".join(base + ([node.module] if node.module else []))
            names = [f"{target}.{a.name}" for a in node.names]
            out |= {n for n in names if n in modules} or ({target} & modules)
        elif isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name in modules}
    return out - {here}


def import_graph() -> dict[str, set[str]]:
    """Each module of the package -> the package's modules it imports."""
    files = sorted(PACKAGE.rglob("*.py"))
    modules = {module_name(f) for f in files}
    return {module_name(f): package_imports(f, modules) for f in files}


def test_the_reader_sees_the_imports_it_should():
    g = import_graph()
    assert "workflow_scripts.audit_chain" in g["workflow_scripts.audit"]
    assert "workflow_scripts.perceptron.flow" in g["workflow_scripts.perceptron.cells"]
    assert "workflow_scripts.perceptron.settings" in g["workflow_scripts.config"]  # deferred
    assert "workflow_scripts.io" in g["workflow_scripts.perceptron.cli"]  # from .. import io


def test_the_package_imports_have_no_cycle():
    sorter = graphlib.TopologicalSorter(import_graph())
    try:
        sorter.prepare()
    except graphlib.CycleError as e:
        pytest.fail(f"import cycle: {' -> '.join(e.args[1])}")


def test_a_cycle_is_found():
    """The check above can fail: a graph with a cycle in it is refused."""
    g = import_graph()
    g["workflow_scripts.seal"].add("workflow_scripts.io")
    with pytest.raises(graphlib.CycleError):
        graphlib.TopologicalSorter(g).prepare()
