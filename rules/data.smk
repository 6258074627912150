# Datasets: torchvision download (MNIST, CIFAR) -> one canonical .npz with its sha256 per dataset.


def raw_dir(wildcards):
    if wildcards.dataset not in ("mnist", "cifar10", "cifar100"):
        return []
    if CONFIG["data"]["raw_dir"]:
        return f"{CONFIG['data']['raw_dir']}/{wildcards.dataset}"
    return f"results/download/{wildcards.dataset}"


# Compute nodes often have no internet: fetch on the submit host.
localrules:
    download,


rule download:
    output:
        directory("results/download/{dataset}"),
    log:
        "results/logs/download/{dataset}.log",
    wildcard_constraints:
        dataset="mnist|cifar10|cifar100",
    conda:
        "../envs/train.yaml"
    shell:
        "{PY} -m workflow_scripts.datasets download --dataset {wildcards.dataset} "
        "--raw-dir {output} > {log} 2>&1"


rule datasets:
    input:
        raw_dir,
    output:
        npz="results/datasets/{dataset}.npz",
        record="results/datasets/{dataset}.json",
    log:
        "results/logs/datasets/{dataset}.log",
    conda:
        "../envs/train.yaml"
    params:
        raw=lambda w, input: f"--raw-dir {input[0]}" if input else "",
        md5="" if CONFIG["data"]["verify_download_md5"] else "--no-verify-md5",
    shell:
        "{PY} -m workflow_scripts.datasets prepare --dataset {wildcards.dataset} {params.raw} "
        "{params.md5} --out {output.npz} > {log} 2>&1"
