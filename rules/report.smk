# The numbers the paper quotes (TSV + LaTeX macros, each with its source file and sha256) and the
# HTML report's description (`snakemake --report report.html`; figures and tables are marked with
# report() in their rules, captions under report/).
report: "../report/workflow.rst"


def numbers_fits():
    """Every fit.json `rule all` makes: each (not deferred) experiment's (arch, dataset, measure),
    and the perceptron's."""
    fits = [
        FIT.format(experiment=e, arch=a, dataset=d, measure=m)
        for e in all_experiments()
        for a, d, m in analysis_outputs(e)
    ]
    if globals().get("PERCEPTRON") is not None:  # rules/perceptron.smk, when included
        fits.append(f"results/perceptron/fit/N{PERCEPTRON['N']}/lambda/fit.json")
    return fits


# seconds of work: on the submit host under --profile slurm, like the other analysis rules
localrules:
    numbers,


rule numbers:
    input:
        numbers_fits(),
    output:
        tsv=report(
            NUMBERS[0], caption="../report/numbers.rst", category="Numbers", labels={"file": "numbers.tsv"}
        ),
        tex=NUMBERS[1],
        record=NUMBERS[2],
    log:
        "results/logs/numbers.log",
    conda:
        "../envs/analysis.yaml"
    shell:
        "{PY} -m workflow_scripts.numbers --out-tsv {output.tsv} --out-tex {output.tex} "
        "--out-record {output.record} {input} > {log} 2>&1"
