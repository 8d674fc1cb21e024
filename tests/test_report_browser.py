"""Reports of real small runs opened in headless Chromium: the real LIDC-IDRI sample through every stage, the
same checkpoint re-evaluated with a constructed history, MNIST, and a coordinates cohort embedded with that
checkpoint (``embed.checkpoint``): verdicts computed, the checkpoint named, every key number's n, the
size-only control beside each structure claim, no training section where the run trained nothing."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from browser import chromium, loaded_dom, screenshot
from matplotlib.image import imread
from test_workflow_coordinates import luna_like  # noqa: F401  (the LUNA16-like fixture)

from lidcvae.evaluate.provenance import NOT_SPLIT
from lidcvae.evaluate.sections import SECTION_IDS

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[1]
TINY_EVALUATE = {"iwae_samples": 4, "probe": {"bootstrap_samples": 10}}


def _snakemake(work: Path, target: Path, *configs: Path, extra: tuple[str, ...] = ()) -> None:
    files = [str(c) for c in configs]
    result = subprocess.run([sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "snakefile"), "--directory", str(work),
                             str(target), "--cores", "2", "--configfile", *files, *extra],
                            capture_output=True, text=True, timeout=900, cwd=REPO)
    assert result.returncode == 0, result.stderr[-3000:]


def _dom(page: Path, tmp_path: Path) -> str:
    if chromium() is None:
        pytest.skip("no chromium on PATH (Debian: apt-get install chromium; .ci/run installs it)")
    dom = loaded_dom(page, tmp_path)
    states = re.findall(r'<img[^>]*data-loaded="(\w+)"', dom)
    assert states and set(states) == {"true"}, states
    return dom


def _headline(dom: str) -> str:
    return dom[dom.index('id="headline"'): dom.index('<section id="reconstruction"')]


def _key_rows(headline: str) -> list[str]:
    """The key-number rows (headline and greyed tables), each as its cells' text joined by |."""
    tables = re.findall(r'<table class="(?:keynumbers|greyed)">(.*?)</table>', headline, re.S)
    return [re.sub(r"<[^>]+>", "|", row) for table in tables for row in re.findall(r"<tr><td>(.*?)</tr>", table, re.S)]


@pytest.fixture(scope="module")
def small_run(lidc_sample, tmp_path_factory) -> Path:
    """results/<name>/ of the workflow on the two real sample scans, tiny model, 3 epochs."""
    work = tmp_path_factory.mktemp("small-run")
    config = {"name": "small", "results_dir": str(work / "results"), "dicom_root": str(lidc_sample),
              "model": {"name": "conv_vae3d", "input_size": 16, "latent_size": 8, "channels": [4, 8], "strides": [2, 2]},
              "extract": {"split": {"train": 0.5, "val": 0.0}},  # one patient to train on, one to test
              "train": {"epochs": 3, "batch_size": 1, "threads": 1, "progress": False}, "evaluate": TINY_EVALUATE}
    (work / "config.yaml").write_text(yaml.safe_dump(config))
    _snakemake(work, work / "results" / "small" / "evaluate" / "report.html", work / "config.yaml")
    return work / "results" / "small"


