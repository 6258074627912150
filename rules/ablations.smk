# Named figure and table targets: `snakemake fig_<name>` / `snakemake table_<name>` for every
# ablation of the config (weight_decay, sgd, norms, long, authors), plus fig_main and table1.


def ablation_panels(name):
    """(experiment, arch, dataset, measure) of every panel of an ablation, in config order."""
    return [(e, a, d, m) for e in CONFIG["ablations"][name]["experiments"] for a, d, m in analysis_outputs(e)]


def ablation_inputs(wildcards):
    ids = [
        dict(experiment=e, arch=a, dataset=d, measure=m) for e, a, d, m in ablation_panels(wildcards.ablation)
    ]
    return {
        "curves": [AGG.format(**i) + "/curves.parquet" for i in ids],
        "optima": [AGG.format(**i) + "/optima.parquet" for i in ids],
        "fits": [FIT.format(**i) for i in ids],
    }


# Both kinds of an ablation's figure in one job (same inputs, one start-up).
rule ablation_figure:
    input:
        unpack(ablation_inputs),
    output:
        *with_sidecars(
            *(
                report(
                    ABLATION_FIG.replace("{kind}", kind),
                    caption="../report/figure_ablation.rst",
                    category="Figures ablations",
                    subcategory="{ablation}",
                    labels={
                        "figure": f"{{ablation}} {kind}",
                        "arch": "all",
                        "dataset": "all",
                        "measure": "all",
                    },
                )
                for kind in GRID_KINDS
            )
        ),
    log:
        "results/logs/ablation_figure/{ablation}.log",
    conda:
        "../envs/analysis.yaml"
    params:
        kinds=" ".join(GRID_KINDS),
        pngs=lambda w, output: [f for f in output if f.endswith(".png")],
    shell:
        "{PY} -m workflow_scripts.figures grid --kind {params.kinds} --curves {input.curves} "
        "--optima {input.optima} --fit {input.fits} --out {params.pngs} > {log} 2>&1"


rule ablation_table:
    input:
        lambda w: ablation_inputs(w)["fits"],
    output:
        report(
            table_files(ABLATION_TABLE)[0],
            caption="../report/table_ablation.rst",
            category="Tables",
            subcategory="ablations",
            labels={"table": "{ablation}", "experiment": "ablations"},
        ),
        *table_files(ABLATION_TABLE)[1:],
    log:
        "results/logs/ablation_table/{ablation}.log",
    conda:
        "../envs/analysis.yaml"
    shell:
        "{PY} -m workflow_scripts.table --out-prefix "
        + ABLATION_TABLE.replace("{ablation}", "{wildcards.ablation}")
        + " "
        "{input} > {log} 2>&1"


for _ablation in CONFIG["ablations"]:

    rule:
        name:
            f"fig_{_ablation}"
        input:
            ablation_targets(_ablation)["fig"],

    rule:
        name:
            f"table_{_ablation}"
        input:
            ablation_targets(_ablation)["table"],


# the experiment of Table 1 and its figure grids: targets.table1_experiment, else main
TABLE1_EXPERIMENT = cfg.table1_experiment(CONFIG)


def table1_targets(kind):
    if TABLE1_EXPERIMENT is None:
        raise WorkflowError(
            "the targets fig_main and table1 need config key targets.table1_experiment: this config "
            f"has no experiment 'main' (it has {sorted(CONFIG['experiments'])})"
        )
    return experiment_targets(TABLE1_EXPERIMENT)[kind]


if DEFERRED:  # targets.deferred of the config, e.g. `snakemake quick_ablations`

    rule:
        name:
            CONFIG["targets"]["deferred"]["target"]
        input:
            analysis_targets(deferred=True),


rule fig_main:
    input:
        lambda w: table1_targets("grids"),


rule table1:
    input:
        lambda w: table1_targets("table"),
