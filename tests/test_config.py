"""Config validation: every kind of bad input stops with a message naming the key."""
import copy
import json
import re
import subprocess
import sys

import pytest
import yaml

from workflow_scripts import config as cfg
from workflow_scripts.config import ConfigError, load_config

from .conftest import REPO

QUICK = yaml.safe_load((REPO / "config" / "quick.yaml").read_text())


def mutated(fn):
    c = copy.deepcopy(QUICK)
    fn(c)
    return c


@pytest.mark.parametrize("path", ["config.yaml", "quick.yaml", "test.yaml"])
def test_shipped_configs_are_valid(path):
    config = load_config(REPO / "config" / path)
    assert cfg.training_grid(config)


def test_defaults_are_filled_and_not_shared():
    config = load_config({"experiments": {
        "a": {"archs": ["cnn"], "datasets": ["digits"], "P": {"digits": [10]}, "seeds": [0, 1]},
        "b": {"archs": ["cnn"], "datasets": ["digits"], "P": {"digits": [10]}, "seeds": [0, 1]}}})
    a, b = config["experiments"]["a"], config["experiments"]["b"]
    assert a["training"]["optimizer"] == "adam" and a["training"]["batch_size"] == 128
    assert a["analysis"]["bootstrap"] == {"n": 1000, "seed": 0}
    assert config["data"]["split_seed"] == 0
    a["training"]["lr"] = 5.0
    assert b["training"]["lr"] == 0.001


@pytest.mark.parametrize("mutation, key, allowed", [
    (lambda c: c["experiments"]["main"].update(archs=["mlp"]), "experiments.main.archs[0]", "resnet"),
    (lambda c: c["experiments"]["main"].update(datasets=["imagenet"]), "datasets[0]", "cifar100"),
    (lambda c: c["experiments"]["main"].update(seeds=[]), "experiments.main.seeds", "non-empty"),
    (lambda c: c["experiments"]["main"]["training"].update(lr=-1), "training.lr", "minimum"),
    (lambda c: c["experiments"]["main"]["training"].update(optimizer="rmsprop"), "optimizer", "sgd"),
    (lambda c: c["experiments"]["main"].update(typo=1), "experiments.main", "seeds_per_job"),
    (lambda c: c.update(extra=1), "top level", "experiments"),
    (lambda c: c["experiments"]["main"]["P"].update(digits=[5000]), "P.digits", "1200"),
    (lambda c: c["experiments"]["main"]["P"].update(digits=[]), "P.digits", "non-empty"),
    (lambda c: c["experiments"]["main"]["analysis"].update(window={"x_left": 0.9, "x_right": 0.5}),
     "analysis.window", "x_left=0.9 must be < x_right=0.5"),
    (lambda c: c["experiments"]["main"]["analysis"].update(P_min=500, P_max=100), "analysis", "P_min"),
    (lambda c: c["experiments"]["main"].update(reuse="nope"), "reuse", "unknown experiment"),
    (lambda c: c["experiments"]["main"].update(datasets=["digits", "mnist"]), "P", "mnist"),
    (lambda c: c["experiments"]["main"].update(archs=["cnn"], overrides=[{"match": {"arch": "vit"}}]),
     "overrides[0].match", "matches no"),
    (lambda c: c["experiments"]["norms"].update(seeds=[0]), "norms.seeds", "takes P and seeds"),
    (lambda c: c["experiments"]["norms"].update(reuse="norms"), "norms.reuse", "itself reuses"),
    (lambda c: c["experiments"]["norms"].update(datasets=["teacher"]), "norms.archs/datasets",
     "not trained by 'main'"),
    (lambda c: c["experiments"]["sgd"].pop("P"), "experiments.sgd", "'P' is required"),
    (lambda c: c["ablations"]["sgd"].update(experiments=["adam"]), "ablations.sgd.experiments",
     "unknown ['adam']"),
    (lambda c: c["experiments"].update({"a/b": c["experiments"]["sgd"]}), "experiments", "a/b"),
    (lambda c: c["data"].update(val_size={"digits": 1400}), "val_size.digits", "no training"),
])
def test_invalid_config_names_the_key(mutation, key, allowed):
    with pytest.raises(ConfigError) as err:
        load_config(mutated(mutation))
    assert key in str(err.value) and allowed in str(err.value)


