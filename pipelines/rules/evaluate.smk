# Stage 4, evaluate and show: metrics.json, figures and one self-contained report.html per run.
EVALUATE = RESULTS / "evaluate"


def evaluate_inputs(wildcards):
    """Checkpoint, training history and embeddings; for MNIST also the model-size table the report includes."""
    inputs = {
        "checkpoint": rules.train.output.best,
        "history": rules.train.output.metrics,
        "embeddings": rules.embed.output.embeddings,
    }
    if config["dataset"] == "mnist":
        inputs["extra_html"] = [str(RESULTS / "mnist_table" / "table.html")]
    return inputs


rule evaluate:
    input:
        unpack(evaluate_inputs),
    output:
        metrics=EVALUATE / "metrics.json",
        report=EVALUATE / "report.html",
        figures=directory(EVALUATE / "figures"),
    params:
        run_dir=lambda wildcards, input: str(Path(input.history).parent),
        out_dir=lambda wildcards, output: str(Path(output.metrics).parent),
    log:
        LOGS / "evaluate.log",
    benchmark:
        BENCHMARKS / "evaluate.tsv"
    threads: 2
    resources:
        mem_mb=16000,
        runtime=240,
    script:
        "../evaluate.py"
