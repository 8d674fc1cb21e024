"""The stage scripts as a user runs them from a shell: flags reach the library, output lands."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parents[1]


def _script(name: str, *args: str) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, str(REPO / "pipelines" / name), *args], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    return result


def test_extract_patches_restricts_to_the_patients_named(lidc_sample, tmp_path):
    out = tmp_path / "out"
    result = _script("extract_patches.py", "--dicom-root", str(lidc_sample), "--out", str(out),
                     "--patients", "LIDC-IDRI-0002", "--workers", "2")
    manifest = pd.read_parquet(out / "manifest.parquet")
    assert list(manifest["patient_id"]) == ["LIDC-IDRI-0002"]
    assert (out / manifest["image_path"].iloc[0]).is_file() and (out / manifest["mask_path"].iloc[0]).is_file()
    assert not (out / "patches" / "LIDC-IDRI-0001").exists()
    assert result.stdout.startswith("1 nodule(s)")


def test_make_phantom_writes_the_smallest_scan_whole(tmp_path):
    out, record = tmp_path / "dicom", tmp_path / "cohort.json"
    _script("make_phantom.py", "--out", str(out), "--n-scans", "1", "--seed", "3", "--record", str(record))
    written = json.loads(record.read_text())
    assert written["config"]["seed"] == 3 and written["config"]["n_scans"] == 1
    (series,) = written["series"]
    assert series["patient_id"] == "LIDC-IDRI-0957" and series["slices"] == 65
    assert len(list((out / "LIDC-IDRI-0957").rglob("*.dcm"))) == 65


# --- issue 30: one entry path, one line per anticipated error ---------------------------------------------------

import errno  # noqa: E402
import math  # noqa: E402
import os  # noqa: E402
import socket  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import yaml  # noqa: E402

SERIES = [f"1.2.826.0.1.3680043.8.498.{i}" for i in range(1, 5)]
TINY_MODEL = {"name": "conv_vae3d", "input_size": 16, "latent_size": 8, "channels": [4, 8], "strides": [2, 2],
              "mask_channel": False, "mask_pooling": {"enabled": False}, "histogram_view": {"enabled": False},
              "reconstruction_weight": {"kind": "uniform"}, "context": {"kind": "full"}}


def _run(name: str, *args: str, prelude: str = "") -> subprocess.CompletedProcess:
    """A script as a shell runs it; ``prelude`` is Python run first in the same process (to simulate a fault)."""
    script = str(REPO / "pipelines" / name)
    code = (f"import runpy, sys\n{prelude}\nsys.argv = {[script, *args]!r}\nsys.path.insert(0, {str(REPO / 'pipelines')!r})\n"
            f"runpy.run_path({script!r}, run_name='__main__')")
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=REPO)


def _lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


def write_luna_like(root: Path, series: list[str] = SERIES) -> tuple[Path, Path]:
    """A coordinates table and one small <seriesuid>.mhd per series (a soft-tissue ball in noisy lung)."""
    import SimpleITK as sitk

    rows = []
    for i, uid in enumerate(series):
        spacing, size, ball_mm = np.array([0.8, 0.8, 2.5]), np.array([80, 80, 24]), np.array([-5.0 + i, 4.0, 0.0])
        origin = -spacing * size / 2
        axes = [origin[a] + np.arange(size[a]) * spacing[a] for a in range(3)]
        zz, yy, xx = np.meshgrid(axes[2], axes[1], axes[0], indexing="ij")
        ball = (xx - ball_mm[0]) ** 2 + (yy - ball_mm[1]) ** 2 + (zz - ball_mm[2]) ** 2 <= 36.0
        hu = np.where(ball, 40, -850) + np.random.default_rng(i).normal(0, 20, ball.shape)
        image = sitk.GetImageFromArray(hu.astype(np.int16))
        image.SetOrigin(origin.tolist())
        image.SetSpacing(spacing.tolist())
        (root / "images").mkdir(parents=True, exist_ok=True)
        sitk.WriteImage(image, str(root / "images" / f"{uid}.mhd"))
        rows += [(uid, *ball_mm, 12.0), (uid, *(ball_mm + [8.0, 0.0, 0.0]), 6.0)]
    table = root / "annotations.csv"
    pd.DataFrame(rows, columns=["seriesuid", "coordX", "coordY", "coordZ", "diameter_mm"]).to_csv(table, index=False)
    return table, root / "images"


@pytest.fixture(scope="module")
def tiny_cohort(tmp_path_factory) -> Path:
    """8 nodules of 4 series, extracted (coordinates route, 32³ patches): a manifest to train on in seconds."""
    from lidcvae.extract.coordinates import extract_coordinates_cohort
    from lidcvae.extract.settings import ExtractSettings

    root = tmp_path_factory.mktemp("tiny-cohort")
    table, images = write_luna_like(root)
    settings = ExtractSettings.from_mapping({"patch_size": 32, "split": {"train": 0.5, "val": 0.25}})
    manifest, _ = extract_coordinates_cohort(table, images, root / "extract", settings)
    assert len(manifest) == 8
    return root / "extract" / "manifest.parquet"


def _tiny_config(path: Path, **train) -> Path:
    train = {"epochs": 1, "batch_size": 2, "device": "cpu", "threads": 1, "progress": False, **train}
    path.write_text(yaml.safe_dump({"dataset": "lidc", "model": TINY_MODEL, "train": train}))
    return path


def test_a_known_error_is_one_line_on_stderr_and_in_the_log(tmp_path):
    table, log = tmp_path / "annotations.csv", tmp_path / "extract.log"
    table.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\xff\xfe")  # not a table at all
    result = _run("extract_coordinates.py", "--candidates", str(table), "--images-root", str(tmp_path),
                  "--out", str(tmp_path / "out"), "--log", str(log))
    assert result.returncode == 2
    (line,) = _lines(result.stderr)
    assert line.startswith(f"error: {table}: not a readable CSV or Parquet table")
    (logged,) = _lines(log.read_text())
    assert logged.endswith(f"ERROR lidcvae: {line.removeprefix('error: ')}")


def test_a_full_disk_with_an_unwritable_log_is_one_line_on_stderr(tmp_path):
    """The log on the full disk too (/dev/full): no '--- Logging error ---', no traceback, one line."""
    table, images = write_luna_like(tmp_path / "data", SERIES[:1])
    full_disk = ("import errno, os\nreal = os.replace\n"
                 "def replace(src, dst, *a, **k):\n"
                 "    if str(dst).endswith('manifest.parquet'):\n"
                 "        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(dst))\n"
                 "    return real(src, dst, *a, **k)\nos.replace = replace")
    result = _run("extract_coordinates.py", "--candidates", str(table), "--images-root", str(images),
                  "--out", str(tmp_path / "out"), "--log", "/dev/full", prelude=full_disk)
    assert result.returncode == 2
    (line,) = [line for line in _lines(result.stderr) if not line.startswith(("index", "extract"))]  # bars aside
    assert line.startswith("error: [Errno 28] disk full writing ") and "manifest.parquet" in line
    assert "the log /dev/full could not be written" in line
    assert "Traceback" not in result.stderr and "Logging error" not in result.stderr


def test_an_unexpected_error_keeps_its_traceback_in_the_log_and_says_where(tmp_path):
    log = tmp_path / "gather.log"
    part = tmp_path / "a.nodules.parquet"
    pd.DataFrame({"x": [1]}).to_parquet(part)
    result = _run("extract_gather.py", "--nodules", str(part), "--failures", "--unreadable", str(part),
                  "--manifest", str(tmp_path / "m.parquet"), "--failures-out", str(tmp_path / "f.parquet"), "--log", str(log))
    assert result.returncode == 1
    (line,) = _lines(result.stderr)
    assert line == f"error: unexpected ValueError: 1 nodule part tables but 0 failure part tables; the traceback is in {log}"
    assert "Traceback (most recent call last)" in log.read_text()


def test_set_merges_a_section_as_snakemakes_config_does(tmp_path):
    from snakemake.utils import update_config

    from lidcvae.workflow.cli import config_from_args

    config_file = tmp_path / "run.yaml"
    config_file.write_text("train:\n  epochs: 2\n  grad_clip: {mode: norm, max: 5.0}\n")
    run = config_from_args(None, config_file, ["train={lr: 1e-3, grad_clip: {max: 2.0}}"])
    assert (run.train.epochs, run.train.lr, run.train.grad_clip.mode, run.train.grad_clip.max) == (2, 1e-3, "norm", 2.0)
    snakemake_way = yaml.safe_load(config_file.read_text())
    update_config(snakemake_way, {"train": {"lr": 1e-3, "grad_clip": {"max": 2.0}}})
    assert {k: v for k, v in run.train.to_dict().items() if k in snakemake_way["train"]} == \
           {**snakemake_way["train"], "grad_clip": {**run.train.grad_clip.to_dict(), **snakemake_way["train"]["grad_clip"]}}


def test_a_bad_set_key_names_the_set_argument_not_the_file(tmp_path, capsys):
    from lidcvae.workflow.cli import config_from_args

    config_file = tmp_path / "run.yaml"
    config_file.write_text("train:\n  epochs: 2\n")
    with pytest.raises(SystemExit) as stopped:
        config_from_args(None, config_file, ["train.epochs=3", "train={epohcs: 3}"])
    assert stopped.value.code == 2
    (line,) = _lines(capsys.readouterr().err)
    assert line.startswith("error: --set 'train={epohcs: 3}': key 'train.epohcs': unknown key (known: ")
    assert str(config_file) not in line


def test_a_read_only_file_system_is_one_line_naming_the_path(tmp_path, capsys):
    from lidcvae.workflow.cli import run_rule

    def write_checkpoint():
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), "/results/run/checkpoints")

    with pytest.raises(SystemExit) as stopped:
        run_rule(write_checkpoint)
    assert stopped.value.code == 2
    (line,) = _lines(capsys.readouterr().err)
    assert line.startswith("error: [Errno 30] read-only file system writing /results/run/checkpoints")


@pytest.mark.slow
def test_training_into_a_read_only_file_system_is_one_line(tiny_cohort, tmp_path):
    """A real read-only mount where this machine allows one (root in CI's container), else skipped."""
    mount = tmp_path / "ro"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(mount)], capture_output=True).returncode:
        pytest.skip("cannot mount a read-only tmpfs here")
    try:
        result = _run("train_vae.py", "--config", str(_tiny_config(tmp_path / "c.yaml")), "--manifest", str(tiny_cohort),
                      "--run-dir", str(mount / "run"))
    finally:
        subprocess.run(["umount", str(mount)], check=True)
    assert result.returncode == 2
    (line,) = _lines(result.stderr)
    assert line.startswith(f"error: [Errno 30] read-only file system writing {mount / 'run'}")