def test_overrides_resolve_per_arch_and_dataset():
    config = load_config(REPO / "config" / "config.yaml")
    vit = cfg.training_settings(config, "main", "vit", "cifar10")
    assert (vit["optimizer"], vit["lr"], vit["init_scale"]) == ("adamw", 0.0003, 0.005)
    cnn = cfg.training_settings(config, "main", "cnn", "mnist")
    assert (cnn["optimizer"], cnn["init_scale"]) == ("adam", 0.05)
    assert cfg.training_settings(config, "main", "cnn", "cifar10")["init_scale"] == 1.0


def test_cells_cli_prints_resolved_cells():
    out = subprocess.run([sys.executable, "-m", "workflow_scripts.config", "cells",
                          str(REPO / "config" / "quick.yaml"), "--experiment", "main", "--arch",
                          "cnn", "--dataset", "digits", "--P", "200", "--seeds", "0", "2"],
                         capture_output=True, text=True, check=True)
    cells = json.loads(out.stdout)
    assert [c["seed"] for c in cells] == [0, 2] and all(c["P"] == 200 for c in cells)
    assert cfg.cell_id(cells[1]) == "main/cnn/digits/P200/seed2"
    bad = subprocess.run([sys.executable, "-m", "workflow_scripts.config", "cells",
                          str(REPO / "config" / "quick.yaml"), "--experiment", "main", "--arch",
                          "cnn", "--dataset", "digits", "--P", "151", "--seeds", "0"],
                         capture_output=True, text=True)
    assert bad.returncode == 2 and "not in the config's grid" in bad.stderr


def test_paper_grid_size():
    config = load_config(REPO / "config" / "config.yaml")
    main = [j for j in cfg.training_grid(config) if j["experiment"] == "main"]
    assert sum(len(j["seeds"]) for j in main) == (10 * 3 + 8 * 6) * 25


def test_schema_lists_exactly_the_measures_the_trajectories_carry():
    from workflow_scripts import measures, models

    assert set(cfg.MEASURES) == set(measures.MEASURES)
    assert set(cfg.ARCHS) == set(models.ARCHS)
    assert set(cfg.DATASETS) == set(models.INPUT_SPECS)


def test_reproduce_experiment_holds_the_authors_windows():
    config = load_config(REPO / "config" / "config.yaml")
    a = cfg.analysis_settings(config, "reproduce", "vit", "cifar100")
    assert a["window"] == {"x_left": 1e-32, "x_right": 1.5e-20} and a["gamma1_P_min"] == 31000
    assert a["estimator"] == "both"
    a = cfg.analysis_settings(config, "reproduce", "cnn", "cifar10")
    assert a["window"]["x_left"] == 0 and a["P_min"] == 28000  # their "> 0": no lower bound
    assert cfg.analysis_settings(config, "main", "cnn", "cifar10")["estimator"] == "ours"


def test_windows_written_1e_minus_n_are_numbers_and_auto_is_accepted():
    # YAML 1.1 reads "1e-30" as a string; the loader makes it the number it means
    text = (REPO / "config" / "quick.yaml").read_text().replace(
        "window: {x_left: 0.3, x_right: 0.9}", "window: {x_left: 1e-30, x_right: 1e-16}", 1)
    config = load_config(yaml.safe_load(text))
    assert cfg.analysis_settings(config, "main", "cnn", "digits")["window"] == \
        {"x_left": 1e-30, "x_right": 1e-16}
    c = mutated(lambda c: c["experiments"]["main"]["analysis"].update(window="auto"))
    assert cfg.analysis_settings(load_config(c), "main", "cnn", "digits")["window"] == "auto"


