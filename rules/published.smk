# The authors' published seed-mean curves (deep_norm analysis/*.npy) refitted with both estimators:
# Table 1 and the appendix tables (weight decay, SGD, other norms), each beside the values stored in
# the files, and the sensitivity map of each (workflow_scripts/published.py). Rules exist only when
# `published.dir` is set, and only for the tables whose files are there; they read nothing that
# training writes. While parsing, the files' names are listed, never opened: a downloaded pickle is
# read only by the import job, with the restricted unpickler.
PUBLISHED = CONFIG["published"]
PUBLISHED_TARGETS = []

if PUBLISHED["dir"] is not None:
    from workflow_scripts import published as pub

    try:  # a wrong folder stops the DAG here, naming it
        PUB_FOUND, _ = pub.scan(PUBLISHED["dir"])
    except pub.PublishedError as e:
        raise WorkflowError(f"config key published.dir: {e}") from None

    PUB = "results/published"
    PUB_AGG = f"{PUB}/aggregate/{GROUP}"
    PUB_FIT = f"{PUB}/fit/{GROUP}/fit.json"
    PUB_SENS = f"{PUB}/sensitivity/{GROUP}"
    PUB_FIG = f"{PUB}/figures/{GROUP}"

    def pub_groups(table):
        """(experiment, arch, dataset, measure) of every curve set of a table's files."""
        return [
            dict(experiment=e, arch=a, dataset=d, measure=m)
            for a, d in sorted(PUB_FOUND[table])
            for e, m in pub.TABLES[table].curve_sets()
        ]

    def pub_table_of(experiment):
        return next(t for t in pub.TABLES.values() if experiment in [e for e, _ in t.curve_sets()])

    def pub_settings(wildcards, keys=None):
        w = wildcards
        try:
            s = pub.settings_for(CONFIG, pub_table_of(w.experiment).name, w.arch, w.dataset)
        except pub.PublishedError as e:
            raise WorkflowError(str(e)) from None
        return as_json(s if keys is None else {k: s[k] for k in keys if k in s})

    for _table in sorted(PUB_FOUND):
        _t = pub.TABLES[_table]
        _prefix = f"{PUB}/tables/{_table}"  # not results/tables/: rule tables' pattern

        # one import per table: its files only, all or nothing
        rule:
            name:
                f"published_import_{_table}"
            input:
                [str(p) for p in PUB_FOUND[_table].values()],
            output:
                [str(p) for p in pub.outputs_of(_table, PUB_FOUND[_table], PUB)],
                report=f"{PUB}/import/{_table}.json",
            log:
                f"results/logs/published/import_{_table}.log",
            localrule: True
            conda:
                "../envs/analysis.yaml"
            params:
                folder=PUBLISHED["dir"],
                table=_table,
            shell:
                "{PY} -m workflow_scripts.published {params.folder:q} --out "
                + PUB
                + " --table {params.table} > {log} 2>&1"

        rule:
            name:
                f"published_table_{_table}"
            input:
                [PUB_FIT.format(**g) for g in pub_groups(_table)],
            output:
                table_files(_prefix),
            log:
                f"results/logs/tables/published_{_table}.log",
            localrule: True
            conda:
                "../envs/analysis.yaml"
            params:  # (a shell string is formatted when the job runs: loop variables go through params)
                prefix=_prefix,
                note=pub.NOTES.get(_table, ""),
            shell:
                "{PY} -m workflow_scripts.table --out-prefix {params.prefix} {input} --note={params.note:q} > {log} 2>&1"

        rule:
            name:
                _t.target
            input:
                table_files(_prefix),
            localrule: True

        rule:
            name:
                f"sensitivity_{_table}_published"
            input:
                [f"{PUB_FIG.format(**g)}/sensitivity.png" for g in pub_groups(_table)],
            localrule: True

        PUBLISHED_TARGETS += table_files(_prefix)

    rule published_fit:
        input:
            curves=f"{PUB_AGG}/curves.parquet",
            optima=f"{PUB_AGG}/optima.parquet",
        output:
            PUB_FIT,
        log:
            f"results/logs/published/fit/{GROUP}.log",
        localrule: True
        conda:
            "../envs/analysis.yaml"
        params:
            settings=pub_settings,
        shell:
            "{PY} -m workflow_scripts.published refit --curves {input.curves} --optima {input.optima} "
            "--settings {params.settings:q} --out {output} > {log} 2>&1"

    rule published_sensitivity:
        input:
            curves=f"{PUB_AGG}/curves.parquet",
            optima=f"{PUB_AGG}/optima.parquet",
        output:
            table=f"{PUB_SENS}/sensitivity.parquet",
            summary=f"{PUB_SENS}/sensitivity.json",
            figure=f"{PUB_FIG}/sensitivity.png",
            figure_record=f"{PUB_FIG}/sensitivity.png.json",
        log:
            f"results/logs/published/sensitivity/{GROUP}.log",
        localrule: True
        conda:
            "../envs/analysis.yaml"
        params:
            settings=lambda w: pub_settings(w, keys=SENSITIVITY_KEYS),
        shell:
            "{PY} -m workflow_scripts.sensitivity --curves {input.curves} --optima {input.optima} "
            "--settings {params.settings:q} --out-table {output.table} --out-json {output.summary} "
            "--figure {output.figure} > {log} 2>&1"

else:
    from workflow_scripts import published as pub

    def published_not_configured(target):
        def refuse(wildcards):
            raise WorkflowError(
                f"the target {target} needs config key published.dir (null in this config): "
                "the folder of a clone of https://github.com/Francill99/deep_norm"
            )

        return refuse

    # asked for without a published block: say which key is missing, not "No rule to produce"
    for _table, _t in pub.TABLES.items():

        rule:
            name:
                _t.target
            input:
                published_not_configured(_t.target),
            localrule: True

        rule:
            name:
                f"sensitivity_{_table}_published"
            input:
                published_not_configured(f"sensitivity_{_table}_published"),
            localrule: True
