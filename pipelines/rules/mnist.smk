# MNIST only: the seeds' model-size table (ELBO, IWAE log-likelihood, MSE for several hidden/latent
# sizes trained with the same budget). The evaluate report includes table.html when it exists.
MNIST_TABLE = RESULTS / "mnist_table"


rule mnist_table:
    input:
        unpack(dataset_input),
    output:
        csv=MNIST_TABLE / "table.csv",
        html=MNIST_TABLE / "table.html",
        runs=directory(MNIST_TABLE / "runs"),  # each size's training run (trained afresh on every run)
    params:
        out_dir=lambda wildcards, output: str(Path(output.csv).parent),
        settings=run_settings(config) if config["dataset"] == "mnist" else None,
    log:
        LOGS / "mnist_table.log",
    benchmark:
        BENCHMARKS / "mnist_table.tsv"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=30,
    conda:
        CONDA_ENV
    script:
        "../mnist_table.py"
