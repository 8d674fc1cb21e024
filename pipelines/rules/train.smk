# Stage 2, train: the VAE on the extracted manifest (LIDC / phantom), or on MNIST (no input file).
# train.gpus > 1 runs torchrun with one DDP process per GPU; `resources: gpu` tells the scheduler.
# The declared outputs are model.pt and history.csv, hard links to checkpoints/best.pt and metrics.csv
# made when training ends: Snakemake deletes a job's outputs before it reruns and after it fails, so the
# checkpoints, metrics.csv and tensorboard/ (written as training goes) are kept out of them, and a killed
# or failed run continues from its own last.pt when that was made with the same settings (params, which
# also rerun the rule when they change) and data.
TRAIN = RESULTS / "train"


rule train:
    input:
        unpack(dataset_input),
    output:
        best=TRAIN / "model.pt",
        history=TRAIN / "history.csv",  # the per-epoch loss terms evaluate draws
    params:
        run_dir=lambda wildcards, output: str(Path(output.best).parent),
        settings=run_settings(config),
    log:
        LOGS / "train.log",
    benchmark:
        BENCHMARKS / "train.tsv"
    threads: config["train"]["threads"]
    resources:
        gpu=config["train"]["gpus"],
        mem_mb=16000 if config["dicom_root"] or config["candidates"] else 4000,
        runtime=24 * 60 if config["dicom_root"] or config["candidates"] else 30,
    conda:
        CONDA_ENV
    script:
        "../train_vae.py"
