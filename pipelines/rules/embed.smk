# Stage 3, embed: posterior means and log-variances of every nodule (every digit for MNIST), in eval mode.
EMBED = RESULTS / "embed"


def embed_inputs(wildcards):
    """The checkpoint, plus the manifest for CT (MNIST digits come from the dataset loader)."""
    inputs = {"checkpoint": rules.train.output.best}
    if config["dataset"] == "lidc":
        inputs["manifest"] = str(RESULTS / "extract" / "manifest.parquet")
    return inputs


rule embed:
    input:
        unpack(embed_inputs),
    output:
        embeddings=EMBED / "embeddings.parquet",
    params:
        batch_size=config["embed"]["batch_size"],
        device=config["embed"]["device"],
    log:
        LOGS / "embed.log",
    benchmark:
        BENCHMARKS / "embed.tsv"
    threads: 2
    resources:
        mem_mb=8000,
        runtime=60,
    script:
        "../embed_latents.py"
