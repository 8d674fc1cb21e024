"""The train script as a process: SIGKILL mid-run then --resume, and DDP with 2 gloo processes on CPU."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml
from test_train_data import make_tiny_config, sample_manifest  # noqa: F401  (fixture)

from lidcvae.run_config import RunConfig
from lidcvae.train import read_checkpoint

REPO_ROOT = Path(__file__).resolve().parents[1]
SCRIPT = REPO_ROOT / "pipelines" / "train_vae.py"


def _write_config(config: RunConfig, path: Path) -> Path:
    path.write_text(yaml.safe_dump(config.to_dict()))
    return path


@pytest.mark.slow
def test_sigkill_mid_epoch_then_resume_finishes(sample_manifest: Path, tmp_path: Path) -> None:
    epochs = 40
    config_path = _write_config(make_tiny_config(epochs=epochs, batch_size=1), tmp_path / "config.yaml")
    run_dir = tmp_path / "run"
    command = [sys.executable, str(SCRIPT), "--config", str(config_path), "--run-dir", str(run_dir),
               "--manifest", str(sample_manifest)]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    last = run_dir / "checkpoints" / "last.pt"
    deadline = time.monotonic() + 120
    while not last.is_file() and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.05)
    time.sleep(0.5)  # into a later epoch: six steps of one patch each, checkpoints every few tenths of a second
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    killed_at = read_checkpoint(last)["epoch"]  # whole and loadable, whenever the kill landed
    assert 1 <= killed_at < epochs

    finished = subprocess.run([*command, "--resume"], capture_output=True, text=True, timeout=300)
    assert finished.returncode == 0, finished.stderr[-2000:]
    assert f"resumed from epoch {killed_at}" in finished.stderr
    assert read_checkpoint(last)["epoch"] == epochs
    assert pd.read_csv(run_dir / "metrics.csv")["epoch"].tolist() == list(range(1, epochs + 1))
    assert not list((run_dir / "checkpoints").glob(".tmp-*"))


@pytest.mark.slow
def test_torchrun_two_cpu_processes_train_with_ddp(sample_manifest: Path, tmp_path: Path) -> None:
    """The default model's options at a tiny size (mask channel, mask pooling, the decoded histogram, whose
    linear decoder runs outside DDP's forward, so DDP must not count it unused): two ranks train it."""
    tiny = make_tiny_config(epochs=2, batch_size=1).to_dict()
    tiny["model"] = {"name": "conv_vae3d", "input_size": 16, "latent_size": 8, "channels": [4, 8], "strides": [2, 2]}
    config_path = _write_config(RunConfig.from_mapping(tiny), tmp_path / "config.yaml")
    run_dir = tmp_path / "run"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(SCRIPT),
               "--config", str(config_path), "--run-dir", str(run_dir), "--manifest", str(sample_manifest)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    finished = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)
    assert finished.returncode == 0, finished.stderr[-3000:]
    assert "device cpu x2" in finished.stderr
    assert "aux is −1000·log p(h|z) of the decoded density histogram" in finished.stderr
    metrics = pd.read_csv(run_dir / "metrics.csv")
    # total = rec + β·kl + aux, the histogram's term in a column of its own (validation is at the target β)
    beta = RunConfig.from_mapping(tiny).train.beta
    assert (metrics["val_auxiliary"].abs() > 1.0).all()
    assert metrics["val_total"].tolist() == pytest.approx(
        (metrics["val_reconstruction"] + beta * metrics["val_kl"] + metrics["val_auxiliary"]).tolist(), rel=1e-4)
    assert metrics["step"].tolist() == [3, 6]  # 6 train patches shared by 2 ranks, batch 1 each
    checkpoint = read_checkpoint(run_dir / "checkpoints" / "last.pt")
    assert len(checkpoint["rng"]) == 2  # each rank's random state, for resume
    assert not torch.equal(checkpoint["rng"][0]["torch"], checkpoint["rng"][1]["torch"])
    assert checkpoint["config"]["model"]["histogram_view"]["bins"] == 16
    assert "histogram_view.decoder.weight" in checkpoint["model"]
