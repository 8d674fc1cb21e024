# Stage 4, evaluate and show: metrics.json, figures and one self-contained report.html per run.
EVALUATE = RESULTS / "evaluate"


rule evaluate:
    input:
        unpack(evaluate_inputs),
    output:
        metrics=EVALUATE / "metrics.json",
        report=EVALUATE / "report.html",
        figures=directory(EVALUATE / "figures"),
    params:
        # The training history, kept out of the train rule's outputs (train.smk); absent for a checkpoint
        # trained elsewhere that has none beside it.
        history=lambda wildcards, input: str(Path(training_run_dir(input.checkpoint)) / "metrics.csv"),
        settings=config["evaluate"],
        out_dir=lambda wildcards, output: str(Path(output.metrics).parent),
    log:
        LOGS / "evaluate.log",
    benchmark:
        BENCHMARKS / "evaluate.tsv"
    threads: 2
    resources:
        mem_mb=16000,
        runtime=240,
    conda:
        CONDA_ENV
    script:
        "../evaluate.py"
