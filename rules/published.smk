# The authors' published seed-mean curves (deep_norm analysis/*.npy) refitted with both estimators
# and the windows of the `published.experiment` experiment (workflow_scripts/published.py). Rules
# exist only when `published.dir` is set; they read nothing that training writes.
PUBLISHED = CONFIG["published"]
PUBLISHED_TARGETS = []

if PUBLISHED["dir"] is not None:
    from workflow_scripts import published as pub

    try:  # a wrong folder or a file without a key stops the DAG here, naming it
        PUB_FILES, _ = pub.scan(PUBLISHED["dir"])
        for _path in PUB_FILES.values():
            pub.load_file(_path)
    except pub.PublishedError as e:
        raise WorkflowError(f"config key published.dir: {e}") from None

    PUB_PAIRS = sorted(PUB_FILES)
    PUB_TABLE = "results/tables/published/table1"
    PUBLISHED_TARGETS = table_files(PUB_TABLE)

    def published_settings(wildcards):
        """The refit's settings: the experiment's (the authors' windows), both estimators."""
        a = cfg.analysis_settings(CONFIG, PUBLISHED["experiment"], wildcards.arch, wildcards.dataset)
        return as_json({**a, "estimator": "both"})

    localrules:
        published_import,
        published_fit,
        table1_published,

    rule published_import:
        input:
            [str(p) for p in PUB_FILES.values()],
        output:
            [
                f"results/published/aggregate/{a}/{d}/{f}.parquet"
                for a, d in PUB_PAIRS
                for f in ("curves", "optima")
            ],
            report="results/published/import.json",
        log:
            "results/logs/published/import.log",
        conda:
            "../envs/analysis.yaml"
        params:
            folder=PUBLISHED["dir"],
        shell:
            "{PY} -m workflow_scripts.published {params.folder:q} --out results/published > {log} 2>&1"

    rule published_fit:
        input:
            curves="results/published/aggregate/{arch}/{dataset}/curves.parquet",
            optima="results/published/aggregate/{arch}/{dataset}/optima.parquet",
        output:
            "results/published/fit/{arch}/{dataset}/fit.json",
        log:
            "results/logs/published/fit/{arch}/{dataset}.log",
        conda:
            "../envs/analysis.yaml"
        params:
            settings=published_settings,
        shell:
            "{PY} -m workflow_scripts.fit --curves {input.curves} --optima {input.optima} "
            "--settings {params.settings:q} --out {output} > {log} 2>&1"

    rule table1_published:
        input:
            [f"results/published/fit/{a}/{d}/fit.json" for a, d in PUB_PAIRS],
        output:
            PUBLISHED_TARGETS,
        log:
            "results/logs/tables/published.log",
        conda:
            "../envs/analysis.yaml"
        shell:
            "{PY} -m workflow_scripts.table --out-prefix " + PUB_TABLE + " {input} > {log} 2>&1"

else:

    def published_not_configured(wildcards):
        raise WorkflowError(
            "the target table1_published needs config key published.dir (null in this config): "
            "the folder of a clone of https://github.com/Francill99/deep_norm"
        )

    # asked for without a published block: say which key is missing, not "No rule to produce"
    rule table1_published:
        input:
            published_not_configured,
