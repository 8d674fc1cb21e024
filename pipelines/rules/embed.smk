# Stage 3, embed: posterior means and log-variances of every nodule (every digit for MNIST), in eval mode.
EMBED = RESULTS / "embed"


rule embed:
    input:
        unpack(embed_inputs),
    output:
        embeddings=EMBED / "embeddings.parquet",
    params:
        embed=config["embed"],  # a changed section reruns the rule
    log:
        LOGS / "embed.log",
    benchmark:
        BENCHMARKS / "embed.tsv"
    threads: 2
    resources:
        mem_mb=8000,
        runtime=60,
    conda:
        CONDA_ENV
    script:
        "../embed_latents.py"
