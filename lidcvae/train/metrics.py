"""Per-epoch metrics rows (metrics.csv) and the TensorBoard scalars, per step and per epoch.

Loss terms are nats per sample, lower is better: total = reconstruction + β·KL + auxiliary (the negative
ELBO when auxiliary is 0). ``auxiliary`` is what the model decodes beside the image: −λ·log p(h|z) of the
density histogram with ``model.histogram_view``, 0 without; reconstruction stays the image's alone.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from lidcvae.io import atomic_path

__all__ = ["METRIC_COLUMNS", "MetricsTable", "metrics_row", "log_step_scalars", "log_epoch_scalars"]

_TERMS = ("reconstruction", "kl", "auxiliary", "total")

METRIC_COLUMNS = [
    "epoch", "step", "train_reconstruction", "train_kl", "train_auxiliary", "train_total", "val_reconstruction",
    "val_kl", "val_auxiliary", "val_total", "beta", "lr", "sigma2", "active_units", "samples_per_s", "epoch_seconds",
]


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


def metrics_row(epoch: int, step: int, train_terms: list[float], val_terms: list[float], beta: float, lr: float,
                sigma2: float, active_units: int, samples_per_s: float, epoch_seconds: float) -> dict[str, Any]:
    """One metrics.csv row (``METRIC_COLUMNS``): ``train_terms``/``val_terms`` are (reconstruction, kl, auxiliary, total),
    nats per sample; ``sigma2`` the decoder variance (NaN for models without one); ``epoch_seconds`` s."""
    return {"epoch": epoch, "step": step,
            **{f"train_{n}": v for n, v in zip(_TERMS, train_terms)},
            **{f"val_{n}": v for n, v in zip(_TERMS, val_terms)},
            "beta": beta, "lr": lr, "sigma2": sigma2, "active_units": active_units,
            "samples_per_s": samples_per_s, "epoch_seconds": epoch_seconds}


def log_step_scalars(writer: Any, step: int, values: list[float], beta: float, lr: float) -> None:
    """TensorBoard ``train/*`` at ``step``: reconstruction, kl, auxiliary, total, grad_norm (``values``), β and lr."""
    for name, value in zip((*_TERMS, "grad_norm"), values):
        writer.add_scalar(f"train/{name}", value, step)
    writer.add_scalar("train/beta", beta, step)
    writer.add_scalar("train/lr", lr, step)


def log_epoch_scalars(writer: Any, row: dict[str, Any]) -> None:
    """TensorBoard ``val/*`` of an epoch's metrics row, at its last step; flushed."""
    for name in _TERMS:
        writer.add_scalar(f"val/{name}", row[f"val_{name}"], row["step"])
    writer.add_scalar("val/active_units", row["active_units"], row["step"])
    writer.flush()