def test_a_second_training_on_one_run_dir_refuses_naming_the_holder(tiny_cohort, tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / ".lidcvae.lock").write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                                                       "what": "training", "since": "2026-01-01 10:00:00"}))
    result = _run("train_vae.py", "--config", str(_tiny_config(tmp_path / "c.yaml")), "--manifest", str(tiny_cohort),
                  "--run-dir", str(run_dir))
    assert result.returncode == 2
    (line,) = _lines(result.stderr)
    assert line == (f"error: {run_dir} is in use by PID {os.getpid()} on {socket.gethostname()} (training, since "
                    f"2026-01-01 10:00:00); wait for it to finish, or delete {run_dir / '.lidcvae.lock'} if that run is gone")
    assert not (run_dir / "checkpoints").exists()


@pytest.mark.slow
def test_a_stale_lock_is_taken_over_and_a_first_run_says_so_at_info(tiny_cohort, tmp_path):
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    run_dir, log = tmp_path / "run", tmp_path / "train.log"
    run_dir.mkdir()
    (run_dir / ".lidcvae.lock").write_text(json.dumps({"pid": gone.pid, "host": socket.gethostname(), "what": "training"}))
    result = _run("train_vae.py", "--config", str(_tiny_config(tmp_path / "c.yaml")), "--manifest", str(tiny_cohort),
                  "--run-dir", str(run_dir), "--resume-if-same", "--log", str(log))
    assert result.returncode == 0, result.stderr[-2000:]
    text = log.read_text()
    assert f"WARNING lidcvae.lock: took over the lock {run_dir.resolve() / '.lidcvae.lock'} left by PID {gone.pid}" in text
    assert "INFO lidcvae.train.loop: starting a new run (no checkpoint at" in text and "--resume" not in text
    assert (run_dir / "checkpoints" / "best.pt").is_file() and not (run_dir / ".lidcvae.lock").exists()


