# Stage 2, train: the VAE on the extracted manifest (LIDC / phantom), or on MNIST (no input file).
# train.gpus > 1 runs torchrun with one DDP process per GPU; `resources: gpu` tells the scheduler.
TRAIN = RESULTS / "train"


rule train:
    input:
        unpack(lambda wildcards: {} if config["dataset"] == "mnist" else {"manifest": RESULTS / "extract" / "manifest.parquet"}),
    output:
        best=TRAIN / "checkpoints" / "best.pt",
        last=TRAIN / "checkpoints" / "last.pt",
        metrics=TRAIN / "metrics.csv",
    params:
        run_dir=lambda wildcards, output: str(Path(output.metrics).parent),
    log:
        LOGS / "train.log",
    benchmark:
        BENCHMARKS / "train.tsv"
    threads: config["train"]["threads"]
    resources:
        gpu=config["train"]["gpus"],
        mem_mb=16000 if config["dicom_root"] else 4000,
        runtime=24 * 60 if config["dicom_root"] else 30,
    conda:
        CONDA_ENV
    script:
        "../train_vae.py"
