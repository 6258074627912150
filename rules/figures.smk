# Figures: per (experiment, arch, dataset, measure) and the paper's 3x3 grids per experiment.
# Every PNG has a <png>.json beside it: the numbers it shows and the inputs (sha256) they came from.
import os

AGG = "results/aggregate/{experiment}/{arch}/{dataset}/{measure}"
FIG = "results/figures/{experiment}/{arch}/{dataset}/{measure}"


def with_sidecars(*pngs):
    return [f for png in pngs for f in (png, f"{png}.json")]


rule figures:
    input:
        curves=f"{AGG}/curves.parquet",
        optima=f"{AGG}/optima.parquet",
        fit="results/fit/{experiment}/{arch}/{dataset}/{measure}/fit.json",
    output:
        with_sidecars(*(report(f"{FIG}/{kind}.png", caption=f"../report/figure_{kind}.rst",
                               category="Figures {experiment}", subcategory="{arch} {dataset}",
                               labels={"figure": kind, "arch": "{arch}", "dataset": "{dataset}",
                                       "measure": "{measure}"})
                        for kind in ("curves", "collapse", "scaling"))),
    params:
        out_dir=lambda w, output: os.path.dirname(output[0]),
    log:
        "results/logs/figures/{experiment}/{arch}/{dataset}/{measure}.log",
    conda:
        "../envs/analysis.yaml"
    shell:
        "{PY} -m workflow_scripts.figures panel --curves {input.curves} --optima {input.optima} "
        "--fit {input.fit} --out-dir {params.out_dir} > {log} 2>&1"


def grid_inputs(wildcards):
    w = wildcards
    done = [(a, d) for a, d in pairs(w.experiment) if w.measure in measures(w.experiment, a, d)]
    agg = [f"results/aggregate/{w.experiment}/{a}/{d}/{w.measure}" for a, d in done]
    return {
        "curves": [f"{p}/curves.parquet" for p in agg],
        "optima": [f"{p}/optima.parquet" for p in agg],
        "fits": [f"results/fit/{w.experiment}/{a}/{d}/{w.measure}/fit.json" for a, d in done],
    }


rule figure_grid:
    input:
        unpack(grid_inputs),
    output:
        with_sidecars(report("results/figures/{experiment}/grid_{kind}_{measure}.png",
                             caption="../report/figure_grid.rst", category="Figures {experiment}",
                             subcategory="all archs and datasets",
                             labels={"figure": "grid {kind}", "arch": "all", "dataset": "all",
                                     "measure": "{measure}"})),
    wildcard_constraints:
        kind="curves|collapse",
    log:
        "results/logs/figure_grid/{experiment}/{kind}_{measure}.log",
    conda:
        "../envs/analysis.yaml"
    shell:
        "{PY} -m workflow_scripts.figures grid --kind {wildcards.kind} --curves {input.curves} "
        "--optima {input.optima} --fit {input.fits} --out {output[0]} > {log} 2>&1"
