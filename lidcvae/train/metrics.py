"""Per-epoch metrics rows (metrics.csv) and the TensorBoard scalars, per step and per epoch.

Loss terms are nats per sample, lower is better: total = reconstruction + β·KL + auxiliary (the negative
ELBO when auxiliary is 0). ``auxiliary`` is what the model decodes beside the image: −λ·log p(h|z) of the
density histogram with ``model.histogram_view``, 0 without; reconstruction stays the image's alone.
"""

from __future__ import annotations

from dataclasses import astuple, dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
import torch

from lidcvae.io import atomic_path

if TYPE_CHECKING:
    from lidcvae.train.step import StepValues

__all__ = ["METRIC_COLUMNS", "TermMeans", "EpochTerms", "MetricsTable", "metrics_row", "log_step_scalars",
           "log_epoch_scalars"]


@dataclass(frozen=True)
class TermMeans:
    """An epoch's loss terms, means over its samples in nats per sample."""

    reconstruction: float
    kl: float
    auxiliary: float
    total: float

    def items(self) -> list[tuple[str, float]]:
        """(name, value) pairs in column order: reconstruction, kl, auxiliary, total."""
        return [(f.name, getattr(self, f.name)) for f in fields(self)]


_TERMS = tuple(f.name for f in fields(TermMeans))


@dataclass
class EpochTerms:
    """Running sums of the loss terms over an epoch, each Σ (batch mean × batch size), and ``n`` samples.

    Sums are float64 (Python floats), so an epoch of small batches loses nothing to rounding.
    """

    reconstruction: float = 0.0
    kl: float = 0.0
    auxiliary: float = 0.0
    total: float = 0.0
    n: float = 0.0

    def add(self, terms: Any, count: int) -> None:
        """Add a batch of ``count`` samples whose mean terms are ``terms`` (floats, or 0-d tensors as
        ``LossTerms`` holds them: each is multiplied by ``count`` in its own dtype, then summed here)."""
        for name in _TERMS:
            setattr(self, name, getattr(self, name) + float(getattr(terms, name) * count))
        self.n += count

    def mean(self) -> TermMeans:
        """Per-sample means of the summed terms."""
        return TermMeans(*(getattr(self, name) / self.n for name in _TERMS))

    def to_tensor(self) -> torch.Tensor:
        """(5,) float64 [reconstruction, kl, auxiliary, total, n], e.g. to sum over ranks."""
        return torch.tensor(astuple(self), dtype=torch.float64)

    @classmethod
    def from_tensor(cls, values: torch.Tensor) -> EpochTerms:
        """Inverse of ``to_tensor``."""
        return cls(*values.tolist())

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


def metrics_row(epoch: int, step: int, train_terms: TermMeans, val_terms: TermMeans, beta: float, lr: float,
                sigma2: float, active_units: int, samples_per_s: float, epoch_seconds: float) -> dict[str, Any]:
    """One metrics.csv row (``METRIC_COLUMNS``): the epoch's train and val term means, nats per sample;
    ``sigma2`` the decoder variance (NaN for models without one); ``epoch_seconds`` s."""
    return {"epoch": epoch, "step": step,
            **{f"train_{n}": v for n, v in train_terms.items()},
            **{f"val_{n}": v for n, v in val_terms.items()},
            "beta": beta, "lr": lr, "sigma2": sigma2, "active_units": active_units,
            "samples_per_s": samples_per_s, "epoch_seconds": epoch_seconds}


def log_step_scalars(writer: Any, step: int, values: StepValues, beta: float, lr: float) -> None:
    """TensorBoard ``train/*`` at ``step``: reconstruction, kl, auxiliary, total, grad_norm (a ``StepValues``), β and lr."""
    for name, value in values._asdict().items():
        writer.add_scalar(f"train/{name}", value, step)
    writer.add_scalar("train/beta", beta, step)
    writer.add_scalar("train/lr", lr, step)


def log_epoch_scalars(writer: Any, row: dict[str, Any]) -> None:
    """TensorBoard ``val/*`` of an epoch's metrics row, at its last step; flushed."""
    for name in _TERMS:
        writer.add_scalar(f"val/{name}", row[f"val_{name}"], row["step"])
    writer.add_scalar("val/active_units", row["active_units"], row["step"])
    writer.flush()
