# Config validation and the functions that map the config to files. Logic lives in the package.
import json
import sys

from snakemake.exceptions import WorkflowError

from workflow_scripts import batches
from workflow_scripts import config as cfg

try:
    CONFIG = cfg.load_config(config)
except cfg.ConfigError as e:
    raise WorkflowError(f"invalid configuration: {e}") from None

# The interpreter running Snakemake runs the entry points too (the venv, locally or on a node);
# with --sdm conda each rule's own environment (envs/, the rule's conda: directive) runs them.
from snakemake_interface_executor_plugins.settings import DeploymentMethod

PY = "python" if DeploymentMethod.CONDA in workflow.deployment_settings.deployment_method else sys.executable


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
        f"results/train/{source}/{arch}/{dataset}/P{P}/{batches.batch_name(batch)}"
        for P in CONFIG["experiments"][source]["P"][dataset]
        for batch in cfg.seed_batches(CONFIG, source, arch, dataset)
    ]


def batch_cells(wildcards):
    """Resolved configs of the cells one training job trains (its seed batch)."""
    w = wildcards
    for batch in cfg.seed_batches(CONFIG, w.experiment, w.arch, w.dataset):
        if (batch[0], batch[-1]) == (int(w.first), int(w.last)):
            return [cfg.resolve_cell(CONFIG, w.experiment, w.arch, w.dataset, int(w.P), s) for s in batch]
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


# Result paths, defined once: rules use these templates, the target functions below fill them.
GROUP = "{experiment}/{arch}/{dataset}/{measure}"
AGG = f"results/aggregate/{GROUP}"  # + /curves.parquet, /optima.parquet
FIT = f"results/fit/{GROUP}/fit.json"
SENSITIVITY = f"results/sensitivity/{GROUP}"  # + /sensitivity.{parquet,json}
FIG = f"results/figures/{GROUP}"  # + /<kind>.png
GRID_FIG = "results/figures/{experiment}/grid_{kind}_{measure}.png"
TABLE1 = "results/tables/{experiment}/table1"  # + a table format
ABLATION_FIG = "results/figures/ablations/{ablation}_{kind}.png"
ABLATION_TABLE = "results/tables/ablations/{ablation}"
# the numbers file: its TSV, its LaTeX macros, and its record (the two files' sha256 and the lines printed)
NUMBERS = ["results/numbers/numbers.tsv", "results/numbers/numbers.tex", "results/numbers/numbers.json"]
TABLE_FORMATS = (".csv", ".md", ".tex", ".json")  # .json: the record of the three renderings
PANEL_KINDS = ("curves", "collapse", "scaling")
GRID_KINDS = ("curves", "collapse")


def table_files(prefix):
    """A table's files: CSV, Markdown, LaTeX and their record."""
    return [prefix + ext for ext in TABLE_FORMATS]


def experiment_targets(experiment):
    """An experiment's figures: per (arch, dataset, measure) panels with their sensitivity heat
    map, and the 3x3 grids per measure; and its Table 1."""
    triples = analysis_outputs(experiment)
    panels = [
        f"{FIG.format(experiment=experiment, arch=a, dataset=d, measure=m)}/{kind}.png"
        for a, d, m in triples
        for kind in (*PANEL_KINDS, "sensitivity")
    ]
    grids = [
        GRID_FIG.format(experiment=experiment, kind=kind, measure=m)
        for m in sorted({m for _, _, m in triples})
        for kind in GRID_KINDS
    ]
    return {"panels": panels, "grids": grids, "table": table_files(TABLE1.format(experiment=experiment))}


def ablation_targets(name):
    return {
        "fig": [ABLATION_FIG.format(ablation=name, kind=k) for k in GRID_KINDS],
        "table": table_files(ABLATION_TABLE.format(ablation=name)),
    }


DEFERRED = cfg.deferred_experiments(CONFIG)  # targets.deferred: left out of `rule all`


def all_experiments():
    """The experiments `rule all` builds (every one but the deferred)."""
    return [e for e in CONFIG["experiments"] if e not in DEFERRED]


def analysis_targets(deferred):
    """Figures and tables of the experiments, and of the ablations, that are (not) deferred: an
    ablation is deferred when it shows a deferred experiment."""
    targets = []
    for experiment in CONFIG["experiments"]:
        if (experiment in DEFERRED) == deferred:
            t = experiment_targets(experiment)
            targets += t["panels"] + t["grids"] + t["table"]
    for ablation, spec in CONFIG["ablations"].items():
        if any(e in DEFERRED for e in spec["experiments"]) == deferred:
            t = ablation_targets(ablation)
            targets += t["fig"] + t["table"]
    return targets


def final_targets():
    """Everything `rule all` builds: every experiment's and ablation's figures and tables (but the
    deferred ones), the numbers file, and, when configured, Table 1 of the published curves and
    the perceptron."""
    # defined by rules/published.smk and rules/perceptron.smk (empty when not configured)
    return analysis_targets(deferred=False) + NUMBERS + PUBLISHED_TARGETS + PERCEPTRON_TARGETS
