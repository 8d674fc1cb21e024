"""A small workflow through configs/profiles/slurm on a real SLURM cluster (CI's one node, .ci/slurm-up.sh).

Skips, saying why, where no SLURM controller answers or the slurm executor plugin is not installed.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
SLURM_PROFILE = REPO / "configs" / "profiles" / "slurm"
#: What the tiny run's largest job asks per thread (train: "8000 * threads" in the profile).
_TRAIN_MB_PER_THREAD = 8000


def _node() -> dict[str, int]:
    """CPUs and memory (MB) of the first idle/mixed node, or skip with the reason."""
    if not shutil.which("sinfo") or not shutil.which("sbatch"):
        pytest.skip("SLURM client tools not installed (CI installs slurm-wlm and runs .ci/slurm-up.sh)")
    try:
        answer = subprocess.run(["sinfo", "-h", "-N", "-t", "idle,mix", "-o", "%c %m"], capture_output=True, text=True, timeout=20)
    except subprocess.TimeoutExpired:
        pytest.skip("sinfo did not answer in 20 s: no SLURM controller running")
    lines = answer.stdout.split()
    if answer.returncode != 0 or len(lines) < 2:
        pytest.skip(f"no idle SLURM node (sinfo: {(answer.stderr or answer.stdout).strip()[:200] or 'empty'}); run .ci/slurm-up.sh as root")
    return {"cpus": int(lines[0]), "mem_mb": int(lines[1].rstrip("+"))}


def _scontrol_job(job_id: str) -> dict[str, str]:
    """``scontrol show job`` as key=value pairs (finished jobs stay visible for MinJobAge seconds)."""
    text = subprocess.run(["scontrol", "show", "job", job_id], capture_output=True, text=True, timeout=20, check=True).stdout
    return dict(re.findall(r"(\S+?)=(\S*)", text))


@pytest.mark.slow
def test_mnist_workflow_runs_every_job_through_slurm_with_resources_scaled_by_cores(mnist_dir, tmp_path):
    pytest.importorskip("snakemake_executor_plugin_slurm", reason="install the slurm extra: pip install -e '.[slurm]'")
    node = _node()
    cores = min(node["cpus"], 2)
    if node["mem_mb"] < _TRAIN_MB_PER_THREAD:
        pytest.skip(f"the SLURM node has {node['mem_mb']} MB; the profile's train job asks {_TRAIN_MB_PER_THREAD} MB per thread")
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump({
        "name": "mnist-slurm", "results_dir": str(tmp_path / "results"),
        "mnist": {"data_dir": str(mnist_dir), "download": False, "limit": 200,
                  "table": {"sizes": [[20, 2]], "importance_samples": 4, "test_limit": 50}},
        "model": {"hidden_sizes": [32], "latent_size": 4},
        "train": {"epochs": 1, "threads": 1},
        "evaluate": {"iwae_samples": 4, "montage_samples": 4, "prior_samples": 4, "probe": {"bootstrap_samples": 10}},
    }))  # fmt: skip
    command = [
        sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "snakefile"), "--directory", str(tmp_path),
        "--profile", str(SLURM_PROFILE), "--configfile", str(REPO / "configs" / "mnist.yaml"), str(config),
        "--cores", str(cores),                       # the profile's one override for a small node
        "--slurm-status-command", "squeue",          # no accounting database here (sacct would hang)
        "--slurm-init-seconds-before-status-checks", "2", "--latency-wait", "5", "--slurm-keep-successful-logs",
    ]  # fmt: skip
    run = subprocess.run(command, capture_output=True, text=True, timeout=900, cwd=tmp_path)
    log = run.stdout + run.stderr
    assert run.returncode == 0, log[-4000:]

    submitted = dict(
        (rule, job_id) for job_id, rule in re.findall(r"submitted with SLURM jobid (\d+) \(log: \S+/rule_(\w+)/\d+\.log\)", log)
    )
    assert sorted(submitted) == ["embed", "evaluate", "mnist_table", "train"], log[-4000:]
    jobs = {rule: _scontrol_job(job_id) for rule, job_id in submitted.items()}
    for rule, job in jobs.items():
        assert job["JobState"] == "COMPLETED" and job["ExitCode"] == "0:0", (rule, job)
        assert job["Comment"] == f"rule_{rule}" and Path(job["WorkDir"]) == tmp_path
        assert (tmp_path / ".snakemake" / "slurm_logs" / f"rule_{rule}" / f"{job['JobId']}.log").is_file()
    # evaluate asks for 8 threads at 4000 MB each; --cores caps the threads, and the memory follows.
    assert f"cpu={cores},mem={4000 * cores}M" in jobs["evaluate"]["TRES"]
    assert "cpu=1,mem=8000M" in jobs["train"]["TRES"]  # train.threads 1
    report = tmp_path / "results" / "mnist-slurm" / "evaluate" / "report.html"
    assert '<section id="reconstruction">' in report.read_text()
