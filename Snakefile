# scaling-dynamics: from datasets to every figure and table of arXiv:2505.13230.
# The quick config:   snakemake --cores all --configfile config/quick.yaml
# The paper grid:     snakemake --cores all --profile slurm
from snakemake.utils import min_version

min_version("9.0")


# The paper grid unless --configfile names another config (Snakemake would merge the two).
if not workflow.config_settings.configfiles:

    configfile: "config/config.yaml"


include: "rules/common.smk"
include: "rules/data.smk"
include: "rules/train.smk"
include: "rules/aggregate.smk"
include: "rules/fit.smk"
include: "rules/published.smk"
include: "rules/figures.smk"
include: "rules/ablations.smk"
include: "rules/perceptron.smk"
include: "rules/report.smk"


# Only training goes to the cluster under --profile slurm; the rest takes seconds on the submit
# host (download is local too, in rules/data.smk: compute nodes often have no internet).
localrules:
    all,
    aggregate,
    fit,
    tables,
    figures,
    figure_grid,
    ablation_figure,
    ablation_table,
    fig_main,
    table1,
    sensitivity,


rule all:
    input:
        final_targets(),
