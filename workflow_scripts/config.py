"""Configuration: validation against the JSON schema, semantic checks, and resolution of cells.

The workflow (rules/common.smk) and every entry point go through ``load_config``, so a bad key or
value stops a run before any job starts, with a message naming the key and the allowed values.

    python -m workflow_scripts.config check config/config.yaml
    python -m workflow_scripts.config cells config/quick.yaml --experiment main --arch cnn \
        --dataset digits --P 100 --seeds 0 1      # JSON list of resolved cell configs, for train
"""
from __future__ import annotations

import argparse
import copy
import json
import math
import sys
from pathlib import Path

import yaml

from . import REPO_ROOT
from .batches import chunk_seeds
from .datasets import AUTHORS_INPUTS, DATASET_SIZES

SCHEMA = REPO_ROOT / "config" / "schema" / "config.schema.yaml"
PERCEPTRON_SCHEMA = REPO_ROOT / "config" / "schema" / "perceptron.schema.yaml"


# The schema is the one list of what exists; code and wildcards read it from there (parsed once:
# every analysis job imports this module).
_DEFS = yaml.safe_load(SCHEMA.read_text())["$defs"]
ARCHS, DATASETS, MEASURES = (tuple(_DEFS[f"{name}_name"]["enum"])
                             for name in ("arch", "dataset", "measure"))


class ConfigError(ValueError):
    """An invalid configuration; the message names the key."""


def _key_path(parts) -> str:
    out = ""
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out or "<top level>"


def _validate(section: dict, schema: Path, where: str) -> None:
    import jsonschema
    from snakemake.exceptions import WorkflowError
    from snakemake.utils import validate

    try:
        validate(section, str(schema), set_default=True)
    except WorkflowError as e:
        cause = e.__context__  # snakemake raises WorkflowError from inside its except clause
        if not isinstance(cause, jsonschema.ValidationError):
            raise ConfigError(f"{where}: {e}") from e
        # the deepest, most specific error says best what is wrong
        best = jsonschema.exceptions.best_match([cause]) or cause
        key = _key_path([*([where] if where else []), *best.absolute_path])
        hint = ""
        if best.validator == "additionalProperties" and "properties" in best.schema:
            hint = f"; allowed keys: {sorted(best.schema['properties'])}"
        raise ConfigError(f"config key {key}: {best.message}{hint}") from None


def load_config(source) -> dict:
    """Validate a config (path to YAML, or dict), fill the schema's defaults, check semantics."""
    if isinstance(source, (str, Path)):
        path = Path(source)
        if not path.exists():
            raise ConfigError(f"config file {path} does not exist")
        config = read_yaml(path) or {}
    else:
        config = copy.deepcopy(source)
    if not isinstance(config, dict):
        raise ConfigError("config must be a mapping at the top level")
    _coerce_windows(config)
    _reject_nonfinite(config, [])
    _validate(config, SCHEMA, "")
    if "perceptron" in config and PERCEPTRON_SCHEMA.exists():
        _validate(config["perceptron"], PERCEPTRON_SCHEMA, "perceptron")
    # jsonschema defaults are shared objects: detach them before anyone mutates the config
    config = json.loads(json.dumps(config))
    check_semantics(config)
    if config.get("perceptron") is not None:  # its own semantic checks, before any job
        from .perceptron.settings import check_config as check_perceptron

        try:
            check_perceptron(config["perceptron"])
        except ValueError as e:
            raise ConfigError(str(e)) from None
    return config


def read_yaml(path) -> object:
    """A YAML file's content; a syntax error names the file, line and column."""
    path = Path(path)
    with open(path, encoding="utf-8") as f:  # a stream, so that yaml's marks name the file
        try:
            return yaml.safe_load(f)
        except yaml.YAMLError as e:
            raise ConfigError(yaml_error_message(path, e)) from None


def yaml_error_message(path, error: yaml.YAMLError) -> str:
    """'<file>, line L, column C: YAML syntax error: <what>' (1-based, as editors count)."""
    mark = getattr(error, "problem_mark", None)
    where = f"{path}, line {mark.line + 1}, column {mark.column + 1}" if mark else str(path)
    what = "; ".join(str(x) for x in (getattr(error, "context", None),
                                      getattr(error, "problem", None)) if x) or str(error)
    return f"{where}: YAML syntax error: {what}"


def parse_settings(text: str) -> dict:
    """The --settings argument of the analysis entry points (aggregate, fit, sensitivity, published):
    a JSON object, or @path to a JSON/YAML file holding one."""
    if text.startswith("@"):
        path = Path(text[1:])
        obj = read_yaml(path) if path.suffix in (".yaml", ".yml") else json.loads(path.read_text())
    else:
        obj = json.loads(text)
    if not isinstance(obj, dict):
        raise ValueError(f"--settings must be a JSON object, got {type(obj).__name__}")
    return obj


