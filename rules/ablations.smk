# Named figure and table targets: `snakemake fig_<name>` / `snakemake table_<name>` for every
# ablation of the config (weight_decay, sgd, norms, long, authors), plus fig_main and table1.


def ablation_panels(name):
    """(experiment, arch, dataset, measure) of every panel of an ablation, in config order."""
    return [(e, a, d, m) for e in CONFIG["ablations"][name]["experiments"]
            for a, d, m in analysis_outputs(e)]


def ablation_inputs(wildcards):
    agg = [f"results/aggregate/{e}/{a}/{d}/{m}" for e, a, d, m in ablation_panels(wildcards.ablation)]
    return {
        "curves": [f"{p}/curves.parquet" for p in agg],
        "optima": [f"{p}/optima.parquet" for p in agg],
        "fits": [f"results/fit/{e}/{a}/{d}/{m}/fit.json"
                 for e, a, d, m in ablation_panels(wildcards.ablation)],
    }


rule ablation_figure:
    input:
        unpack(ablation_inputs),
    output:
        with_sidecars(report("results/figures/ablations/{ablation}_{kind}.png",
                             caption="../report/figure_ablation.rst", category="Figures ablations",
                             subcategory="{ablation}", labels={"figure": "{ablation} {kind}",
                             "arch": "all", "dataset": "all", "measure": "all"})),
    wildcard_constraints:
        kind="curves|collapse",
    log:
        "results/logs/ablation_figure/{ablation}_{kind}.log",
    conda:
        "../envs/analysis.yaml"
    shell:
        "{PY} -m workflow_scripts.figures grid --kind {wildcards.kind} --curves {input.curves} "
        "--optima {input.optima} --fit {input.fits} --out {output[0]} > {log} 2>&1"


rule ablation_table:
    input:
        lambda w: ablation_inputs(w)["fits"],
    output:
        report("results/tables/ablations/{ablation}.csv", caption="../report/table_ablation.rst",
               category="Tables", subcategory="ablations",
               labels={"table": "{ablation}", "experiment": "ablations"}),
        "results/tables/ablations/{ablation}.md",
        "results/tables/ablations/{ablation}.tex",
        "results/tables/ablations/{ablation}.json",
    log:
        "results/logs/ablation_table/{ablation}.log",
    conda:
        "../envs/analysis.yaml"
    shell:
        "{PY} -m workflow_scripts.table --out-prefix results/tables/ablations/{wildcards.ablation} "
        "{input} > {log} 2>&1"


def ablation_targets(name):
    return {"fig": [f"results/figures/ablations/{name}_{k}.png" for k in ("curves", "collapse")],
            "table": [f"results/tables/ablations/{name}.{x}" for x in ("csv", "md", "tex")]}


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


rule fig_main:
    input:
        [t for t in final_targets() if t.startswith("results/figures/main/grid_")],


rule table1:
    input:
        multiext("results/tables/main/table1", ".csv", ".md", ".tex"),
