# Stage 1, coordinates route (`candidates` set): read the table and index images_root once (a
# checkpoint: the series the table names and the root holds decide the jobs), one job per series, then
# gather the manifest. Same outputs and rule names as the LIDC route (extract.smk), so train / embed /
# evaluate run unchanged.
from lidcvae.config import ConfigError

EXTRACT = RESULTS / "extract"


wildcard_constraints:
    series=r"[0-9A-Za-z][0-9A-Za-z._-]*",  # a UID as a file name: never '..' or a path (the index rejects those)

if not config["images_root"]:
    raise ConfigError("key 'images_root': candidates is set, so images_root must name the folder of CT "
                      "(DICOM series or <seriesuid>.mhd / .nii / .nii.gz / .nrrd files)")


checkpoint extract_index:
    input:
        table=config["candidates"],
    output:
        index=EXTRACT / "image_index.parquet",
        candidates=EXTRACT / "candidates.parquet",
        row_failures=EXTRACT / "candidate_failures.parquet",
        unreadable=EXTRACT / "unreadable_files.parquet",
    params:
        images_root=config["images_root"],
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
        "../extract_coordinates_index.py"


rule extract_scan:
    input:
        index=EXTRACT / "image_index.parquet",
        candidates=EXTRACT / "candidates.parquet",
    output:
        nodules=EXTRACT / "scans" / "{series}.nodules.parquet",
        failures=EXTRACT / "scans" / "{series}.failures.parquet",
    params:
        table_name=lambda wildcards: Path(config["candidates"]).name,
        settings=extract_scan_settings(),  # a changed patch geometry or sphere_mask reruns every series
        out_dir=lambda wildcards, output: str(Path(output.failures).parent.parent),
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
        "../extract_coordinates_scan.py"


rule extract_gather:
    input:
        nodules=lambda wildcards: extract_parts(wildcards, "nodules"),
        failures=lambda wildcards: extract_parts(wildcards, "failures"),
        unreadable=EXTRACT / "unreadable_files.parquet",
        row_failures=EXTRACT / "candidate_failures.parquet",
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
