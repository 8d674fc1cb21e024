"""What makes two training runs the same run: the settings that change the result, and the data.

The Snakemake train rule resumes from ``last.pt`` only when the checkpoint's identity equals the
requested run's (otherwise it trains from scratch), and passes ``run_settings`` as the rule's
``params`` so that changing any of them reruns the rule.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

__all__ = ["RUNTIME_TRAIN_KEYS", "run_settings", "run_identity", "identity_differences"]

#: ``train`` keys that decide where and how fast a run goes, not what it computes (the manifest path
#: is replaced by a digest of the file's content in ``run_identity``).
RUNTIME_TRAIN_KEYS = frozenset({"threads", "progress", "device", "gpus", "cpu_processes", "compile", "manifest"})


def run_settings(config: dict[str, Any]) -> dict[str, Any]:
    """The config that decides a trained model: dataset, model, train (runtime keys left out), MNIST source."""
    settings = {
        "dataset": config["dataset"],
        "model": config["model"],
        "train": {key: value for key, value in config["train"].items() if key not in RUNTIME_TRAIN_KEYS},
    }
    if config["dataset"] == "mnist":
        settings["mnist"] = config["mnist"]
    return settings


def run_identity(config: dict[str, Any], manifest: str | Path | None) -> dict[str, Any]:
    """``run_settings`` plus the SHA-256 of the manifest file the run trains on (None for MNIST)."""
    digest = hashlib.sha256(Path(manifest).read_bytes()).hexdigest() if manifest and Path(manifest).is_file() else None
    return {**run_settings(config), "manifest_sha256": digest}


def identity_differences(saved: dict[str, Any] | None, requested: dict[str, Any]) -> list[str]:
    """Dotted keys whose values differ between two identities (``["<none saved>"]`` when ``saved`` is None)."""
    if saved is None:
        return ["<none saved>"]
    differences = []
    for key in sorted(set(saved) | set(requested)):
        old, new = saved.get(key), requested.get(key)
        if isinstance(old, dict) and isinstance(new, dict):
            differences += [f"{key}.{sub}" for sub in sorted(set(old) | set(new)) if old.get(sub) != new.get(sub)]
        elif old != new:
            differences.append(key)
    return differences