@pytest.mark.parametrize("mutation, message", [
    (lambda c: c["experiments"]["main"]["analysis"].update(estimator="mine"),
     "analysis.estimator: 'mine' is not one of"),
    (lambda c: c["experiments"]["main"]["analysis"].update(window={"x_left": "small", "x_right": 0.1}),
     "analysis.window.x_left: 'small' is not of type 'number'"),
    (lambda c: c["experiments"]["main"]["analysis"].update(window={"x_left": 0.5, "x_right": 0.1}),
     "x_left=0.5 must be < x_right=0.1"),
    (lambda c: c.update(published={"dir": ".", "experiment": "nope"}), "published.experiment"),
])
def test_invalid_analysis_choices_name_the_key(mutation, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_config(mutated(mutation))


@pytest.mark.parametrize("mutation, key, message", [
    (lambda c: c["experiments"]["main"]["training"].update(lr=float("nan")),
     "experiments.main.training.lr", "nan is not a finite number"),
    (lambda c: c["experiments"]["main"]["training"].update(lr=float("inf")),
     "experiments.main.training.lr", "inf is not a finite number"),
    (lambda c: c["experiments"]["sgd"]["training"].update(momentum=float("nan")),
     "experiments.sgd.training.momentum", "not a finite number"),
    (lambda c: c["experiments"]["main"]["analysis"].update(window={"x_left": 0.1, "x_right": "nan"}),
     "experiments.main.analysis.window.x_right", "not a finite number"),
    (lambda c: c["perceptron"]["theory"]["lambdas"].update(max=float("inf")),
     "perceptron.theory.lambdas.max", "inf is not a finite number"),
    (lambda c: c["perceptron"]["fixed_norm"]["lambdas"].update(min=float("-inf")),
     "perceptron.fixed_norm.lambdas.min", "-inf is not a finite number"),
    # quick.yaml trains 3 seeds per cell
    (lambda c: c["experiments"]["main"]["analysis"].update(min_seeds=9),
     "experiments.main.analysis.min_seeds (for cnn/digits)", "9 is more than the 3 seeds"),
    (lambda c: c["experiments"]["norms"]["analysis"].update(min_seeds=6),
     "experiments.norms.analysis.min_seeds", "more than the 3 seeds"),  # a reuse: main's seeds
    (lambda c: c.update(published={"dir": "no/such/folder", "experiment": "main"}),
     "published.dir", "'no/such/folder' does not exist"),
])
def test_config_gaps_name_the_key(mutation, key, message):
    with pytest.raises(ConfigError) as err:
        load_config(mutated(mutation))
    assert f"config key {key}" in str(err.value) and message in str(err.value)


def test_table1_experiment_is_main_or_the_one_named():
    one = {"archs": ["cnn"], "datasets": ["digits"], "P": {"digits": [10]}, "seeds": [0, 1]}
    assert cfg.table1_experiment(load_config({"experiments": {"paper": one}})) is None
    assert cfg.table1_experiment(load_config({"experiments": {"paper": one, "main": one}})) == "main"
    named = {"experiments": {"paper": one, "main": one}, "targets": {"table1_experiment": "paper"}}
    assert cfg.table1_experiment(load_config(named)) == "paper"
    with pytest.raises(ConfigError, match=r"targets.table1_experiment: unknown experiment 'nope'.*"
                                          r"\['main', 'paper'\]"):
        load_config({**named, "targets": {"table1_experiment": "nope"}})


def test_nan_and_inf_written_in_yaml_are_refused(tmp_path):
    text = (REPO / "config" / "test.yaml").read_text()
    for written in (".nan", ".inf", "-.Inf", ".NaN"):
        path = tmp_path / "c.yaml"
        path.write_text(text.replace("lr: 0.001", f"lr: {written}"))
        with pytest.raises(ConfigError, match=r"config key experiments\.main\.training\.lr: .* is "
                                              r"not a finite number"):
            load_config(path)


def test_yaml_syntax_error_names_file_line_and_column(tmp_path):
    path = tmp_path / "broken.yaml"
    lines = (REPO / "config" / "test.yaml").read_text().splitlines()
    i = next(n for n, line in enumerate(lines) if "P: {digits: [60, 120, 240]}" in line)
    lines[i] = lines[i].replace("240]}", "240}")  # an unclosed list
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    msg = str(err.value)
    assert msg.startswith(f"{path}, line {i + 1}, column ") and "YAML syntax error" in msg
    assert "<unicode string>" not in msg
    out = subprocess.run([sys.executable, "-m", "workflow_scripts.config", "check", str(path)],
                         capture_output=True, text=True)
    assert out.returncode == 2 and f"{path}, line {i + 1}, column" in out.stderr


def test_config_check_fails_when_the_published_folder_does_not_exist(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(mutated(
        lambda c: c.update(published={"dir": str(tmp_path / "deep_norm"), "experiment": "main"}))))
    out = subprocess.run([sys.executable, "-m", "workflow_scripts.config", "check", str(path)],
                         capture_output=True, text=True)
    assert out.returncode == 2 and "config key published.dir" in out.stderr
    assert "does not exist" in out.stderr and "valid" not in out.stdout