def test_the_report_renders_in_chromium_with_every_image_and_section(small_run, tmp_path):
    page = small_run / "evaluate" / "report.html"
    dom = _dom(page, tmp_path)
    shot = imread(screenshot(page, tmp_path / "top.png", tmp_path))
    assert shot.shape[:2] == (900, 1200) and shot[..., :3].std() > 0.05  # a page, not a blank canvas
    assert len(re.findall("<img", dom)) >= 8
    for section in ("headline", *SECTION_IDS, "all-numbers"):
        assert f'id="{section}"' in dom, section
    manifest = pd.read_parquet(small_run / "extract" / "manifest.parquet")
    headline = _headline(dom)
    for split, rows in manifest.groupby("split"):
        assert f"<td>{split}</td><td>{len(rows)}</td><td>{rows['patient_id'].nunique()}</td>" in headline, split
    assert "σ calibrated" in headline and "LIDC-IDRI DICOM from" in headline and "3 epochs" in headline
    assert "the consensus mask (0/1) as two channels" in headline  # the default model, its masks named for what they are
    assert "kept within 1 voxel of the consensus mask" in headline  # model.context: nodule, said where the error is
    assert "sees the image only within 1 voxel of the consensus (50 %) mask" in dom[dom.index('<section id="reconstruction"'):]
    metrics = json.loads((small_run / "evaluate" / "metrics.json").read_text())
    # the checkpoint named: file, epoch, what it was trained on, that this run trained it, with its train split's size
    checkpoint = metrics["checkpoint"]
    assert checkpoint["trained_here"] and checkpoint["training_samples"] == int((manifest["split"] == "train").sum())
    assert f"{checkpoint['file']}, epoch {checkpoint['epoch']}: trained by this run; trained on LIDC-IDRI DICOM" in headline
    assert "(1 training nodule, consensus (50 %) masks)" in headline
    # every key number names its split (or what it was computed on), its sample count and patients; the test
    # split's 1 patient is under the minimum, so its numbers are greyed with the reason, never a headline
    rows = _key_rows(headline)
    test = manifest[manifest["split"] == "test"]
    iwae = next(r for r in rows if r.startswith("IWAE log-likelihood, test"))
    assert f"test split: {len(test)} nodule{'s' * (len(test) != 1)}, 1 patient" in iwae and "under the minimum" in iwae
    assert 'class="greyed"' in headline and f"{metrics['nodule_error']['test']['rmse_inside_hu']:.3g} HU" in headline
    assert all(re.search(r"\d+ nodules?|labelled nodules", r) for r in rows), rows
    # one collapse measure, the same on the page and in metrics.json
    assert "Var_x(μ_d(x)) &gt; mean_x σ²_d(x)" in dom and "PCA-90%" in dom
    assert "The probe did not run: probe skipped" in dom  # two patients: a visible line, not a silent gap
    assert "PC1 not compared with size: no diameter column, or fewer than 3 nodules" in dom  # 2 nodules: no claim, said
    assert metrics["training"]["checks"] and ("healthy by all" in headline) == metrics["training"]["healthy"]


def test_a_history_whose_validation_worsened_after_its_best_epoch_is_not_called_healthy(small_run, tmp_path):
    """The run's own checkpoint and cohort re-evaluated with a constructed 20-epoch history: best at epoch 8, then
    validation worse by far more than the tolerance, and a KL spike at epoch 14."""
    epochs = np.arange(1, 21)
    train_loss = 1000 * np.exp(-epochs / 4.0) + 100
    val_loss = np.where(epochs <= 8, train_loss + 5, train_loss[7] + 5 + 40 * (epochs - 8))
    kl = np.r_[np.linspace(1, 10, 5), np.linspace(9.5, 6, 15)]
    kl[13] = 40.0
    history = pd.DataFrame({"epoch": epochs, "train_reconstruction": train_loss, "train_kl": kl, "val_reconstruction": val_loss,
                            "val_kl": kl, "val_total": val_loss + kl, "epoch_seconds": 1.0})
    history.to_csv(tmp_path / "history.csv", index=False)
    config = small_run.parents[1] / "config.yaml"
    out = tmp_path / "evaluate"
    result = subprocess.run([sys.executable, str(REPO / "pipelines" / "evaluate.py"), "--checkpoint",
                             str(small_run / "train" / "checkpoints" / "best.pt"), "--embeddings", str(small_run / "embed" / "embeddings.parquet"),
                             "--history", str(tmp_path / "history.csv"), "--manifest", str(small_run / "extract" / "manifest.parquet"),
                             "--out-dir", str(out), "--config", str(config)], capture_output=True, text=True, timeout=600, cwd=REPO)
    assert result.returncode == 0, result.stderr[-3000:]
    dom = _dom(out / "report.html", tmp_path)
    headline = _headline(dom)
    assert "healthy by all" not in headline.lower() and "Training is not healthy" in headline
    assert "validation worsened after epoch 8" in headline and "KL spike" in headline
    training = dom[dom.index('<section id="training"'):]
    assert "FAILED" in training and "healthy run" not in training.replace("Not a healthy run", "")
    assert "log p(x|z), the negative of metrics.csv" in training  # the curves' sign labelled


