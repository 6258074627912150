# Aggregation: per (experiment, arch, dataset, measure) the per-seed curves on a common log-λ grid
# and the per-seed optima. Only the aggregation keys go into params: a new fit window reruns no
# aggregation.


rule aggregate:
    input:
        lambda w: batch_dirs(w.experiment, w.arch, w.dataset),
    output:
        curves=f"{AGG}/curves.parquet",
        optima=f"{AGG}/optima.parquet",
    log:
        "results/logs/aggregate/{experiment}/{arch}/{dataset}/{measure}.log",
    conda:
        "../envs/analysis.yaml"
    params:
        settings=lambda w: analysis_json(w, keys=("grid_points", "min_seeds")),
    shell:
        "{PY} -m workflow_scripts.aggregate --experiment {wildcards.experiment} "
        "--measure {wildcards.measure} "
        "--settings {params.settings:q} --out-curves {output.curves} "
        "--out-optima {output.optima} {input} > {log} 2>&1"
