"""Reruns after a config change, shown by `snakemake --dry-run` job counts on a completed run of
config/test.yaml: a new fit window reruns the fits, tables, figures and numbers but never training
or aggregation; a new aggregation setting reruns no training; a new training setting reruns the
training jobs whose cells it changes, and new P values or seeds train only the new cells.

Snakemake's rerun triggers include params: the train rule's params hold the resolved cells, the
aggregate's only grid_points/min_seeds, the fit's the whole analysis block (rules/*.smk).
"""
from __future__ import annotations

import copy
import re
from pathlib import Path

import pytest
import yaml

from workflow_scripts import config as cfg

from .conftest import REPO
from .test_audit import completed_run, snakemake

BASE = yaml.safe_load((REPO / "config" / "test.yaml").read_text())


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    return completed_run(tmp_path_factory)


def job_counts(run: Path, config: dict, tmp_path: Path) -> dict[str, int]:
    """Jobs per rule that `snakemake --dry-run` plans for ``config`` ({} when nothing to do)."""
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    out = snakemake(run, "--dry-run", configfile=path)
    text = out.stdout + out.stderr
    if "Nothing to be done" in text:
        return {}
    table = text[text.index("Job stats:"):]
    counts = dict((m.group(1), int(m.group(2)))
                  for m in re.finditer(r"^(\w+)\s+(\d+)$", table, flags=re.M))
    counts.pop("total")
    return counts


def analysed(config: dict) -> list[tuple[str, str, str, str]]:
    """(experiment, arch, dataset, measure) of every aggregate and fit of ``config``."""
    c = cfg.load_config(config)
    return [(e, a, d, m) for e, exp in c["experiments"].items() for a in exp["archs"]
            for d in exp["datasets"] for m in cfg.analysis_settings(c, e, a, d)["measures"]]


def train_jobs(config: dict) -> dict[tuple, list[dict]]:
    """Every training job of ``config`` with the resolved configs of its cells."""
    c = cfg.load_config(config)
    return {(j["experiment"], j["arch"], j["dataset"], j["P"], tuple(j["seeds"])):
            [cfg.resolve_cell(c, j["experiment"], j["arch"], j["dataset"], j["P"], s) for s in j["seeds"]]
            for j in cfg.training_grid(c)}


def changed_train_jobs(old: dict, new: dict) -> int:
    before, after = train_jobs(old), train_jobs(new)
    return sum(1 for k, cells in after.items() if before.get(k) != cells)


@pytest.mark.slow
def test_unchanged_config_has_nothing_to_do(run, tmp_path):
    assert job_counts(run, BASE, tmp_path) == {}


@pytest.mark.slow
def test_new_fit_window_reruns_fits_tables_figures_only(run, tmp_path):
    new = copy.deepcopy(BASE)
    for exp in new["experiments"].values():
        exp.setdefault("analysis", {})["window"] = {"x_left": 0.25, "x_right": 0.9}
    counts = job_counts(run, new, tmp_path)
    n = len(analysed(new))
    assert counts["fit"] == n
    assert counts["tables"] == len(new["experiments"]) and counts["numbers"] == 1
    # the figures drawn from the fits are redrawn (rule names: rules/figures.smk, ablations.smk)
    assert sum(v for k, v in counts.items() if k.startswith(("fig", "ablation"))) >= n
    # training, aggregation and the sensitivity grid (it varies the window itself) are untouched
    assert not {"train", "aggregate", "sensitivity", "datasets", "download"} & set(counts), counts


@pytest.mark.slow
def test_new_aggregation_setting_reruns_no_training(run, tmp_path):
    new = copy.deepcopy(BASE)
    new["experiments"]["main"]["analysis"]["grid_points"] += 10
    counts = job_counts(run, new, tmp_path)
    assert counts["aggregate"] == sum(1 for e, *_ in analysed(new) if e == "main")
    assert "train" not in counts and "datasets" not in counts


@pytest.mark.slow
def test_new_training_setting_reruns_the_cells_it_changes(run, tmp_path):
    new = copy.deepcopy(BASE)
    new["experiments"]["main"]["training"]["lr"] = 0.002
    counts = job_counts(run, new, tmp_path)
    expected = changed_train_jobs(BASE, new)
    assert expected == len(train_jobs(new)) == 3  # every cell of main has the new lr
    assert counts["train"] == expected
    # main's runs feed main's aggregate and the norms experiment's, which reuses them
    assert counts["aggregate"] == len(analysed(new)) and "datasets" not in counts


@pytest.mark.slow
def test_new_cells_train_alone(run, tmp_path):
    more_P = copy.deepcopy(BASE)
    more_P["experiments"]["main"]["P"]["digits"].append(480)
    counts = job_counts(run, more_P, tmp_path)
    assert counts["train"] == changed_train_jobs(BASE, more_P) == 1  # P=480 only
    more_seeds = copy.deepcopy(BASE)
    seeds = more_seeds["experiments"]["main"]["seeds"]
    per_job = more_seeds["experiments"]["main"]["seeds_per_job"]
    more_seeds["experiments"]["main"]["seeds"] = seeds + [max(seeds) + 1 + i for i in range(per_job)]
    counts = job_counts(run, more_seeds, tmp_path)
    n_P = len(BASE["experiments"]["main"]["P"]["digits"])
    assert counts["train"] == changed_train_jobs(BASE, more_seeds) == n_P  # one new batch per P
    assert len(train_jobs(more_seeds)) == 2 * n_P  # the old batches are not retrained
