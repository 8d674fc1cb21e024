# Stage 1, extract, for every cohort route (routes.smk: the route's own step is its scripts, inputs and
# params): index the data once (a checkpoint: what it finds decides the jobs), one job per series, then
# gather the manifest. Per-series jobs share the `extract` group so a cluster profile can bundle many of
# them into one submission.


wildcard_constraints:
    series=r"[0-9A-Za-z][0-9A-Za-z._-]*",  # a UID as a file name: never '..' or a path (the index rejects those)


checkpoint extract_index:
    input:
        unpack(ROUTE.index_input),
    output:
        **ROUTE.index_outputs,
        unreadable=EXTRACT / "unreadable_files.parquet",
    params:
        **ROUTE.index_params,
    log:
        LOGS / "extract_index.log",
    benchmark:
        BENCHMARKS / "extract_index.tsv"
    threads: 4
    resources:
        mem_mb=2000,
        runtime=30,
    conda:
        CONDA_ENV
    script:
        f"../{ROUTE.index_script}"


# A job reads the image files its series' index rows list (the index stands for them) and, besides its two
# part tables, writes its nodules' patches under extract/patches/<patient>/: not declared, as a patient's
# folder is shared by their series; the nodules table lists every patch file. A new index reruns only the
# series whose rows changed: their digest is a param and the tables are ancient (routes.smk, CohortRoute).
rule extract_scan:
    input:
        **ROUTE.scan_inputs(),
    output:
        nodules=EXTRACT / "scans" / "{series}.nodules.parquet",
        failures=EXTRACT / "scans" / "{series}.failures.parquet",
    params:
        **ROUTE.scan_params,
        **ROUTE.scan_change_params(),
        settings=extract_scan_settings(),  # a changed patch geometry reruns every series
        out_dir=lambda wildcards, output: str(Path(output.failures).parent.parent),  # patches/ go under it
    log:
        LOGS / "extract" / "{series}.log",
    benchmark:
        BENCHMARKS / "extract" / "{series}.tsv"
    group:
        "extract"
    threads: 1
    resources:
        mem_mb=3000,
        runtime=10,
    conda:
        CONDA_ENV
    script:
        f"../{ROUTE.scan_script}"


rule extract_gather:
    input:
        nodules=lambda wildcards: extract_parts(wildcards, "nodules"),
        failures=lambda wildcards: extract_parts(wildcards, "failures"),
        unreadable=EXTRACT / "unreadable_files.parquet",
        **ROUTE.reads(ROUTE.gather_reads),
    output:
        manifest=EXTRACT / "manifest.parquet",
        failures=EXTRACT / "failures.parquet",
    params:
        split=config["extract"]["split"],
        route=route_name(),  # the render route splits patients by render.seed, stratified by malignancy
        render=config["render"] if route_name() == "render" else None,
    log:
        LOGS / "extract_gather.log",
    benchmark:
        BENCHMARKS / "extract_gather.tsv"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        CONDA_ENV
    script:
        "../extract_gather.py"
