# Exponent fits with bootstrap intervals, their sensitivity to the analysis choices, and Table 1
# per experiment.
SENSITIVITY_KEYS = ("min_seeds", "P_min", "P_max", "censored", "bootstrap", "sensitivity")


rule fit:
    input:
        curves=f"{AGG}/curves.parquet",
        optima=f"{AGG}/optima.parquet",
    output:
        FIT,
    log:
        "results/logs/fit/{experiment}/{arch}/{dataset}/{measure}.log",
    conda:
        "../envs/analysis.yaml"
    params:
        settings=analysis_json,
    shell:
        "{PY} -m workflow_scripts.fit --curves {input.curves} --optima {input.optima} "
        "--settings {params.settings:q} --out {output} > {log} 2>&1"


# The refits over windows x γ₁ min P x estimators (workflow_scripts/sensitivity.py). Only the keys
# it uses go into params: a new main window does not rerun it.
rule sensitivity:
    input:
        curves=f"{AGG}/curves.parquet",
        optima=f"{AGG}/optima.parquet",
    output:
        table=f"{SENSITIVITY}/sensitivity.parquet",
        summary=f"{SENSITIVITY}/sensitivity.json",
        figure=report(
            f"{FIG}/sensitivity.png",
            caption="../report/sensitivity.rst",
            category="Sensitivity",
            subcategory="{experiment}",
            labels={"arch": "{arch}", "dataset": "{dataset}", "measure": "{measure}"},
        ),
        figure_record=f"{FIG}/sensitivity.png.json",
    log:
        "results/logs/sensitivity/{experiment}/{arch}/{dataset}/{measure}.log",
    conda:
        "../envs/analysis.yaml"
    params:
        settings=lambda w: analysis_json(w, keys=SENSITIVITY_KEYS),
    shell:
        "{PY} -m workflow_scripts.sensitivity --curves {input.curves} --optima {input.optima} "
        "--settings {params.settings:q} --out-table {output.table} --out-json {output.summary} "
        "--figure {output.figure} > {log} 2>&1"


rule tables:
    input:
        fits=lambda w: [
            FIT.format(experiment=w.experiment, arch=a, dataset=d, measure=m)
            for a, d, m in analysis_outputs(w.experiment)
        ],
        sensitivity=lambda w: [
            SENSITIVITY.format(experiment=w.experiment, arch=a, dataset=d, measure=m) + "/sensitivity.json"
            for a, d, m in analysis_outputs(w.experiment)
        ],
    output:
        report(
            table_files(TABLE1)[0],
            caption="../report/table1.rst",
            category="Tables",
            subcategory="{experiment}",
            labels={"table": "Table 1", "experiment": "{experiment}"},
        ),
        *table_files(TABLE1)[1:],
    log:
        "results/logs/tables/{experiment}.log",
    conda:
        "../envs/analysis.yaml"
    shell:
        "{PY} -m workflow_scripts.table --out-prefix "
        + TABLE1.replace("{experiment}", "{wildcards.experiment}")
        + " "
        "{input.fits} --sensitivity {input.sensitivity} > {log} 2>&1"
