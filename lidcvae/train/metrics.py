"""Per-epoch metrics table, per-step TensorBoard scalars and the posterior-collapse count."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import torch

from lidcvae.io import atomic_path

__all__ = ["METRIC_COLUMNS", "active_units", "MetricsTable"]

METRIC_COLUMNS = [
    "epoch", "step", "train_reconstruction", "train_kl", "train_total", "val_reconstruction", "val_kl",
    "val_total", "beta", "lr", "sigma2", "active_units", "samples_per_s", "epoch_seconds",
]


def active_units(posterior_means: torch.Tensor, threshold: float = 0.01) -> int:
    """Dimensions whose posterior mean varies over the data: Cov_x(E_q[z_d]) > threshold (Burda et al. 2016).

    Args:
        posterior_means: (N, D), N ≥ 2.
    """
    if len(posterior_means) < 2:
        return 0
    return int((posterior_means.float().var(dim=0) > threshold).sum())


class MetricsTable:
    """``metrics.csv``: one row per finished epoch, rewritten atomically after each.

    On resume the rows of epochs after the checkpoint are dropped, so a run killed between writing
    metrics and its checkpoint shows each epoch once.
    """

    def __init__(self, path: Path, resume_epoch: int = 0) -> None:
        self.path = path
        self.rows: list[dict[str, Any]] = []
        if resume_epoch > 0 and path.is_file():
            previous = pd.read_csv(path)
            self.rows = previous[previous["epoch"] <= resume_epoch].to_dict("records")

    def append(self, row: dict[str, Any]) -> None:
        """Add an epoch's row and rewrite the file."""
        self.rows.append(row)
        with atomic_path(self.path) as tmp:
            pd.DataFrame(self.rows, columns=METRIC_COLUMNS).to_csv(tmp, index=False)
