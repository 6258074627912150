# Figures: per (experiment, arch, dataset, measure) and the paper's 3x3 grids per experiment.
# Every PNG has its record <png>.json beside it: its sha256, the strings drawn, the numbers it shows and
# the inputs (sha256) they came from.
import os


def with_sidecars(*pngs):
    return [f for png in pngs for f in (png, f"{png}.json")]


rule figures:
    input:
        curves=f"{AGG}/curves.parquet",
        optima=f"{AGG}/optima.parquet",
        fit=FIT,
    output:
        with_sidecars(
            *(
                report(
                    f"{FIG}/{kind}.png",
                    caption=f"../report/figure_{kind}.rst",
                    category="Figures {experiment}",
                    subcategory="{arch} {dataset}",
                    labels={
                        "figure": kind,
                        "arch": "{arch}",
                        "dataset": "{dataset}",
                        "measure": "{measure}",
                    },
                )
                for kind in PANEL_KINDS
            )
        ),
    log:
        "results/logs/figures/{experiment}/{arch}/{dataset}/{measure}.log",
    conda:
        "../envs/analysis.yaml"
    params:
        out_dir=lambda w, output: os.path.dirname(output[0]),
    shell:
        "{PY} -m workflow_scripts.figures panel --curves {input.curves} --optima {input.optima} "
        "--fit {input.fit} --out-dir {params.out_dir} > {log} 2>&1"


def grid_inputs(wildcards):
    w = wildcards
    done = [(a, d) for a, d in pairs(w.experiment) if w.measure in measures(w.experiment, a, d)]
    ids = [dict(experiment=w.experiment, arch=a, dataset=d, measure=w.measure) for a, d in done]
    return {
        "curves": [AGG.format(**i) + "/curves.parquet" for i in ids],
        "optima": [AGG.format(**i) + "/optima.parquet" for i in ids],
        "fits": [FIT.format(**i) for i in ids],
    }


# Both grids (curves, collapse) of an (experiment, measure) in one job: same inputs, one start-up.
rule figure_grid:
    input:
        unpack(grid_inputs),
    output:
        *with_sidecars(
            *(
                report(
                    GRID_FIG.replace("{kind}", kind),
                    caption="../report/figure_grid.rst",
                    category="Figures {experiment}",
                    subcategory="all archs and datasets",
                    labels={
                        "figure": f"grid {kind}",
                        "arch": "all",
                        "dataset": "all",
                        "measure": "{measure}",
                    },
                )
                for kind in GRID_KINDS
            )
        ),
    log:
        "results/logs/figure_grid/{experiment}/{measure}.log",
    conda:
        "../envs/analysis.yaml"
    params:
        kinds=" ".join(GRID_KINDS),
        pngs=lambda w, output: [f for f in output if f.endswith(".png")],
    shell:
        "{PY} -m workflow_scripts.figures grid --kind {params.kinds} --curves {input.curves} "
        "--optima {input.optima} --fit {input.fits} --out {params.pngs} > {log} 2>&1"
