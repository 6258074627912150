# Config validation and the functions that map the config to files. Logic lives in the package.
import json
import sys

from snakemake.exceptions import WorkflowError

from workflow_scripts import config as cfg

try:
    CONFIG = cfg.load_config(config)
except cfg.ConfigError as e:
    raise WorkflowError(f"invalid configuration: {e}") from None

# The interpreter running Snakemake runs the entry points too (the venv, locally or on a node);
# with --sdm conda each rule's own environment (envs/, the rule's conda: directive) runs them.
from snakemake_interface_executor_plugins.settings import DeploymentMethod

PY = ("python" if DeploymentMethod.CONDA in workflow.deployment_settings.deployment_method
      else sys.executable)


wildcard_constraints:
    experiment=r"[A-Za-z0-9_.-]+",
    arch="|".join(cfg.ARCHS),
    dataset="|".join(cfg.DATASETS),
    measure="|".join(cfg.MEASURES),
    P=r"\d+",
    first=r"\d+",
    last=r"\d+",


def as_json(obj):
    return json.dumps(obj, sort_keys=True)


def pairs(experiment):
    exp = CONFIG["experiments"][experiment]
    return [(a, d) for a in exp["archs"] for d in exp["datasets"]]


def measures(experiment, arch, dataset):
    return cfg.analysis_settings(CONFIG, experiment, arch, dataset)["measures"]


def batch_dirs(experiment, arch, dataset):
    """Training outputs (one directory per seed batch) that feed ``experiment``'s analysis."""
    source = cfg.training_experiment(CONFIG, experiment)
    return [
        f"results/train/{source}/{arch}/{dataset}/P{P}/{cfg.batch_name(batch)}"
        for P in CONFIG["experiments"][source]["P"][dataset]
        for batch in cfg.seed_batches(CONFIG, source, arch, dataset)
    ]


def batch_cells(wildcards):
    """Resolved configs of the cells one training job trains (its seed batch)."""
    w = wildcards
    for batch in cfg.seed_batches(CONFIG, w.experiment, w.arch, w.dataset):
        if (batch[0], batch[-1]) == (int(w.first), int(w.last)):
            return [cfg.resolve_cell(CONFIG, w.experiment, w.arch, w.dataset, int(w.P), s)
                    for s in batch]
    raise WorkflowError(f"no seed batch {w.first}-{w.last} for {w.experiment}/{w.arch}/{w.dataset}")


def train_gpus(wildcards):
    """GPUs a training job asks for: one, unless all its cells are set to train on the CPU."""
    return 0 if all(c["training"]["device"] == "cpu" for c in batch_cells(wildcards)) else 1


def analysis_json(wildcards, keys=None):
    a = cfg.analysis_settings(CONFIG, wildcards.experiment, wildcards.arch, wildcards.dataset)
    return as_json(a if keys is None else {k: a[k] for k in keys})


def analysis_outputs(experiment):
    """(arch, dataset, measure) triples analysed by ``experiment``."""
    return [(a, d, m) for a, d in pairs(experiment) for m in measures(experiment, a, d)]


def final_targets():
    """Everything `rule all` builds: per experiment its figures and Table 1."""
    targets = []
    for experiment in CONFIG["experiments"]:
        triples = analysis_outputs(experiment)
        for arch, dataset, measure in triples:
            base = f"results/figures/{experiment}/{arch}/{dataset}/{measure}"
            targets += [f"{base}/{kind}.png" for kind in ("curves", "collapse", "scaling", "sensitivity")]
        for measure in sorted({m for _, _, m in triples}):
            targets += [f"results/figures/{experiment}/grid_curves_{measure}.png",
                        f"results/figures/{experiment}/grid_collapse_{measure}.png"]
        targets += [f"results/tables/{experiment}/table1.{ext}" for ext in ("csv", "md", "tex")]
    for ablation in CONFIG["ablations"]:
        targets += [f"results/figures/ablations/{ablation}_{k}.png" for k in ("curves", "collapse")]
        targets += [f"results/tables/ablations/{ablation}.{x}" for x in ("csv", "md", "tex")]
    targets += ["results/numbers/numbers.tsv", "results/numbers/numbers.tex"]
    targets += PUBLISHED_TARGETS  # rules/published.smk: empty unless published.dir is set
    return targets
