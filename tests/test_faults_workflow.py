"""Nothing lost under Snakemake: a bad DICOM root is one line in the rule log; a killed training job keeps
its checkpoints, the rule resumes from them, and a changed config reruns what it changes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from lidcvae.train import read_checkpoint

REPO = Path(__file__).resolve().parents[1]


def _snakemake(workdir: Path, *args: str, **popen) -> subprocess.CompletedProcess | subprocess.Popen:
    command = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "snakefile"), "--directory", str(workdir), *args]
    if popen:
        return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=REPO, **popen)
    return subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=REPO)


def _workflow_config(path: Path, results: Path, dicom_root: Path, **sections) -> Path:
    config = {"name": "faults", "results_dir": str(results), "dicom_root": str(dicom_root),
              "model": {"name": "conv_vae3d", "input_size": 16, "latent_size": 8, "channels": [4, 8], "strides": [2, 2],
                        "mask_channel": False, "mask_pooling": {"enabled": False}, "histogram_view": {"enabled": False}, "reconstruction_weight": {"kind": "uniform"}},
              "train": {"epochs": 40, "batch_size": 1, "threads": 1, "progress": False}, **sections}
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.mark.slow
def test_missing_dicom_root_under_snakemake_is_one_line_in_the_rule_log(tmp_path):
    config = _workflow_config(tmp_path / "c.yaml", tmp_path / "results", tmp_path / "no-such-download")
    result = _snakemake(tmp_path, str(tmp_path / "results/faults/extract/dicom_index.parquet"), "--cores", "1", "--configfile", str(config))
    assert result.returncode != 0
    log = (tmp_path / "results" / "faults" / "logs" / "extract_index.log").read_text().strip().splitlines()
    assert len(log) == 1 and log[0].endswith(f"ERROR lidcvae: DICOM root does not exist or is not a folder: {tmp_path / 'no-such-download'}")


@pytest.mark.slow
def test_a_killed_training_job_keeps_its_checkpoints_and_the_rule_resumes_then_config_changes_rerun(lidc_sample, tmp_path):
    import signal
    import time

    results = tmp_path / "results"
    config = _workflow_config(tmp_path / "c.yaml", results, lidc_sample)
    run_dir = results / "faults" / "train"
    target = str(run_dir / "model.pt")
    process = _snakemake(tmp_path, target, "--cores", "1", "--configfile", str(config), start_new_session=True)
    last, deadline = run_dir / "checkpoints" / "last.pt", time.monotonic() + 400
    while process.poll() is None and time.monotonic() < deadline:
        if last.is_file() and read_checkpoint(last)["epoch"] >= 2:
            break
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGTERM)  # what scancel / a closed terminal sends the job and Snakemake
    process.wait(timeout=60)
    killed_at = read_checkpoint(last)["epoch"]
    assert 2 <= killed_at < 40, "the kill should land mid-run"
    assert (run_dir / "checkpoints" / "best.pt").is_file() and (run_dir / "metrics.csv").is_file()

    rerun = _snakemake(tmp_path, target, "--cores", "1", "--configfile", str(config))
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert f"resumed from epoch {killed_at}" in (results / "faults" / "logs" / "train.log").read_text()
    assert read_checkpoint(last)["epoch"] == 40
    assert pd.read_csv(run_dir / "metrics.csv")["epoch"].tolist() == list(range(1, 41))
    assert Path(target).samefile(run_dir / "checkpoints" / "best.pt")

    # A changed setting that alters a stage's output reruns that stage (and what follows), nothing else.
    for section, jobs in (({"train": {"epochs": 41, "batch_size": 1, "threads": 1, "progress": False}}, {"train"}),
                          ({"extract": {"patch_size": 32}}, {"extract_scan"})):
        changed = _workflow_config(tmp_path / "changed.yaml", results, lidc_sample, **section)
        plan = _snakemake(tmp_path, target, "-n", "--cores", "1", "--configfile", str(changed))
        reasons = plan.stdout.split("params have changed since last execution:")[1].split("\n    ")[1].split("Some jobs")[0]
        assert {job.strip() for job in reasons.split(",") if job.strip()} == jobs, plan.stdout[-2000:]
    same = _snakemake(tmp_path, target, "-n", "--cores", "1", "--configfile", str(config))
    assert "Nothing to be done" in same.stdout + same.stderr
