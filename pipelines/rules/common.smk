# Shared by every rule file -- the validated config, output locations, and the file lists that
# depend on the data (the per-scan extraction jobs).
import functools
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(workflow.basedir)))  # the lidcvae package, also when not pip-installed

from snakemake.utils import update_config

from lidcvae.config import validate_config, yaml_load
from lidcvae.train.identity import run_settings

# The embedded demo's settings (13 phantom nodules) apply only when no --configfile is given: a config
# file replaces them, so its unnamed keys take the schema defaults, never the demo's. --config
# overrides either.
DEMO_CONFIG = Path(workflow.basedir) / "configs" / "demo.yaml"
CONFIG_SOURCE = ", ".join(map(str, workflow.config_settings.configfiles))
if not CONFIG_SOURCE:
    CONFIG_SOURCE = f"{DEMO_CONFIG} (the embedded demo: no --configfile given)"
    _demo = yaml_load(DEMO_CONFIG.read_text())
    update_config(_demo, dict(config))
    config.clear()
    config.update(_demo)
config.update(validate_config(config, source=CONFIG_SOURCE, parse_text=True))
print(f"lidcvae: config from {CONFIG_SOURCE}, unnamed keys at the schema defaults (lidcvae/schemas/)", file=sys.stderr)
print(f"lidcvae: effective model section: {json.dumps(config['model'], sort_keys=True)}", file=sys.stderr)

RESULTS = Path(config["results_dir"]) / config["name"]
SCRIPTS = Path(workflow.basedir) / "pipelines"
LOGS = RESULTS / "logs"
BENCHMARKS = RESULTS / "benchmarks"
CONDA_ENV = "../envs/lidcvae.yaml"


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


def phantom_ready(wildcards):
    """The phantom cohort's completion marker when the workflow builds it, else nothing."""
    if config["dicom_root"]:
        return []
    return [str(RESULTS / "phantom" / "cohort.json")]


def extract_series(wildcards):
    """The series to extract, known once the index checkpoint ran: those the coordinates table names and
    images_root holds, or (LIDC route) the CT series of the DICOM index restricted to `patients`."""
    index = checkpoints.extract_index.get().output
    if config["candidates"]:
        return _candidate_series_in(index.index, index.candidates)
    return _ct_series_in(index.index)


@functools.cache
def _candidate_series_in(index_path, candidates_path):
    import pandas as pd

    found = set(pd.read_parquet(index_path, columns=["series_instance_uid"])["series_instance_uid"])
    named = set(pd.read_parquet(candidates_path, columns=["series_instance_uid"])["series_instance_uid"])
    return sorted(found & named)


@functools.cache
def _ct_series_in(index_path):
    import pandas as pd
    from lidcvae.extract.cohort import ct_series

    return ct_series(pd.read_parquet(index_path, columns=["series_instance_uid", "patient_id", "modality"]), config["patients"])


def extract_scan_settings():
    """The extract keys that change a scan's patches (workers only changes speed): the rule's params."""
    return {key: value for key, value in config["extract"].items() if key not in ("workers", "split")}


def extract_parts(wildcards, part):
    """One part table (``nodules`` or ``failures``) of every series, in series order, for the gather step."""
    folder = RESULTS / "extract" / "scans"
    return [str(folder / f"{uid}.{part}.parquet") for uid in extract_series(wildcards)]


def manifest_input(wildcards):
    """The extraction manifest for CT, as the rules that read it declare it (MNIST digits have none)."""
    if config["dataset"] == "lidc":
        return {"manifest": str(RESULTS / "extract" / "manifest.parquet")}
    return {}


def train_inputs(wildcards):
    """The manifest whose patches train the model (nothing for MNIST)."""
    return manifest_input(wildcards)


def model_checkpoint():
    """The model embed and evaluate use: `embed.checkpoint` (trained elsewhere; this run trains nothing)
    or this run's best checkpoint."""
    return config["embed"]["checkpoint"] or rules.train.output.best


def training_run_dir(checkpoint):
    """The training run folder of a checkpoint (its metrics.csv draws the loss curves): the folder of
    train/model.pt, or the one above train/checkpoints/best.pt (as embed.checkpoint may name either)."""
    folder = Path(checkpoint).parent
    return str(folder.parent if folder.name == "checkpoints" else folder)


def embed_inputs(wildcards):
    """The checkpoint, plus the manifest for CT (MNIST digits come from the dataset loader)."""
    return {"checkpoint": model_checkpoint(), **manifest_input(wildcards)}


def evaluate_inputs(wildcards):
    """Checkpoint, embeddings and the manifest whose patches are evaluated; for MNIST the model-size
    table the report includes instead of a manifest."""
    inputs = {
        "checkpoint": model_checkpoint(),
        "embeddings": rules.embed.output.embeddings,
        **manifest_input(wildcards),
    }
    if config["dataset"] == "mnist" and config["mnist"]["table"]["enabled"]:
        inputs["extra_html"] = [str(RESULTS / "mnist_table" / "table.html")]
    return inputs
