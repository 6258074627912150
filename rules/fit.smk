# Exponent fits with bootstrap intervals, and Table 1 per experiment.


rule fit:
    input:
        curves="results/aggregate/{experiment}/{arch}/{dataset}/{measure}/curves.parquet",
        optima="results/aggregate/{experiment}/{arch}/{dataset}/{measure}/optima.parquet",
    output:
        "results/fit/{experiment}/{arch}/{dataset}/{measure}/fit.json",
    params:
        settings=analysis_json,
    log:
        "results/logs/fit/{experiment}/{arch}/{dataset}/{measure}.log",
    shell:
        "{PY} -m workflow_scripts.fit --curves {input.curves} --optima {input.optima} "
        "--settings {params.settings:q} --out {output} > {log} 2>&1"


rule tables:
    input:
        lambda w: [f"results/fit/{w.experiment}/{a}/{d}/{m}/fit.json"
                   for a, d, m in analysis_outputs(w.experiment)],
    output:
        report("results/tables/{experiment}/table1.csv", caption="../report/table1.rst",
               category="Tables", subcategory="{experiment}",
               labels={"table": "Table 1", "experiment": "{experiment}"}),
        "results/tables/{experiment}/table1.md",
        "results/tables/{experiment}/table1.tex",
    log:
        "results/logs/tables/{experiment}.log",
    shell:
        "{PY} -m workflow_scripts.table --out-prefix results/tables/{wildcards.experiment}/table1 "
        "{input} > {log} 2>&1"