@pytest.fixture(scope="module")
def checkpoint_run(small_run, luna_like, tmp_path_factory) -> Path:  # noqa: F811
    """A LUNA16-like coordinates cohort (sphere masks, as the small run's two-channel model needs a mask) embedded and
    evaluated with the small run's best.pt: nothing trained."""
    table, images_root = luna_like
    work = tmp_path_factory.mktemp("checkpoint-run")
    config = {"results_dir": str(work / "results"), "extract": {"sphere_mask": True}, "evaluate": TINY_EVALUATE,
              "embed": {"checkpoint": str(small_run / "train" / "checkpoints" / "best.pt")}}
    (work / "reuse.yaml").write_text(yaml.safe_dump(config))
    _snakemake(work, work / "results" / "coordinates" / "evaluate" / "report.html", REPO / "configs" / "coordinates.yaml",
               work / "reuse.yaml", extra=("--config", f"candidates={table}", f"images_root={images_root}"))
    return work / "results" / "coordinates"


def test_a_checkpoint_run_names_its_checkpoint_and_shows_no_training_of_its_own(checkpoint_run, small_run, tmp_path):
    dom = _dom(checkpoint_run / "evaluate" / "report.html", tmp_path)
    headline = _headline(dom)
    metrics = json.loads((checkpoint_run / "evaluate" / "metrics.json").read_text())
    assert not (checkpoint_run / "train").exists() and '<section id="training"' not in dom
    epoch = metrics["checkpoint"]["epoch"]
    assert f"best.pt, epoch {epoch}: trained elsewhere (embed.checkpoint); this run trained nothing; trained on LIDC-IDRI DICOM" in headline
    assert "run 'small'" in headline and "Training:</b> not part of this run" in headline
    manifest = pd.read_parquet(checkpoint_run / "extract" / "manifest.parquet")
    assert f"<td>{NOT_SPLIT}</td><td>{len(manifest)}</td>" in headline and "<td>train</td>" not in headline
    assert list(metrics["splits"]) == ["cohort"]
    iwae = next(r for r in _key_rows(headline) if r.startswith("IWAE log-likelihood, cohort"))
    assert f"{NOT_SPLIT}: {len(manifest)} nodules, {manifest['patient_id'].nunique()} patients" in iwae
    # the masks named for what they are: spheres of the table's diameter_mm, not a readers' consensus
    reconstruction = dom[dom.index('<section id="reconstruction"'): dom.index('<section id="latent-space"')]
    assert "sphere mask" in reconstruction and "consensus" not in reconstruction
    assert "consensus (50 %) masks)" in headline  # while the checkpoint itself trained on the readers' consensus
    # the size-only control beside the neighbour claim (the table's diameter_mm)
    retrieval = dom[dom.index('<section id="retrieval"'): dom.index('<section id="generative"')]
    if "label_agreement" in metrics["retrieval"]:
        assert "by diameter alone (diameter_mm" in retrieval
    assert "pc1_diameter_r" in metrics["collapse"]["pc1"] and "correlates r = " in dom
    validation = metrics["checkpoint"]["validation"]
    assert validation is None or validation["epoch"] == epoch


@pytest.fixture(scope="module")
def mnist_run(mnist_dir, tmp_path_factory) -> Path:
    """The MNIST config on 600 real digits, 2 epochs, no size table."""
    work = tmp_path_factory.mktemp("mnist-run")
    config = {"results_dir": str(work / "results"), "mnist": {"data_dir": str(mnist_dir), "train_limit": 500, "test_limit": 100,
                                                              "table": {"enabled": False}},
              "train": {"epochs": 2}, "evaluate": {"iwae_samples": 4, "projector": False, "probe": {"bootstrap_samples": 10}}}
    (work / "mnist.yaml").write_text(yaml.safe_dump(config))
    _snakemake(work, work / "results" / "mnist" / "evaluate" / "report.html", REPO / "configs" / "mnist.yaml", work / "mnist.yaml")
    return work / "results" / "mnist"


def test_the_mnist_report_speaks_of_digits(mnist_run, tmp_path):
    dom = _dom(mnist_run / "evaluate" / "report.html", tmp_path)
    text = re.sub(r"<[^>]+>", " ", dom[: dom.index('id="all-numbers"')])
    for word in ("nodule", "patient", "axial", "coronal", "sagittal", "consensus", "mask channel", "HU"):
        assert word not in text, (word, text[max(0, text.find(word) - 200): text.find(word) + 100])
    assert "digits" in text and ">table<" not in dom and ", )" not in text
    assert "macro-averaged" in dom  # ten classes: the AUC's averaging said
    assert "Healthy" not in text.replace("Not a healthy run", "") or "healthy by all" in text
    iwae = next(r for r in _key_rows(_headline(dom)) if r.startswith("IWAE log-likelihood, test"))
    assert "test split: 100 digits" in iwae
