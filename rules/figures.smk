# Figures: per (experiment, arch, dataset, measure) and the paper's 3x3 grids per experiment.
AGG = "results/aggregate/{experiment}/{arch}/{dataset}/{measure}"
FIT = "results/fit/{experiment}/{arch}/{dataset}/{measure}/fit.json"


rule figure_curves:
    input:
        curves=f"{AGG}/curves.parquet",
        optima=f"{AGG}/optima.parquet",
    output:
        "results/figures/{experiment}/{arch}/{dataset}/{measure}/curves.png",
    shell:
        "{PY} -m workflow_scripts.figures curves --curves {input.curves} "
        "--optima {input.optima} --out {output}"


rule figure_collapse:
    input:
        curves=f"{AGG}/curves.parquet",
        optima=f"{AGG}/optima.parquet",
        fit=FIT,
    output:
        "results/figures/{experiment}/{arch}/{dataset}/{measure}/collapse.png",
    shell:
        "{PY} -m workflow_scripts.figures collapse --curves {input.curves} "
        "--optima {input.optima} --fit {input.fit} --out {output}"


rule figure_scaling:
    input:
        optima=f"{AGG}/optima.parquet",
        fit=FIT,
    output:
        "results/figures/{experiment}/{arch}/{dataset}/{measure}/scaling.png",
    shell:
        "{PY} -m workflow_scripts.figures scaling --optima {input.optima} --fit {input.fit} "
        "--out {output}"


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
        "results/figures/{experiment}/grid_{kind}_{measure}.png",
    wildcard_constraints:
        kind="curves|collapse",
    shell:
        "{PY} -m workflow_scripts.figures grid --kind {wildcards.kind} --curves {input.curves} "
        "--optima {input.optima} --fit {input.fits} --out {output}"