def _reject_nonfinite(node, path: list) -> None:
    """Every number of a config is finite: YAML's .nan and .inf pass the schema's bounds (a NaN
    compares false with every bound) and would poison training or a fit."""
    if isinstance(node, dict):
        for k, v in node.items():
            _reject_nonfinite(v, [*path, k])
    elif isinstance(node, list):
        for i, v in enumerate(node):
            _reject_nonfinite(v, [*path, i])
    elif isinstance(node, float) and not math.isfinite(node):
        raise ConfigError(f"config key {_key_path(path)}: {node} is not a finite number")


def _coerce_windows(config: dict) -> None:
    """YAML 1.1 (PyYAML, Snakemake) reads 1e-3 as a string, 1.0e-3 as a number: window bounds are
    where such values are written, so numeric strings there become numbers."""
    for exp in (config.get("experiments") or {}).values():
        if not isinstance(exp, dict):
            continue
        for block in [exp.get("analysis"), *[ov.get("analysis") for ov in exp.get("overrides") or []
                                             if isinstance(ov, dict)]]:
            window = block.get("window") if isinstance(block, dict) else None
            if isinstance(window, dict):
                for k, v in window.items():
                    if isinstance(v, str):
                        try:
                            window[k] = float(v)
                        except ValueError:
                            pass  # not a number: the schema says so


def check_semantics(config: dict) -> None:
    """Checks that a schema cannot express: combinations and cross-references."""
    val_size = config["data"]["val_size"]
    experiments = config["experiments"]
    for name, ablation in config["ablations"].items():
        unknown = [e for e in ablation["experiments"] if e not in experiments]
        if unknown:
            raise ConfigError(f"config key ablations.{name}.experiments: unknown {unknown}; "
                              f"allowed: {sorted(experiments)}")
    table1 = config["targets"]["table1_experiment"]
    if table1 is not None and table1 not in experiments:
        raise ConfigError(f"config key targets.table1_experiment: unknown experiment {table1!r} "
                          f"(the experiment of the fig_main and table1 targets); allowed: "
                          f"{sorted(experiments)}")
    deferred_experiments(config)
    pub = config["published"]
    if pub["dir"] is not None and not Path(pub["dir"]).is_dir():
        raise ConfigError(f"config key published.dir: folder {pub['dir']!r} does not exist "
                          f"(relative to {Path.cwd()}); clone https://github.com/Francill99/deep_norm "
                          "there, or set published.dir: null")
    if pub["dir"] is not None and pub["experiment"] not in experiments:
        raise ConfigError(f"config key published.experiment: unknown experiment "
                          f"{pub['experiment']!r} (its analysis settings refit the published "
                          f"curves); allowed: {sorted(experiments)}")
    for name, exp in experiments.items():
        where = f"experiments.{name}"
        if exp["reuse"] is not None:
            _check_reuse(experiments, name, where)
        else:
            _check_grid(exp, where, val_size)
        for i, ov in enumerate(exp["overrides"]):
            m = ov["match"]
            if m.get("arch", exp["archs"][0]) not in exp["archs"] or \
                    m.get("dataset", exp["datasets"][0]) not in exp["datasets"]:
                raise ConfigError(f"config key {where}.overrides[{i}].match: {m} matches no "
                                  f"(arch, dataset) of this experiment ({exp['archs']} x "
                                  f"{exp['datasets']})")
        for arch in exp["archs"]:
            for dataset in exp["datasets"]:
                if exp["reuse"] is None:
                    _check_inputs(training_settings(config, name, arch, dataset), where, arch,
                                  dataset)
                a = analysis_settings(config, name, arch, dataset)
                w = {"x_left": None, "x_right": None} if a["window"] == "auto" else a["window"]
                check_analysis_ranges(w["x_left"], w["x_right"], a["P_min"], a["P_max"],
                                      key=f"config key {where}.analysis", context=f" (for {arch}/{dataset})")
                n_seeds = len(seeds(config, training_experiment(config, name), arch, dataset))
                if a["min_seeds"] > n_seeds:
                    raise ConfigError(f"config key {where}.analysis.min_seeds (for {arch}/{dataset}):"
                                      f" {a['min_seeds']} is more than the {n_seeds} seeds trained; "
                                      "no point of any curve could be kept")


