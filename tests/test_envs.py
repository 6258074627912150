"""The conda environments in envs/ (used with `snakemake --sdm conda`).

Conda channels cannot be reached from the machines this is developed on, so the environments are
never built here. What is checked instead: the files parse; every package they name is pinned to
requirements.txt's version; every rule that runs Python names one of them; the entry point each
rule runs imports and parses its arguments with only that environment's packages importable; and
with --sdm conda the rules call the environment's `python`, not the interpreter running Snakemake.
"""
import ast
import re
import sys
from pathlib import Path

import pytest
import yaml
from snakemake.api import SnakemakeApi
from snakemake.settings.types import (ConfigSettings, DeploymentSettings, OutputSettings,
                                      ResourceSettings)
from snakemake_interface_executor_plugins.settings import DeploymentMethod

from tests.test_published import write_published

ROOT = Path(__file__).resolve().parents[1]
ENVS = sorted((ROOT / "envs").glob("*.yaml"))
# distribution name -> import name, for the ones that differ
IMPORT_NAME = {"PyYAML": "yaml", "scikit-learn": "sklearn"}


def requirements() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, version = line.split("==")
            pins[name] = version
    return pins


def env_pins(path: Path) -> dict[str, str]:
    """{package: version} of an environment file: its pip list and its conda packages."""
    spec = yaml.safe_load(path.read_text())
    pins = {}
    for dep in spec["dependencies"]:
        for item in dep["pip"] if isinstance(dep, dict) else [dep]:
            name, *version = re.split(r"==|=", item, maxsplit=1)
            pins[name] = version[0] if version else ""
    return pins


def test_every_environment_pins_requirements_versions():
    assert [p.name for p in ENVS] == ["analysis.yaml", "train.yaml"]
    req = requirements()
    for path in ENVS:
        pins = env_pins(path)
        assert pins.pop("python") == f"{sys.version_info.major}.{sys.version_info.minor}"
        assert pins.pop("pip") == ""
        assert pins, path
        for name, version in pins.items():
            assert req.get(name) == version, f"{path.name}: {name}=={version}, requirements.txt has {req.get(name)}"
    assert "torch" in env_pins(ROOT / "envs/train.yaml")
    assert "torch" not in env_pins(ROOT / "envs/analysis.yaml")


def load_workflow(tmp_path, conda: bool):
    """The parsed workflow (every rule, the published ones included) and its globals."""
    folder = tmp_path / "published"
    write_published(folder, "cnn-mnist")
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"published": {"dir": str(folder)}}))
    deployment = DeploymentSettings(deployment_method=frozenset({DeploymentMethod.CONDA} if conda else ()))
    with SnakemakeApi(OutputSettings(quiet=None)) as api:
        wf = api.workflow(resource_settings=ResourceSettings(),
                          config_settings=ConfigSettings(configfiles=[ROOT / "config/config.yaml", config]),
                          deployment_settings=deployment, snakefile=ROOT / "Snakefile", workdir=ROOT)
        return list(wf._workflow.rules), wf._workflow.globals


@pytest.fixture(scope="module")
def rules(tmp_path_factory):
    return load_workflow(tmp_path_factory.mktemp("envs"), conda=False)[0]


def module_file(name: str) -> Path | None:
    """The source of a workflow_scripts module: its .py file, or a package's __init__.py."""
    path = ROOT / name.replace(".", "/")
    for source in (path.with_suffix(".py"), path / "__init__.py"):
        if source.exists():
            return source
    return None


def imported_packages(module: str) -> dict[str, set[str]]:
    """{top-level package: {modules of ours importing it}} for a workflow_scripts module and every
    workflow_scripts module it imports, transitively, counting imports inside functions too (most
    of the heavy ones are lazy). A package run with ``python -m`` runs its __main__.py too."""
    start = module_file(module)
    todo, seen, found = [start, start.with_name("__main__.py")], set(), {}
    while todo:
        source = todo.pop()
        if source in seen or not source.exists():
            continue
        seen.add(source)
        parts = source.relative_to(ROOT).with_suffix("").parts
        in_package = parts[-1] in ("__init__", "__main__")
        name = ".".join(parts[:-1] if in_package else parts)
        package = name if in_package else name.rsplit(".", 1)[0]
        for node in ast.walk(ast.parse(source.read_text())):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:  # from . import io, from .fit import x, from ..aggregate import y
                    parent = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                    base = parent + (f".{node.module}" if node.module else "")
                    targets = [base, *(f"{base}.{a.name}" for a in node.names)]
                else:
                    targets = [node.module]
            else:
                continue
            for t in targets:
                top = t.split(".")[0]
                if top == "workflow_scripts":
                    todo += [f for f in (module_file(t),) if f is not None]
                elif top not in sys.stdlib_module_names and top != "__future__":
                    found.setdefault(top, set()).add(name)
    return found


# Lazy imports that jobs never reach through another module: config.py imports snakemake only to
# validate a config (Snakemake does that when it loads the workflow); datasets.py imports
# torchvision only to download, which only its own entry point does (rules download, datasets).
NOT_IN_JOBS = {("snakemake", "workflow_scripts.config"), ("torchvision", "workflow_scripts.datasets")}


def test_every_python_rule_names_an_environment_that_covers_its_entry_point(rules):
    python_rules = [r for r in rules if r.shellcmd and "{PY}" in r.shellcmd]
    assert {"train", "fit", "published_import_table1", "published_fit", "perceptron_train", "numbers"} <= {r.name for r in python_rules}
    for r in rules:
        if r.shellcmd:
            assert "{PY}" in r.shellcmd, f"rule {r.name} runs a shell command without the pipeline's Python"
    for r in python_rules:
        assert r.conda_env in ("../envs/train.yaml", "../envs/analysis.yaml"), r.name
        env = ROOT / "rules" / r.conda_env
        available = {IMPORT_NAME.get(n, n) for n in env_pins(env)}
        modules = re.findall(r"-m (workflow_scripts\.\w+)", r.shellcmd)
        assert modules, r.name
        for module in modules:
            for package, users in imported_packages(module).items():
                users = {u for u in users if u == module or (package, u) not in NOT_IN_JOBS}
                assert package in available or not users, \
                    f"rule {r.name} runs {module} in {env.name}, but {sorted(users)} import {package}"


def test_the_import_scan_sees_lazy_imports():
    """sensitivity imports seaborn inside its figure function; the scan must see it, and follow a
    package's relative imports (the perceptron's figures reach seaborn through ..plot_style)."""
    assert "workflow_scripts.sensitivity" in imported_packages("workflow_scripts.sensitivity")["seaborn"]
    assert "torch" in imported_packages("workflow_scripts.train")
    pcp = imported_packages("workflow_scripts.perceptron")
    assert "scipy" in pcp and "torch" not in pcp
    assert "workflow_scripts.plot_style" in \
        imported_packages("workflow_scripts.perceptron.figures")["seaborn"]


def test_conda_deployment_runs_the_environments_python(tmp_path):
    assert load_workflow(tmp_path, conda=False)[1]["PY"] == sys.executable
    assert load_workflow(tmp_path, conda=True)[1]["PY"] == "python"
