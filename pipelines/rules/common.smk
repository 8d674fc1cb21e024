# Shared by every rule file -- the validated config, output locations, and the file lists that
# depend on the data (the per-scan extraction jobs).
import functools
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(workflow.basedir)))  # the lidcvae package, also when not pip-installed

import yaml
from snakemake.utils import update_config

from lidcvae.config import ConfigError, validate_config, yaml_load
from lidcvae.train.identity import run_settings
from lidcvae.workflow.cli import one_line

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
# A bad key is one line and exit 2, not a traceback. Snakemake's own --config takes no dotted key (it stops
# at `--config train.epochs=3` before reading this file); a dotted key a config file or the API brings is shown
# the form that works.
_dotted = sorted(str(key) for key in config if "." in str(key))
if _dotted:
    _section, _, _rest = _dotted[0].partition(".")
    _value = config[_dotted[0]]
    for _part in reversed(_rest.split(".")):
        _value = {_part: _value}
    _form = f'"{_section}={yaml.safe_dump(_value, default_flow_style=True).strip()}"'
    print(f"error: {CONFIG_SOURCE}: top-level key '{_dotted[0]}': config keys are not dotted; give the section, which "
          f"is merged into the config key by key: --config {_form}", file=sys.stderr)
    sys.exit(2)
try:
    config.update(validate_config(config, source=CONFIG_SOURCE, parse_text=True))
except ConfigError as _error:
    print(f"error: {one_line(_error)}", file=sys.stderr)
    sys.exit(2)
print(f"lidcvae: config from {CONFIG_SOURCE}, unnamed keys at the schema defaults (lidcvae/schemas/)", file=sys.stderr)
print(f"lidcvae: effective model section: {json.dumps(config['model'], sort_keys=True)}", file=sys.stderr)

RESULTS = Path(config["results_dir"]) / config["name"]
SCRIPTS = Path(workflow.basedir) / "pipelines"
LOGS = RESULTS / "logs"
BENCHMARKS = RESULTS / "benchmarks"
CONDA_ENV = "../envs/lidcvae.yaml"


def final_outputs(wildcards):
    """The targets of the workflow's default run, by dataset: the report, or with benchmark.enabled the
    benchmark's table."""
    if config["dataset"] == "mnist":
        return [str(RESULTS / "evaluate" / "report.html")]
    if config["benchmark"]["enabled"]:  # the variants are the benchmark's own (rules/benchmark.smk)
        return [str(RESULTS / "extract" / "manifest.parquet"), str(RESULTS / "benchmark" / "table.md")]
    return [
        str(RESULTS / "extract" / "manifest.parquet"),
        str(RESULTS / "evaluate" / "report.html"),
    ]


def extract_series(wildcards):
    """The series to extract, known once the index checkpoint ran; the cohort route decides which (routes.smk)."""
    return ROUTE.series(checkpoints.extract_index.get().output)


def extract_scan_settings():
    """The extract keys that change a scan's patches (workers only changes speed): the rule's params."""
    return {key: value for key, value in config["extract"].items() if key not in ("workers", "split")}


def extract_parts(wildcards, part):
    """One part table (``nodules`` or ``failures``) of every series, in series order, for the gather step."""
    folder = RESULTS / "extract" / "scans"
    return [str(folder / f"{uid}.{part}.parquet") for uid in extract_series(wildcards)]


# The idx files the MNIST reader looks for in mnist.data_dir, gzip or plain (lidcvae/data/mnist.py).
MNIST_FILES = [f"{prefix}-{kind}{suffix}" for prefix in ("train", "t10k")
               for kind in ("images-idx3-ubyte", "labels-idx1-ubyte") for suffix in (".gz", "")]


def dataset_input(wildcards):
    """What a stage reads the patches or digits from: the extraction manifest for CT (it stands for the
    patch files it lists, which extract_scan writes undeclared); for MNIST the idx files mnist.data_dir holds. Files a stage downloads there (mnist.download) are not declared by the
    run that fetches them (which ones appear depends on what the folder held); the next run declares them."""
    if config["dataset"] == "lidc":
        return {"manifest": str(RESULTS / "extract" / "manifest.parquet")}
    data_dir = Path(config["mnist"]["data_dir"])
    return {"mnist": [str(data_dir / name) for name in MNIST_FILES if (data_dir / name).is_file()]}


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
    """The checkpoint, plus the manifest (CT) or the idx files (MNIST) of what is embedded."""
    return {"checkpoint": model_checkpoint(), **dataset_input(wildcards)}


def training_history():
    """The per-epoch losses the report draws: this run's train/history.csv, or the metrics.csv beside an
    `embed.checkpoint` trained elsewhere when it has one (none: the report draws no loss curves)."""
    if not config["embed"]["checkpoint"]:
        return {"history": rules.train.output.history}
    history = Path(training_run_dir(config["embed"]["checkpoint"])) / "metrics.csv"
    return {"history": str(history)} if history.is_file() else {}


def evaluate_inputs(wildcards):
    """Checkpoint, embeddings, training history and what the evaluated patches or digits are read from;
    the benchmark table (evaluate.representation_table) when it exists (a missing one is a line in the
    report); for MNIST the model-size table the report includes."""
    inputs = {
        "checkpoint": model_checkpoint(),
        "embeddings": rules.embed.output.embeddings,
        **training_history(),
        **dataset_input(wildcards),
    }
    table = config["evaluate"]["representation_table"]
    if table and Path(table).is_file():
        inputs["representation_table"] = table
    if config["dataset"] == "mnist" and config["mnist"]["table"]["enabled"]:
        inputs["extra_html"] = [str(RESULTS / "mnist_table" / "table.html")]
    return inputs


# The benchmark's files (rules/benchmark.smk): one feature table per row under benchmark/features/.
BENCH = RESULTS / "benchmark"
FEATURES = BENCH / "features"
VARIANTS = Path(workflow.basedir) / "configs" / "benchmark" / "variants"
MANIFEST = RESULTS / "extract" / "manifest.parquet"


def _sidecar(path):
    """A feature table's .json sidecar (title, kind, skipped targets: lidcvae.benchmark.rows)."""
    return Path(str(path)).with_suffix(".json")


def baseline_rows():
    """The no-network rows: consensus diameter and raw-voxel PCA; on the render route also the readers' own
    annotations (their mean diameter, + shape ratings, + density ratings), which the manifest holds there."""
    rows = {"diameter": FEATURES / "consensus_diameter.parquet", "raw_pca": FEATURES / "raw-pca.parquet"}
    if route_name() == "render":
        rows |= {name: FEATURES / f"{name}.parquet" for name in
                 ("readers_diameter", "readers_diameter_shape", "readers_diameter_density")}
    return rows


def benchmark_rows(wildcards=None):
    """Every feature table the table rule scores, by the benchmark section."""
    bench = config["benchmark"]
    rows = [FEATURES / f"variant-{name}.parquet" for name in bench["variants"]]
    rows += [FEATURES / "untrained.parquet", *baseline_rows().values()]
    if bench["contrastive"]["enabled"]:
        rows.append(FEATURES / "contrastive.parquet")
    if bench["radiomics"]:
        rows.append(FEATURES / "radiomics.parquet")
    return [str(row) for row in rows]
