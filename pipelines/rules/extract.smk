# Stage 1, extract: index the DICOM tree once (a checkpoint: the series it finds decide the jobs),
# one job per CT series, then gather the manifest. Per-series jobs share the `extract` group so a
# cluster profile can bundle many of them into one submission.
EXTRACT = RESULTS / "extract"


wildcard_constraints:
    series=r"[0-9A-Za-z][0-9A-Za-z._-]*",  # a UID as a file name: never '..' or a path (the index rejects those)


checkpoint extract_index:
    input:
        phantom_ready,
    output:
        index=EXTRACT / "dicom_index.parquet",
        unreadable=EXTRACT / "unreadable_files.parquet",
    params:
        dicom_root=dicom_root(),
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
        "../extract_index.py"


rule extract_scan:
    input:
        index=EXTRACT / "dicom_index.parquet",
    output:
        nodules=EXTRACT / "scans" / "{series}.nodules.parquet",
        failures=EXTRACT / "scans" / "{series}.failures.parquet",
    params:
        settings=extract_scan_settings(),  # a changed patch geometry reruns every scan
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
        "../extract_scan.py"


rule extract_gather:
    input:
        nodules=lambda wildcards: extract_parts(wildcards, "nodules"),
        failures=lambda wildcards: extract_parts(wildcards, "failures"),
        unreadable=EXTRACT / "unreadable_files.parquet",
    output:
        manifest=EXTRACT / "manifest.parquet",
        failures=EXTRACT / "failures.parquet",
    params:
        split=config["extract"]["split"],
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
