"""The whole workflow on the coordinates route (tiny model), and embedding that cohort with a model
trained on the phantom default through `embed.checkpoint`, which refuses a cohort cut at another size."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk
import torch
import yaml

from lidcvae.embed import EmbedConfig, embed_manifest
from lidcvae.extract.coordinates import extract_coordinates_cohort
from lidcvae.extract.settings import ExtractSettings
from lidcvae.train.checkpoint import CheckpointMismatch

REPO = Path(__file__).resolve().parents[1]
# No consensus masks on this route (sphere_mask off): the model a coordinates user trains, and the phantom
# model that embeds their cohort, go without the mask channel, see the whole patch and weight the error by a
# centred Gaussian.
TINY_MODEL = {"name": "conv_vae3d", "input_size": 16, "latent_size": 8, "channels": [4, 8], "strides": [2, 2],
              "mask_channel": False, "mask_pooling": {"enabled": False}, "histogram_view": {"enabled": False}, "reconstruction_weight": {"kind": "gaussian"}, "context": {"kind": "full"}}
TINY_TRAIN = {"epochs": 2, "batch_size": 2, "threads": 1, "progress": False}
TINY_EVALUATE = {"iwae_samples": 4, "probe": {"bootstrap_samples": 10}}
SERIES = [f"1.2.826.0.1.3680043.8.498.{i}" for i in range(1, 5)]


def _snakemake(*args: str, workdir: Path, timeout: int = 900) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "snakefile"), "--directory", str(workdir), *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, cwd=REPO)


def _write_volume(path: Path, ball_mm: np.ndarray, seed: int) -> None:
    """80 mm of noisy lung (LPS, identity direction) with a 12 mm soft-tissue ball at ``ball_mm``."""
    spacing, size = np.array([0.8, 0.8, 2.5]), np.array([100, 100, 32])
    origin = -spacing * size / 2
    axes = [origin[a] + np.arange(size[a]) * spacing[a] for a in range(3)]
    zz, yy, xx = np.meshgrid(axes[2], axes[1], axes[0], indexing="ij")
    ball = (xx - ball_mm[0]) ** 2 + (yy - ball_mm[1]) ** 2 + (zz - ball_mm[2]) ** 2 <= 6.0**2
    hu = np.where(ball, 40, -850) + np.random.default_rng(seed).normal(0, 20, ball.shape)
    image = sitk.GetImageFromArray(hu.astype(np.int16))
    image.SetOrigin(origin.tolist())
    image.SetSpacing(spacing.tolist())
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(image, str(path))


@pytest.fixture(scope="module")
def luna_like(tmp_path_factory) -> tuple[Path, Path]:
    """LUNA16's layout in miniature: subset folders of <seriesuid>.mhd/.raw and an annotations.csv
    (two nodules per series, one row of an unknown series)."""
    root = tmp_path_factory.mktemp("luna")
    rows = []
    for i, uid in enumerate(SERIES):
        balls = [np.array([-10.0 + i, 5.0, 0.0]), np.array([12.0, -8.0 + i, 10.0])]
        _write_volume(root / "LUNA16" / f"subset{i % 2}" / f"{uid}.mhd", balls[0], seed=i)
        rows += [(uid, *ball, 12.0) for ball in balls[:1]] + [(uid, *balls[1], 6.0)]
    rows.append(("1.2.3.404", 0.0, 0.0, 0.0, 5.0))
    table = pd.DataFrame(rows, columns=["seriesuid", "coordX", "coordY", "coordZ", "diameter_mm"])
    table.to_csv(root / "annotations.csv", index=False)
    return root / "annotations.csv", root / "LUNA16"


def _config(path: Path, **config) -> Path:
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.mark.slow
def test_coordinates_route_runs_every_stage_and_embeds_with_a_phantom_checkpoint(luna_like, tmp_path):
    table, images_root = luna_like
    results = tmp_path / "results"
    common = {"results_dir": str(results), "model": TINY_MODEL, "train": TINY_TRAIN, "evaluate": TINY_EVALUATE}

    # 1. The README's command, with the coordinates config and the table / root given on the command line.
    config = _config(tmp_path / "coordinates.yaml", **common)
    run = _snakemake("--cores", "2", "--configfile", str(REPO / "configs" / "coordinates.yaml"), str(config), "--config",
                     f"candidates={table}", f"images_root={images_root}", workdir=tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    out = results / "coordinates"
    manifest = pd.read_parquet(out / "extract" / "manifest.parquet")
    failures = pd.read_parquet(out / "extract" / "failures.parquet")
    assert len(manifest) == 8 and set(manifest["patient_id"]) == set(SERIES)
    assert list(failures["nodule_index"]) == [9] and "1.2.3.404 not found" in failures["reason"][0]
    assert set(manifest["split"]) == {"train", "val", "test"}
    embeddings = pd.read_parquet(out / "embed" / "embeddings.parquet")
    assert list(embeddings["nodule_id"]) == list(manifest["nodule_id"])
    assert embeddings["diameter_mm"].tolist() == manifest["diameter_mm"].tolist()  # the table's columns carried
    assert (out / "train" / "checkpoints" / "best.pt").is_file()
    assert '<section id="reconstruction">' in (out / "evaluate" / "report.html").read_text()

    # 2. A tiny model trained on the phantom default (one scan).
    phantom = _config(tmp_path / "phantom.yaml", **common, phantom={"n_scans": 1, "workers": 1})
    trained = _snakemake(str(results / "phantom" / "train" / "model.pt"), "--cores", "2", "--configfile", str(phantom),
                         workdir=tmp_path)
    best = results / "phantom" / "train" / "checkpoints" / "best.pt"  # as a user would name it
    assert trained.returncode == 0, trained.stderr[-3000:]
    record = torch.load(best, weights_only=True)["input"]
    assert (record["patch_size"], record["spacing_mm"], record["hu_window"], record["mask_kind"]) == (64, 1.0, [-1000.0, 400.0], "consensus")

    # 3. The same cohort (its extraction kept) embedded and evaluated with it: nothing is trained.
    own_best = out / "train" / "checkpoints" / "best.pt"
    trained_at = own_best.stat().st_mtime_ns
    reuse = _config(tmp_path / "reuse.yaml", **common, embed={"checkpoint": str(best)})
    embedded = _snakemake("--cores", "2", "--configfile", str(REPO / "configs" / "coordinates.yaml"), str(reuse), "--config",
                          f"candidates={table}", f"images_root={images_root}", workdir=tmp_path)
    assert embedded.returncode == 0, embedded.stderr[-3000:]
    jobs = embedded.stdout + embedded.stderr
    assert "rule train:" not in jobs and "rule extract_scan:" not in jobs
    assert own_best.stat().st_mtime_ns == trained_at
    reused = pd.read_parquet(out / "embed" / "embeddings.parquet")
    assert list(reused["nodule_id"]) == list(manifest["nodule_id"])
    # The phantom model's own encoder, not this cohort's: same nodules, other codes.
    assert not np.allclose(reused[["z000", "z001"]].to_numpy(), embeddings[["z000", "z001"]].to_numpy())
    assert '<section id="reconstruction">' in (out / "evaluate" / "report.html").read_text()

    # 4. A cohort cut at 48³ does not fit the 64³ model: refused, naming what differs.
    extract_coordinates_cohort(table, images_root, tmp_path / "cut48", ExtractSettings.from_mapping({"patch_size": 48}), progress=False)
    with pytest.raises(CheckpointMismatch, match=r"patch_size: checkpoint 64 voxels, cohort \[48\]"):
        embed_manifest(best, tmp_path / "cut48" / "manifest.parquet", tmp_path / "cut48" / "embeddings.parquet",
                       EmbedConfig.from_mapping({}))
    assert not (tmp_path / "cut48" / "embeddings.parquet").exists()
