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


# --- issue 30: every anticipated fault under Snakemake is one line in its rule log, never a traceback -------------


def _coordinates_config(path: Path, results: Path, table: Path, images: Path, **sections) -> Path:
    from test_scripts import TINY_MODEL

    config = {"name": "faults", "results_dir": str(results), "candidates": str(table), "images_root": str(images),
              "model": TINY_MODEL, "train": {"epochs": 1, "batch_size": 2, "threads": 1, "progress": False}, **sections}
    path.write_text(yaml.safe_dump(config))
    return path


def _one_error_line(result: subprocess.CompletedProcess, log: Path) -> str:
    """The one ``error:`` line on stderr, the same text as the one line of the rule's log; the job's exit status 2."""
    assert result.returncode != 0 and "returned non-zero exit status 2." in result.stderr, result.stderr[-3000:]
    (line,) = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    (logged,) = log.read_text().strip().splitlines()
    assert logged.endswith(f"ERROR lidcvae: {line.removeprefix('error: ')}"), logged
    assert "Traceback" not in result.stderr
    return line.removeprefix("error: ")


@pytest.mark.slow
@pytest.mark.parametrize("content, reason", [
    (b"", "empty file; expected a header row"),
    (b"seriesuid,coordX,coordY,coordZ\n", "no rows below the header"),
    (b"seriesuid,coordX\n1.2.3,4\n", "missing column(s) coordY, coordZ"),
    (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\xff\xfe", "not a readable CSV or Parquet table"),
], ids=["empty", "header-only", "missing-column", "binary"])
def test_an_unusable_coordinates_table_under_snakemake_is_one_line_in_the_rule_log(tmp_path, content, reason):
    table = tmp_path / "annotations.csv"
    table.write_bytes(content)
    (tmp_path / "images").mkdir()
    config = _coordinates_config(tmp_path / "c.yaml", tmp_path / "results", table, tmp_path / "images")
    result = _snakemake(tmp_path, str(tmp_path / "results/faults/extract/image_index.parquet"), "--cores", "1",
                        "--configfile", str(config))
    message = _one_error_line(result, tmp_path / "results" / "faults" / "logs" / "extract_index.log")
    assert message.startswith(f"{table}: {reason}")


def test_a_dotted_top_level_key_is_one_line_showing_the_section_form(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({"results_dir": str(tmp_path / "results"), "train.epochs": 3}))
    result = _snakemake(tmp_path, "-n", "--cores", "1", "--configfile", str(config))
    assert result.returncode == 2
    (line,) = [line for line in result.stderr.splitlines() if line.strip()]
    assert line == (f"error: {config}: top-level key 'train.epochs': config keys are not dotted; give the section, "
                    "which is merged into the config key by key: --config \"train={epochs: 3}\"")


@pytest.mark.slow
def test_checkpoint_faults_and_a_held_lock_under_snakemake_are_one_line_each(tmp_path):
    """A corrupt embed.checkpoint, one trained on another patch size, and a second run on a results folder whose
    training is held: each one line in its rule log and on stderr; no rule log holds a traceback."""
    import json
    import socket

    from test_scripts import write_luna_like

    from lidcvae.run_config import load_config
    from lidcvae.train import train

    table, images = write_luna_like(tmp_path / "data")
    results = tmp_path / "results"
    logs = results / "faults" / "logs"
    config = _coordinates_config(tmp_path / "c.yaml", results, table, images,
                                 extract={"split": {"train": 0.5, "val": 0.25}})
    extracted = _snakemake(tmp_path, str(results / "faults/extract/manifest.parquet"), "--cores", "2", "--configfile", str(config))
    assert extracted.returncode == 0, extracted.stderr[-3000:]
    manifest = results / "faults" / "extract" / "manifest.parquet"

    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"PK\x03\x04 not really a zip")
    at_32 = tmp_path / "at32"  # the same cohort cut at 32 mm: a model of another patch size
    from lidcvae.extract.coordinates import extract_coordinates_cohort
    from lidcvae.extract.settings import ExtractSettings

    extract_coordinates_cohort(table, images, at_32, ExtractSettings.from_mapping(
        {"patch_size": 32, "split": {"train": 0.5, "val": 0.25}}))
    other = train(load_config(config, {"train.device": "cpu"}), tmp_path / "other-run", manifest=at_32 / "manifest.parquet")
    for checkpoint, reason in ((corrupt, f"{corrupt}: not a readable lidcvae checkpoint, truncated or corrupt"),
                               (other, "patch_size: checkpoint 32 voxels, cohort [64]")):
        embed_config = _coordinates_config(tmp_path / "e.yaml", results, table, images, extract={"split": {"train": 0.5, "val": 0.25}},
                                           embed={"checkpoint": str(checkpoint)})
        result = _snakemake(tmp_path, str(results / "faults/embed/embeddings.parquet"), "--cores", "1",
                            "--configfile", str(embed_config))
        assert reason in _one_error_line(result, logs / "embed.log")

    run_dir = results / "faults" / "train"
    run_dir.mkdir(parents=True)
    (run_dir / ".lidcvae.lock").write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                                                       "what": "training", "since": "2026-01-01 10:00:00"}))
    second = _snakemake(tmp_path / "elsewhere", str(run_dir / "model.pt"), "--cores", "1", "--configfile", str(config))
    assert second.returncode != 0 and "returned non-zero exit status 2." in second.stderr
    (line,) = [line for line in second.stderr.splitlines() if line.startswith("error: ")]
    assert line.startswith(f"error: {run_dir} is in use by PID {os.getpid()} on {socket.gethostname()} (training")
    assert not (run_dir / "checkpoints").exists()
    assert all("Traceback" not in log.read_text() for log in logs.glob("*.log")), {p.name: p.read_text() for p in logs.glob("*.log")}