def check_analysis_ranges(x_left, x_right, P_min, P_max, key: str = "analysis", context: str = "") -> None:
    """The analysis ranges a schema cannot express, checked here only: 0 <= x_left < x_right <= 1
    (the γ₁ window, on the descending branch; x_left 0 = no lower bound; x_right None = window
    auto) and P_min <= P_max. ``check_semantics`` runs it on every config, ``fit.Settings.from_dict``
    on settings given on a command line."""
    if x_right is not None and not 0 <= x_left < x_right <= 1:
        raise ConfigError(f"{key}.window{context}: x_left={x_left} must be < x_right={x_right} "
                          "(0 <= x_left < x_right <= 1: the descending branch; x_left 0 = no lower bound)")
    if P_min is not None and P_max is not None and P_min > P_max:
        raise ConfigError(f"{key}{context}: P_min={P_min} > P_max={P_max}")


def _check_inputs(training: dict, where: str, arch: str, dataset: str) -> None:
    """`authors` inputs exist only where the authors trained: MNIST and CIFAR."""
    for key, value in (("normalization", "dataset"), ("augmentation", "none")):
        if training[key] == "authors" and (arch, dataset) not in AUTHORS_INPUTS:
            raise ConfigError(f"config key {where}.training.{key} (for {arch}/{dataset}): the "
                              f"authors' protocol has no entry for {dataset!r} (their scripts "
                              f"cover {sorted({d for _, d in AUTHORS_INPUTS})}); use {value!r}")


def _check_reuse(experiments: dict, name: str, where: str) -> None:
    exp, reuse = experiments[name], experiments[name]["reuse"]
    if reuse not in experiments:
        raise ConfigError(f"config key {where}.reuse: unknown experiment {reuse!r}; "
                          f"allowed: {sorted(set(experiments) - {name})}")
    source = experiments[reuse]
    if source["reuse"] is not None:
        raise ConfigError(f"config key {where}.reuse: {reuse!r} itself reuses another "
                          "experiment; point at the one that trains")
    extra = [k for k in ("P", "seeds") if k in exp] + \
        [f"overrides[{i}].{k}" for i, ov in enumerate(exp["overrides"]) for k in ("seeds", "training")
         if k in ov]
    if extra:
        raise ConfigError(f"config key {where}.{extra[0]}: an experiment that "
                          f"reuses {reuse!r} trains nothing and takes P and seeds from there; "
                          "remove it")
    missing = [(a, d) for a in exp["archs"] for d in exp["datasets"]
               if a not in source["archs"] or d not in source["datasets"]]
    if missing:
        raise ConfigError(f"config key {where}.archs/datasets: {missing} not trained by "
                          f"{reuse!r} (it has {source['archs']} x {source['datasets']})")


def _check_grid(exp: dict, where: str, val_size: dict) -> None:
    missing = [k for k in ("P", "seeds") if k not in exp]
    if missing:
        raise ConfigError(f"config key {where}: {missing[0]!r} is required (or `reuse` another "
                          "experiment's trajectories)")
    for dataset in exp["datasets"]:
        if dataset not in exp["P"]:
            raise ConfigError(f"config key {where}.P: no P values for dataset {dataset!r} "
                              f"(given for {sorted(exp['P'])})")
        if dataset not in val_size:
            raise ConfigError(f"config key data.val_size: no validation size for {dataset!r}")
        pool = DATASET_SIZES[dataset]["train"] - val_size[dataset]
        if pool < 1:
            raise ConfigError(f"config key data.val_size.{dataset}: {val_size[dataset]} leaves "
                              f"no training examples (train split has "
                              f"{DATASET_SIZES[dataset]['train']})")
        too_big = [p for p in exp["P"][dataset] if p > pool]
        if too_big:
            raise ConfigError(f"config key {where}.P.{dataset}: {too_big} larger than the "
                              f"{pool} training examples left after the validation split")


