# Stage 4, evaluate and show: metrics.json, figures, the TensorBoard projector and one self-contained
# report.html per run.
EVALUATE = RESULTS / "evaluate"
# projector/ is written only when evaluate.projector is on, so it is an output only then.
PROJECTOR = {"projector": directory(EVALUATE / "projector")} if config["evaluate"]["projector"] else {}


rule evaluate:
    input:
        unpack(evaluate_inputs),
    output:
        metrics=EVALUATE / "metrics.json",
        report=EVALUATE / "report.html",
        figures=directory(EVALUATE / "figures"),
        **PROJECTOR,
    params:
        history=lambda wildcards, input: input.get("history"),  # None: no loss curves drawn
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
