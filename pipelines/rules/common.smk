# Shared by every rule file: the validated config, output locations, and the file lists that
# depend on the data (the per-scan extraction jobs).
import sys
from pathlib import Path

sys.path.insert(0, str(Path(workflow.basedir)))  # the lidcvae package, also when not pip-installed

from lidcvae.config import validate_config

config.update(validate_config(config, source="snakemake config"))

RESULTS = Path(config["results_dir"]) / config["name"]
SCRIPTS = Path(workflow.basedir) / "pipelines"
LOGS = RESULTS / "logs"
BENCHMARKS = RESULTS / "benchmarks"


def dicom_root():
    """The DICOM root the extraction reads: the configured download, or the phantom cohort."""
    if config["dicom_root"]:
        return config["dicom_root"]
    return str(RESULTS / "phantom" / "dicom")


def final_outputs(wildcards):
    """What `rule all` asks for, by dataset."""
    if config["dataset"] == "mnist":
        return [str(RESULTS / "evaluate" / "report.html")]
    return [
        str(RESULTS / "extract" / "manifest.parquet"),
        str(RESULTS / "evaluate" / "report.html"),
    ]
