"""The report of a real small run (the real LIDC-IDRI sample through every stage), opened in headless Chromium."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml
from browser import chromium, loaded_dom, screenshot
from matplotlib.image import imread

from lidcvae.evaluate.sections import SECTION_IDS

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def small_run(lidc_sample, tmp_path_factory) -> Path:
    """results/<name>/ of the workflow on the two real sample scans, tiny model, 3 epochs."""
    work = tmp_path_factory.mktemp("small-run")
    config = {"name": "small", "results_dir": str(work / "results"), "dicom_root": str(lidc_sample),
              "model": {"name": "conv_vae3d", "input_size": 16, "latent_size": 8, "channels": [4, 8], "strides": [2, 2]},
              "extract": {"split": {"train": 0.5, "val": 0.0}},  # one patient to train on, one to test
              "train": {"epochs": 3, "batch_size": 1, "threads": 1, "progress": False},
              "evaluate": {"iwae_samples": 4, "probe": {"bootstrap_samples": 10}}}
    (work / "config.yaml").write_text(yaml.safe_dump(config))
    report = work / "results" / "small" / "evaluate" / "report.html"
    result = subprocess.run([sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "snakefile"), "--directory", str(work),
                             str(report), "--cores", "2", "--configfile", str(work / "config.yaml")],
                            capture_output=True, text=True, timeout=900, cwd=REPO)
    assert result.returncode == 0, result.stderr[-3000:]
    return work / "results" / "small"


def test_the_report_renders_in_chromium_with_every_image_and_section(small_run, tmp_path):
    if chromium() is None:
        pytest.skip("no chromium on PATH (Debian: apt-get install chromium; .ci/run installs it)")
    page = small_run / "evaluate" / "report.html"
    shot = imread(screenshot(page, tmp_path / "top.png", tmp_path))
    assert shot.shape[:2] == (900, 1200) and shot[..., :3].std() > 0.05  # a page, not a blank canvas
    dom = loaded_dom(page, tmp_path)
    states = re.findall(r'<img[^>]*data-loaded="(\w+)"', dom)
    assert len(states) >= 8 and set(states) == {"true"}, states
    assert len(states) == len(re.findall("<img", page.read_text()))
    for section in ("headline", *SECTION_IDS, "all-numbers"):
        assert f'id="{section}"' in dom, section
    manifest = pd.read_parquet(small_run / "extract" / "manifest.parquet")
    headline = dom[dom.index('id="headline"'): dom.index('<section id="reconstruction"')]
    splits = manifest.groupby("split")
    for split, rows in splits:
        assert f"<td>{split}</td><td>{len(rows)}</td><td>{rows['patient_id'].nunique()}</td>" in headline, split
    assert "σ calibrated" in headline and "LIDC-IDRI DICOM from" in headline and "3 epochs" in headline
    assert "IWAE log-likelihood, test" in headline and "RMSE inside the nodule mask, test" in headline
    assert "the consensus mask (0/1) as two channels" in headline  # the default model, and its masks feed the error
    assert "kept within 1 voxel of the consensus mask" in headline  # model.context: nodule, said where the error is
    assert "sees the image only within 1 voxel of the consensus mask" in dom[dom.index('<section id="reconstruction"'):]
    metrics = json.loads((small_run / "evaluate" / "metrics.json").read_text())
    assert f"{metrics['nodule_error']['test']['rmse_inside_hu']:.3g} HU" in headline
    assert "The probe did not run: probe skipped" in dom  # two patients: a visible line, not a silent gap


def test_the_projector_holds_every_nodule_with_its_characteristics_and_thumbnail(small_run):
    projector = small_run / "evaluate" / "projector"
    config = (projector / "projector_config.pbtxt").read_text()
    assert "sprite" in config and str(projector) not in config  # paths inside are relative: the folder can move
    manifest = pd.read_parquet(small_run / "extract" / "manifest.parquet")
    tensors = next(projector.rglob("tensors.tsv")).read_text().strip().splitlines()
    metadata = pd.read_csv(next(projector.rglob("metadata.tsv")), sep="\t")
    assert len(tensors) == len(manifest) == len(metadata) and len(tensors[0].split("\t")) == 8
    assert {"malignancy", "spiculation", "consensus_diameter_mm", "split"} <= set(metadata.columns)
    assert sorted(metadata["nodule_id"]) == sorted(manifest["nodule_id"])
    sprite = imread(next(projector.rglob("sprite.png")))
    assert sprite.shape[0] >= 32 and sprite.shape[0] % 32 == 0
