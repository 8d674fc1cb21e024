"""The Snakemake workflow as a whole: lint, the SLURM profile's plan, multi-process training via the rule."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml

REPO = Path(__file__).resolve().parents[1]
SLURM_PROFILE = REPO / "configs" / "profiles" / "slurm"


def _snakemake(*args: str, workdir: Path, timeout: int = 600) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "snakefile"), "--directory", str(workdir), *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, cwd=REPO)


def _write_config(path: Path, **config) -> Path:
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.mark.parametrize("configfile", ["configs/demo.yaml", "configs/mnist.yaml", "configs/mnist-table.yaml",
                                        "configs/lidc.yaml", "configs/coordinates.yaml"])
def test_lint_is_clean(configfile, tmp_path):
    result = _snakemake("--lint", "--configfile", str(REPO / configfile), workdir=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.fixture(scope="module")
def phantom_dicom_root(tmp_path_factory) -> Path:
    """Two phantom scans standing in for a LIDC-IDRI download."""
    from lidcvae.phantom import PhantomConfig, write_phantom_cohort

    root = tmp_path_factory.mktemp("fake-lidc") / "dicom"
    write_phantom_cohort(root, PhantomConfig.from_mapping({"n_scans": 2, "workers": 1}))
    return root


@pytest.mark.slow
def test_slurm_profile_plans_grouped_extraction_and_a_gpu_training_job(phantom_dicom_root, tmp_path):
    pytest.importorskip("snakemake_executor_plugin_slurm", reason="install the slurm extra: pip install -e '.[slurm]'")
    config = _write_config(tmp_path / "cluster.yaml", name="lidc", results_dir=str(tmp_path / "results"),
                           dicom_root=str(phantom_dicom_root), train={"gpus": 2, "threads": 8})
    index = tmp_path / "results" / "lidc" / "extract" / "dicom_index.parquet"
    # The index is a checkpoint: once it exists the plan holds one extraction job per scan.
    built = _snakemake(str(index), "--cores", "1", "--configfile", str(config), workdir=tmp_path)
    assert built.returncode == 0, built.stderr

    plan = _snakemake("--profile", str(SLURM_PROFILE), "--configfile", str(config), "--dry-run", workdir=tmp_path)

    assert plan.returncode == 0, plan.stderr
    text = plan.stdout + plan.stderr
    assert "Group job extract" in text
    assert text.count("rule extract_scan:") == 2
    train_block = text.split("rule train:")[1].split("rule ")[0]
    assert "gpu=2" in train_block and "cpus_per_task=8" in train_block and "mem_mb=64000" in train_block

    # The profile's one override for a small node: --cores caps every job's threads, CPUs and memory.
    small = _snakemake("--profile", str(SLURM_PROFILE), "--configfile", str(config), "--dry-run", "--cores", "2", workdir=tmp_path)
    assert small.returncode == 0, small.stderr
    train_block = (small.stdout + small.stderr).split("rule train:")[1].split("rule ")[0]
    assert "cpus_per_task=2" in train_block and "mem_mb=16000" in train_block


def test_slurm_profile_sizes_a_bundle_of_extraction_jobs_like_one_node_job():
    """The SLURM request of one bundle, by Snakemake's own group-sizing rule, from the profile's numbers."""
    from types import SimpleNamespace

    from snakemake.resources import GroupResources, Resources

    profile = yaml.safe_load((SLURM_PROFILE / "config.yaml").read_text())
    bundle = int(dict(item.split("=") for item in profile["group-components"])["extract"])
    threads = profile["set-threads"]["extract_scan"]
    assert profile["default-resources"]["cpus_per_task"] == "threads"  # a job's CPUs are its threads
    scan = {**profile["set-resources"]["extract_scan"], "_cores": threads, "cpus_per_task": threads}
    jobs = [SimpleNamespace(resources=dict(scan), pipe_group=None) for _ in range(bundle)]

    # As under the SLURM executor: only --cores constrains a group (no --resources given).
    limits = Resources.from_mapping({"_cores": profile["cores"]})
    request = GroupResources.basic_layered([jobs], limits, run_local=False)

    assert bundle == 50 and request["_cores"] == request["cpus_per_task"] == 8
    assert request["mem_mb"] == 8 * scan["mem_mb"]
    assert request["runtime"] == -(-bundle // 8) * scan["runtime"]  # 7 rounds of 8 scans
    # --cores 2 on a small node: 2 at a time, 2 CPUs and 2 x 3 GB, 25 rounds.
    small = GroupResources.basic_layered([jobs], Resources.from_mapping({"_cores": 2}), run_local=False)
    assert small["cpus_per_task"] == 2 and small["mem_mb"] == 2 * scan["mem_mb"] and small["runtime"] == 25 * scan["runtime"]


@pytest.mark.slow
def test_two_process_training_through_the_rule_writes_one_set_of_checkpoints_the_later_stages_read(lidc_sample, tmp_path):
    config = _write_config(
        tmp_path / "ddp.yaml", name="ddp", results_dir=str(tmp_path / "results"), dicom_root=str(lidc_sample),
        model={"name": "conv_vae3d", "input_size": 16, "latent_size": 8, "channels": [4, 8], "strides": [2, 2]},
        train={"epochs": 2, "batch_size": 1, "cpu_processes": 2, "threads": 1, "progress": False},
        evaluate={"iwae_samples": 4, "probe": {"bootstrap_samples": 10}},
    )
    run_dir = tmp_path / "results" / "ddp" / "train"
    result = _snakemake(str(run_dir / "model.pt"), "--cores", "2", "--configfile", str(config), workdir=tmp_path)

    assert result.returncode == 0, result.stderr[-3000:]
    log = (tmp_path / "results" / "ddp" / "logs" / "train.log.rank0").read_text()
    assert "x2" in log or "world size 2" in log.lower(), log[-2000:]
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == ["best.pt", "last.pt"]
    checkpoint = torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)
    assert checkpoint["epoch"] == 2
    assert (run_dir / "model.pt").samefile(run_dir / "checkpoints" / "best.pt")  # the rule's output: a hard link

    # A user embedding nodules with the trained model from the shell, and the workflow going on from it.
    manifest = tmp_path / "results" / "ddp" / "extract" / "manifest.parquet"
    embedded = tmp_path / "by_hand.parquet"
    script = subprocess.run([sys.executable, str(REPO / "pipelines" / "embed_latents.py"), "--checkpoint",
                             str(run_dir / "checkpoints" / "best.pt"), "--manifest", str(manifest), "--out", str(embedded)],
                            capture_output=True, text=True)
    assert script.returncode == 0, script.stderr[-3000:]
    table = pd.read_parquet(embedded)
    assert list(table["nodule_id"]) == list(pd.read_parquet(manifest)["nodule_id"])
    assert [c for c in table.columns if c.startswith("z")] == [f"z{i:03d}" for i in range(8)]
    report = tmp_path / "results" / "ddp" / "evaluate" / "report.html"
    rest = _snakemake(str(report), "--cores", "2", "--configfile", str(config), workdir=tmp_path)
    assert rest.returncode == 0, rest.stderr[-3000:]
    assert '<section id="reconstruction">' in report.read_text()

    # Every rule that reads the manifest declares it, so Snakemake knows when their results are stale.
    summary = _snakemake("--detailed-summary", "--configfile", str(config), workdir=tmp_path)
    assert summary.returncode == 0, summary.stderr[-3000:]
    assert _rules_reading(summary.stdout, str(manifest)) >= {"train", "embed", "evaluate"}
    assert _planned(config, tmp_path) == set()
    manifest.touch()  # the same content: Snakemake 9 compares checksums of small inputs, so nothing is stale
    assert _planned(config, tmp_path) == set()
    table = pd.read_parquet(manifest)
    table.loc[0, "subtlety"] = table.loc[0, "subtlety"] + 1
    table.to_parquet(manifest)
    assert _planned(config, tmp_path) >= {"train", "embed", "evaluate"}
    assert "extract_gather" not in _planned(config, tmp_path)


def _rules_reading(detailed_summary: str, path: str) -> set[str]:
    """Rules of ``snakemake --detailed-summary`` (tab-separated, one row per output) with ``path`` among their inputs."""
    lines = detailed_summary.strip().splitlines()
    header = lines[0].split("\t")
    rule_column, input_column = header.index("rule"), header.index("input-file(s)")
    rows = [line.split("\t") for line in lines[1:]]
    return {row[rule_column] for row in rows if len(row) > input_column and path in row[input_column].split(",")}


def _planned(config: Path, workdir: Path) -> set[str]:
    """Rules a dry run would execute (``all`` left out), from its job-stats table."""
    return _planned_with(config, workdir)


def test_mnist_table_disabled_is_neither_built_nor_waited_for(tmp_path):
    data_dir = str(REPO.parent / "shared" / "data" / "mnist")
    base = {"mnist": {"data_dir": data_dir}, "results_dir": str(tmp_path / "results")}
    on = _write_config(tmp_path / "on.yaml", **base)
    off = _write_config(tmp_path / "off.yaml", **{**base, "mnist": {"data_dir": data_dir, "table": {"enabled": False}}})
    with_table = _planned_with(REPO / "configs" / "mnist.yaml", on, tmp_path)
    without = _planned_with(REPO / "configs" / "mnist.yaml", off, tmp_path)
    assert {"mnist_table", "train", "embed", "evaluate"} <= with_table
    assert "mnist_table" not in without and {"train", "embed", "evaluate"} <= without


def _planned_with(*configs_and_workdir: Path) -> set[str]:
    """Rules a dry run would execute (``all`` left out) for config files layered in order (the last wins),
    from its job-stats table; the workdir comes last."""
    *configs, workdir = configs_and_workdir
    plan = _snakemake("--dry-run", "--configfile", *map(str, configs), workdir=workdir)
    assert plan.returncode == 0, plan.stderr[-3000:]
    text = plan.stdout + plan.stderr
    stats = text.split("Job stats:")[1].split("Reasons:")[0] if "Job stats:" in text else ""
    rows = [re.fullmatch(r"(\w+)\s+(\d+)", line.strip()) for line in stats.splitlines()]
    return {row.group(1) for row in rows if row and row.group(1) not in ("all", "total")}
