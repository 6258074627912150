# The teacher-student perceptron (workflow_scripts/perceptron/): free-norm GD runs, the fixed-norm
# curve, theory, the deep nets' aggregation and fit on λ = |w|/√N, figures and checks.
# Everything goes under results/perceptron/. Rules exist only when the config has a `perceptron:`
# block (validated against config/schema/perceptron.schema.yaml by rules/common.smk).
from workflow_scripts import perceptron as pcp

PERCEPTRON = CONFIG.get("perceptron")
PERCEPTRON_TARGETS = []

if PERCEPTRON is not None:  # validated, with its own checks, by cfg.load_config (common.smk)
    PCP_DIR = "results/perceptron"
    PCP_N = PERCEPTRON["N"]
    PCP_FIG_ALPHA = pcp.alpha_tag(PERCEPTRON["figures"]["alpha"])
    PCP_ANALYSIS = PERCEPTRON["analysis"]
    PCP_THEORY_ALPHAS = PERCEPTRON["theory"]["alphas"] or PERCEPTRON["alphas"]
    PCP_SCALING = PERCEPTRON["scaling"]
    PCP_LARGE = PERCEPTRON["large_alpha"]
    # the large-α GD runs (own N), read only by the paper-variable analysis
    PCP_LARGE_DIRS = (
        [
            f"{PCP_DIR}/large_alpha/N{PCP_LARGE['N']}/alpha{pcp.alpha_tag(a)}/" f"{batches.batch_name(b)}"
            for a in PCP_LARGE["alphas"]
            for b in pcp.run_settings(PERCEPTRON, "large_alpha")["batches"]
        ]
        if PCP_LARGE["enabled"]
        else []
    )

    def pcp_runs(kind):
        """Settings of the GD runs of ``kind``: 'train' (main loss) or 'square_loss'."""
        return pcp.run_settings(PERCEPTRON, kind)

    def pcp_batch_dirs(kind, N, alphas=None):
        run = pcp_runs(kind)
        return [
            f"{PCP_DIR}/{kind}/N{N}/alpha{pcp.alpha_tag(a)}/{batches.batch_name(b)}"
            for a in (run["alphas"] if alphas is None else alphas)
            for b in run["batches"]
        ]

    def pcp_batch(wildcards):
        """The seeds of one GD job, checked against the config."""
        run = pcp_runs(wildcards.kind)
        if int(wildcards.N) != run["N"] or not any(
            pcp.alpha_tag(a) == wildcards.alpha for a in run["alphas"]
        ):
            raise WorkflowError(
                f"perceptron {wildcards.kind} N={wildcards.N} "
                f"alpha={wildcards.alpha} is not in the config"
            )
        for b in run["batches"]:
            if (b[0], b[-1]) == (int(wildcards.first), int(wildcards.last)):
                return b
        raise WorkflowError(f"no perceptron seed batch {wildcards.first}-{wildcards.last}")

    # Under --profile slurm only the GD runs, the fixed-norm minimisation and the theory are
    # submitted; aggregation, fit, checks and figures take seconds on the submit host.
    localrules:
        perceptron_aggregate,
        perceptron_fit,
        perceptron_validate,
        perceptron_figure_trajectory,
        perceptron_figure_scaling,
        perceptron_figure_square_loss,
        perceptron_figure_paper_variables,
        perceptron_all,

    rule perceptron_train:
        output:
            directory(PCP_DIR + "/{kind}/N{N,\\d+}/alpha{alpha,[0-9.]+}/seeds{first}-{last}"),
        log:
            "results/logs/perceptron/{kind}/N{N}/alpha{alpha}/seeds{first}-{last}.log",
        # CPU seconds and memory of every GD job (the block's core-hours, README)
        benchmark:
            "results/benchmarks/perceptron/{kind}/N{N}/alpha{alpha}/seeds{first}-{last}.tsv"
        wildcard_constraints:
            kind="train|square_loss|large_alpha",
        conda:
            "../envs/analysis.yaml"
        resources:
            mem_mb=lambda w: pcp.memory_mb(
                int(w.N), float(w.alpha), len(pcp_batch(w)), PERCEPTRON["max_batch_mb"], PERCEPTRON["dtype"]
            ),
            # the measured cost with a margin, more on a retry (with integrator gd the default 2 h
            # is far too short for the paper block's α = 50 jobs: about 4 h at the unloaded rate)
            runtime=lambda w, attempt: attempt
            * pcp.runtime_minutes(
                int(w.N),
                float(w.alpha),
                len(pcp_batch(w)),
                pcp_runs(w.kind)["steps"],
                PERCEPTRON["integrator"],
            ),
        params:
            seeds=lambda w: " ".join(map(str, pcp_batch(w))),
            steps=lambda w: pcp_runs(w.kind)["steps"],
            loss=lambda w: pcp_runs(w.kind)["loss"],
            experiment=lambda w: pcp_runs(w.kind)["experiment"],
            inputs=PERCEPTRON["inputs"],
            lr_scale=PERCEPTRON["lr_scale"],
            n_log=PERCEPTRON["n_log"],
            max_batch_mb=PERCEPTRON["max_batch_mb"],
            dtype=PERCEPTRON["dtype"],
            integrator=PERCEPTRON["integrator"],
            flow=as_json(PERCEPTRON["flow"]),
        shell:
            "{PY} -m workflow_scripts.perceptron train --N {wildcards.N} --alpha {wildcards.alpha} "
            "--seeds {params.seeds} --steps {params.steps} --loss {params.loss} "
            "--inputs {params.inputs} --lr-scale {params.lr_scale} --n-log {params.n_log} "
            "--experiment {params.experiment} --max-batch-mb {params.max_batch_mb} --dtype {params.dtype} "
            "--integrator {params.integrator} --flow {params.flow:q} --out-dir {output} > {log} 2>&1"

    rule perceptron_aggregate:
        input:
            lambda w: pcp_batch_dirs("train", w.N),
        output:
            curves=PCP_DIR + "/aggregate/N{N,\\d+}/lambda/curves.parquet",
            optima=PCP_DIR + "/aggregate/N{N}/lambda/optima.parquet",
        log:
            "results/logs/perceptron/aggregate/N{N}.log",
        conda:
            "../envs/analysis.yaml"
        params:
            settings=as_json({k: PCP_ANALYSIS[k] for k in ("grid_points", "min_seeds")}),
        shell:
            "{PY} -m workflow_scripts.aggregate --measure lambda --settings {params.settings:q} "
            "--out-curves {output.curves} --out-optima {output.optima} {input} > {log} 2>&1"

    rule perceptron_fit:
        input:
            curves=PCP_DIR + "/aggregate/N{N}/lambda/curves.parquet",
            optima=PCP_DIR + "/aggregate/N{N}/lambda/optima.parquet",
        output:
            PCP_DIR + "/fit/N{N,\\d+}/lambda/fit.json",
        log:
            "results/logs/perceptron/fit/N{N}.log",
        conda:
            "../envs/analysis.yaml"
        params:
            settings=as_json(PCP_ANALYSIS),
        shell:
            "{PY} -m workflow_scripts.fit --curves {input.curves} --optima {input.optima} "
            "--settings {params.settings:q} --out {output} > {log} 2>&1"

    rule perceptron_fixed_norm:
        output:
            PCP_DIR + "/fixed_norm/N{N,\\d+}/alpha{alpha,[0-9.]+}.parquet",
        log:
            "results/logs/perceptron/fixed_norm/N{N}/alpha{alpha}.log",
        conda:
            "../envs/analysis.yaml"
        params:
            seeds=" ".join(map(str, PERCEPTRON["fixed_norm"]["seeds"])),
            lambdas=as_json(PERCEPTRON["fixed_norm"]["lambdas"]),
            max_iter=PERCEPTRON["fixed_norm"]["max_iter"],
            inputs=PERCEPTRON["inputs"],
        shell:
            "{PY} -m workflow_scripts.perceptron fixed-norm --N {wildcards.N} "
            "--alpha {wildcards.alpha} --seeds {params.seeds} --lambdas {params.lambdas:q} "
            "--inputs {params.inputs} --max-iter {params.max_iter} --out {output} > {log} 2>&1"

    rule perceptron_theory:
        output:
            reference=PCP_DIR + "/theory/reference.parquet",
            replica=PCP_DIR + "/theory/replica.parquet",
        log:
            "results/logs/perceptron/theory.log",
        conda:
            "../envs/analysis.yaml"
        params:
            alphas=" ".join(map(str, PCP_THEORY_ALPHAS)),
            lambdas=as_json(PERCEPTRON["theory"]["lambdas"]),
            reference_alphas=as_json(PERCEPTRON["theory"]["reference_alphas"]),
        shell:
            "{PY} -m workflow_scripts.perceptron theory --alphas {params.alphas} "
            "--lambdas {params.lambdas:q} --reference-alphas {params.reference_alphas:q} "
            "--out-reference {output.reference} --out-replica {output.replica} > {log} 2>&1"

    # replica ε/ε_Hebb at large α on per-α λ grids (the paper's variables); seconds per α
    rule perceptron_theory_scaling:
        output:
            PCP_DIR + "/theory/replica_scaling.parquet",
        log:
            "results/logs/perceptron/theory_scaling.log",
        conda:
            "../envs/analysis.yaml"
        params:
            alphas=" ".join(map(str, pcp.scaling_theory_alphas(PERCEPTRON))),
            lambdas=as_json(PCP_SCALING["lambdas"]),
        shell:
            "{PY} -m workflow_scripts.perceptron theory-scaling --alphas {params.alphas} "
            "--lambdas {params.lambdas:q} --out {output} > {log} 2>&1"

    rule perceptron_validate:
        input:
            runs=pcp_batch_dirs("train", PCP_N),
            fit=f"{PCP_DIR}/fit/N{PCP_N}/lambda/fit.json",
            fixed_norm=[
                f"{PCP_DIR}/fixed_norm/N{PCP_N}/alpha{pcp.alpha_tag(a)}.parquet"
                for a in PERCEPTRON["fixed_norm"]["alphas"]
            ],
            replica=rules.perceptron_theory.output.replica,
            scaling=rules.perceptron_theory_scaling.output[0],
            large=PCP_LARGE_DIRS,
        output:
            PCP_DIR + "/validation.json",
        log:
            "results/logs/perceptron/validate.log",
        conda:
            "../envs/analysis.yaml"
        params:
            alpha=PERCEPTRON["validation"]["alpha"],
            window=as_json(PCP_ANALYSIS["window"]),
            scaling=as_json(PCP_SCALING),
        shell:
            "{PY} -m workflow_scripts.perceptron validate {input.runs} --fit {input.fit} "
            "--fixed-norm {input.fixed_norm} --replica {input.replica} "
            "--alpha-check {params.alpha} --window {params.window:q} --scaling {input.scaling} "
            "--scaling-settings {params.scaling:q} --scaling-runs {input.large} "
            "--out {output} > {log} 2>&1"

    rule perceptron_figure_paper_variables:
        input:
            scaling=rules.perceptron_theory_scaling.output[0],
            validation=rules.perceptron_validate.output[0],
            runs=pcp_batch_dirs("train", PCP_N),
            large=PCP_LARGE_DIRS,
        output:
            png=PCP_DIR + "/figures/paper_variables.png",
            meta=PCP_DIR + "/figures/paper_variables.png.json",
        log:
            "results/logs/perceptron/figures/paper_variables.log",
        conda:
            "../envs/analysis.yaml"
        shell:
            "{PY} -m workflow_scripts.perceptron.figures paper-variables --scaling {input.scaling} "
            "--validation {input.validation} --runs {input.runs} {input.large} "
            "--out {output.png} > {log} 2>&1"

    rule perceptron_figure_trajectory:
        input:
            runs=lambda w: pcp_batch_dirs("train", PCP_N, [float(w.alpha)]),
            fixed_norm=PCP_DIR + "/fixed_norm/N%d/alpha{alpha}.parquet" % PCP_N,
            reference=rules.perceptron_theory.output.reference,
            replica=rules.perceptron_theory.output.replica,
        output:
            png=PCP_DIR + "/figures/trajectory_alpha{alpha,[0-9.]+}.png",
            meta=PCP_DIR + "/figures/trajectory_alpha{alpha}.png.json",
        log:
            "results/logs/perceptron/figures/trajectory_alpha{alpha}.log",
        conda:
            "../envs/analysis.yaml"
        shell:
            "{PY} -m workflow_scripts.perceptron.figures trajectory --runs {input.runs} "
            "--fixed-norm {input.fixed_norm} --reference {input.reference} "
            "--replica {input.replica} --alpha {wildcards.alpha} --out {output.png} > {log} 2>&1"

    rule perceptron_figure_scaling:
        input:
            curves=PCP_DIR + "/aggregate/N{N}/lambda/curves.parquet",
            optima=PCP_DIR + "/aggregate/N{N}/lambda/optima.parquet",
            fit=PCP_DIR + "/fit/N{N}/lambda/fit.json",
            reference=rules.perceptron_theory.output.reference,
            replica=rules.perceptron_theory.output.replica,
        output:
            png=PCP_DIR + "/figures/scaling_N{N,\\d+}.png",
            meta=PCP_DIR + "/figures/scaling_N{N}.png.json",
        log:
            "results/logs/perceptron/figures/scaling_N{N}.log",
        conda:
            "../envs/analysis.yaml"
        shell:
            "{PY} -m workflow_scripts.perceptron.figures scaling --curves {input.curves} "
            "--optima {input.optima} --fit {input.fit} --reference {input.reference} "
            "--replica {input.replica} --N {wildcards.N} --out {output.png} > {log} 2>&1"

    rule perceptron_figure_square_loss:
        input:
            square=lambda w: pcp_batch_dirs("square_loss", PCP_N, [float(w.alpha)]),
            logistic=lambda w: pcp_batch_dirs("train", PCP_N, [float(w.alpha)]),
            reference=rules.perceptron_theory.output.reference,
        output:
            png=PCP_DIR + "/figures/square_loss_alpha{alpha,[0-9.]+}.png",
            meta=PCP_DIR + "/figures/square_loss_alpha{alpha}.png.json",
        log:
            "results/logs/perceptron/figures/square_loss_alpha{alpha}.log",
        conda:
            "../envs/analysis.yaml"
        shell:
            "{PY} -m workflow_scripts.perceptron.figures square-loss --square {input.square} "
            "--logistic {input.logistic} --reference {input.reference} "
            "--alpha {wildcards.alpha} --out {output.png} > {log} 2>&1"

    PERCEPTRON_TARGETS = [
        f"{PCP_DIR}/validation.json",
        f"{PCP_DIR}/figures/trajectory_alpha{PCP_FIG_ALPHA}.png",
        f"{PCP_DIR}/figures/scaling_N{PCP_N}.png",
        f"{PCP_DIR}/figures/paper_variables.png",
    ]
    if PERCEPTRON["square_loss"]["enabled"]:
        PERCEPTRON_TARGETS.append(f"{PCP_DIR}/figures/square_loss_alpha{PCP_FIG_ALPHA}.png")

    rule perceptron_all:
        input:
            PERCEPTRON_TARGETS,