def test_a_nan_at_the_first_step_says_no_checkpoint_exists_yet(tiny_cohort, tmp_path, monkeypatch):
    import math

    import torch

    from lidcvae.models.conv3d import ConvVAE3d
    from lidcvae.run_config import load_config
    from lidcvae.train import NonFiniteError, train

    monkeypatch.setattr(ConvVAE3d, "log_likelihood", lambda self, x, decoded: torch.full((x.shape[0],), math.nan) + 0 * decoded.sum())
    with pytest.raises(NonFiniteError) as stopped:
        train(load_config(_tiny_config(tmp_path / "c.yaml")), tmp_path / "run", manifest=tiny_cohort)
    assert str(stopped.value).startswith("step 0: reconstruction term is nan; stopping without taking this step. "
                                         "No checkpoint was written yet")
    assert "is kept" not in str(stopped.value)


def test_an_overflowing_gradient_norm_names_the_largest_gradient():
    import torch

    from lidcvae.train.step import NonFiniteError, StepValues, check_finite

    model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Linear(2, 2))
    for parameter in model.parameters():
        parameter.grad = torch.ones_like(parameter)
    model[1].weight.grad.fill_(3e38)  # finite, but the squares overflow float32
    with pytest.raises(NonFiniteError, match=r"step 4: gradient norm is inf \(every gradient is finite, their norm "
                                             r"overflowed: the largest is in the grad of 1\.weight, \|g\| up to 3e\+38\)"):
        check_finite(StepValues(1.0, 1.0, 0.0, 2.0, math.inf), 4, model)