def _merge(base: dict, update: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in update.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def _overrides(exp: dict, arch: str, dataset: str):
    for ov in exp["overrides"]:
        if ov["match"].get("arch", arch) == arch and ov["match"].get("dataset", dataset) == dataset:
            yield ov


def _resolved(config: dict, experiment: str, arch: str, dataset: str, section: str):
    exp = config["experiments"][experiment]
    out = copy.deepcopy(exp[section])
    for ov in _overrides(exp, arch, dataset):
        if section in ov:
            out = _merge(out, ov[section]) if isinstance(out, dict) else copy.deepcopy(ov[section])
    return out


def table1_experiment(config: dict) -> str | None:
    """The experiment of the fig_main and table1 targets: targets.table1_experiment, else
    ``main`` where there is one, else None (no such targets)."""
    chosen = config["targets"]["table1_experiment"]
    if chosen is not None:
        return chosen
    return "main" if "main" in config["experiments"] else None


def training_experiment(config: dict, experiment: str) -> str:
    """The experiment whose trajectories ``experiment`` analyses (itself unless it reuses one)."""
    return config["experiments"][experiment]["reuse"] or experiment


def training_settings(config, experiment, arch, dataset) -> dict:
    return _resolved(config, experiment, arch, dataset, "training")


def analysis_settings(config, experiment, arch, dataset) -> dict:
    return _resolved(config, experiment, arch, dataset, "analysis")


def seeds(config, experiment, arch, dataset) -> list[int]:
    return sorted(_resolved(config, experiment, arch, dataset, "seeds"))


def seed_batches(config, experiment, arch, dataset) -> list[list[int]]:
    """Seeds of (experiment, arch, dataset) split into the batches of its training jobs."""
    return chunk_seeds(seeds(config, experiment, arch, dataset),
                       config["experiments"][experiment]["seeds_per_job"])


def cell_id(cell: dict) -> str:
    return f"{cell['experiment']}/{cell['arch']}/{cell['dataset']}/P{cell['P']}/seed{cell['seed']}"


def resolve_cell(config, experiment, arch, dataset, P, seed) -> dict:
    """The full, self-contained configuration of one training cell (what its hash covers)."""
    exp = config["experiments"][experiment]
    if exp["reuse"] is not None:
        raise ConfigError(f"experiment {experiment!r} reuses {exp['reuse']!r} and trains nothing")
    if arch not in exp["archs"] or dataset not in exp["datasets"] or P not in exp["P"][dataset]:
        raise ConfigError(f"cell {experiment}/{arch}/{dataset}/P{P} is not in the config's grid")
    if seed not in seeds(config, experiment, arch, dataset):
        raise ConfigError(f"seed {seed} is not in the seeds of {experiment}/{arch}/{dataset}")
    return {
        "experiment": experiment, "arch": arch, "dataset": dataset, "P": int(P), "seed": int(seed),
        "training": training_settings(config, experiment, arch, dataset),
        "data": {"val_size": config["data"]["val_size"][dataset],
                 "split_seed": config["data"]["split_seed"]},
    }


def deferred_experiments(config: dict) -> list[str]:
    """Experiments `rule all` leaves out (``targets.deferred``), built by their own named target,
    with every ablation that shows one of them; [] when nothing is deferred."""
    deferred = config["targets"].get("deferred")
    if not deferred:
        return []
    unknown = [e for e in deferred["experiments"] if e not in config["experiments"]]
    if unknown:
        raise ConfigError(f"config key targets.deferred.experiments: unknown {unknown}; "
                          f"allowed: {sorted(config['experiments'])}")
    kept = [e for e in config["experiments"] if e not in deferred["experiments"]]
    needed = {config["experiments"][e]["reuse"] for e in kept} - {None}
    if needed & set(deferred["experiments"]):
        raise ConfigError(f"config key targets.deferred.experiments: {sorted(needed & set(deferred['experiments']))} "
                          "train for an experiment `rule all` builds (reuse); defer both or neither")
    if not kept:
        raise ConfigError("config key targets.deferred.experiments: defers every experiment; "
                          "`rule all` would build none")
    return list(deferred["experiments"])


def training_grid(config) -> list[dict]:
    """Every training job: (experiment, arch, dataset, P, seed batch)."""
    jobs = []
    for name, exp in config["experiments"].items():
        if exp["reuse"] is not None:
            continue
        for arch in exp["archs"]:
            for dataset in exp["datasets"]:
                for P in exp["P"][dataset]:
                    for batch in seed_batches(config, name, arch, dataset):
                        jobs.append({"experiment": name, "arch": arch, "dataset": dataset,
                                     "P": P, "seeds": batch})
    return jobs


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m workflow_scripts.config", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p_check = sub.add_parser("check", help="validate a config; print its grid size")
    p_check.add_argument("config")
    p_cells = sub.add_parser("cells", help="print the resolved configs of cells as JSON")
    p_cells.add_argument("config")
    for arg in ("--experiment", "--arch", "--dataset"):
        p_cells.add_argument(arg, required=True)
    p_cells.add_argument("--P", type=int, required=True)
    p_cells.add_argument("--seeds", type=int, nargs="+", required=True)
    args = parser.parse_args(argv)
    try:
        config = load_config(args.config)
        if args.command == "check":
            grid = training_grid(config)
            n_cells = sum(len(j["seeds"]) for j in grid)
            print(f"{args.config}: valid; {len(config['experiments'])} experiments, "
                  f"{n_cells} training cells in {len(grid)} jobs")
        else:
            cells = [resolve_cell(config, args.experiment, args.arch, args.dataset, args.P, s)
                     for s in args.seeds]
            print(json.dumps(cells))
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
