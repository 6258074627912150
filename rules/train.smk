# Training: one job per (experiment, arch, dataset, P, seed batch); one Parquet per cell.
# params.cells holds the cells' resolved configs, so changing a training setting reruns exactly the
# cells it changes (Snakemake's params rerun trigger), and changing an analysis setting reruns none.


rule train:
    input:
        data="results/datasets/{dataset}.npz",
        record="results/datasets/{dataset}.json",
    output:
        directory("results/train/{experiment}/{arch}/{dataset}/P{P}/seeds{first}-{last}"),
    log:
        "results/logs/train/{experiment}/{arch}/{dataset}/P{P}/seeds{first}-{last}.log",
    conda:
        "../envs/train.yaml"
    # the cells' training.threads (part of each cell's hash): training uses exactly that many
    # whatever --cores is (Snakemake caps what it reserves at --cores, not what the job uses)
    threads: lambda w: batch_cells(w)[0]["training"]["threads"]
    resources:
        gpu=train_gpus,  # SLURM: --gpus=1 (type: SD_SLURM_GPU_MODEL); locally only a label
        # a job killed at its time limit is retried with more time and resumes from checkpoints
        runtime=lambda w, attempt: CONFIG["experiments"][w.experiment]["runtime_minutes"] * attempt,
    params:
        cells=lambda w: as_json(batch_cells(w)),
        checkpoints="results/train_checkpoints",
    shell:
        "{PY} -m workflow_scripts.train --cells {params.cells:q} --data {input.data} "
        "--out {output} --checkpoint-dir {params.checkpoints} 2> {log}"
