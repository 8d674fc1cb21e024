"""Training curves as the seeds read them, and a plain sentence when a run does not look healthy.

Sign convention (the report's, everywhere): log-likelihoods in nats per sample, higher is better; KL in
nats per sample, ≥ 0. The trainer's metrics.csv stores the reconstruction *loss* −log p(x|z), so it is
negated here. A healthy run (the seed on training tricks): the reconstruction log-likelihood rises fast,
then slowly; the KL rises while the encoder spreads codes out, then falls as the prior pulls them in.
"""

from __future__ import annotations

import os

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from lidcvae.io import atomic_path

__all__ = ["reconstruction_log_likelihood", "training_health", "plot_training_curves", "training_seconds"]

MIN_EPOCHS_TO_JUDGE = 4


def reconstruction_log_likelihood(history: pd.DataFrame, side: str) -> np.ndarray | None:
    """log p(x|z) per epoch for ``side`` ('train' or 'val'), nats per sample; None without the column."""
    column = f"{side}_reconstruction"
    return None if column not in history.columns else -history[column].to_numpy(np.float64)


def training_seconds(history: pd.DataFrame) -> float | None:
    """Summed epoch wall time in seconds (the trainer's ``epoch_seconds``); None when not recorded."""
    if "epoch_seconds" not in history.columns or history["epoch_seconds"].isna().all():
        return None
    return float(history["epoch_seconds"].sum())


def training_health(history: pd.DataFrame) -> list[str]:
    """Sentences naming what in the curves departs from a healthy run; empty when it looks healthy."""
    if len(history) < MIN_EPOCHS_TO_JUDGE:
        return [f"Only {len(history)} epoch(s) recorded: too few to judge whether training converged."]
    problems = []
    train = reconstruction_log_likelihood(history, "train")
    if train is not None:
        half = len(train) // 2
        first_gain, second_gain = train[half] - train[0], train[-1] - train[half]
        if train[-1] <= train[0]:
            problems.append(f"The training reconstruction log-likelihood did not improve ({train[0]:.4g} → "
                            f"{train[-1]:.4g} nats): the model is not learning.")
        elif second_gain > first_gain:
            problems.append(f"The reconstruction log-likelihood gained more in the second half of training "
                            f"({second_gain:.4g} nats) than in the first ({first_gain:.4g}): it has not levelled off; train longer.")
        val = reconstruction_log_likelihood(history, "val")
        third = max(1, len(train) // 3)
        if val is not None and val[-1] < val[-third - 1] and train[-1] > train[-third - 1]:
            problems.append(f"Over the last {third} epochs the validation reconstruction log-likelihood fell "
                            f"({val[-third - 1]:.4g} → {val[-1]:.4g} nats) while training rose: overfitting.")
    if "train_kl" in history.columns:
        kl = history["train_kl"].to_numpy(np.float64)
        if kl.max() > 0 and kl[-1] < 0.01 * kl.max():
            problems.append(f"The KL fell to {kl[-1]:.3g} nats ({kl.max():.3g} at its peak): the posterior collapsed onto the prior.")
        elif int(np.argmax(kl)) == len(kl) - 1 and kl[-1] > kl[0]:
            problems.append(f"The KL was still rising at the last epoch ({kl[0]:.4g} → {kl[-1]:.4g} nats): "
                            "the encoder is still spreading its codes; the run is not yet in its settling phase.")
    return problems


def plot_training_curves(history: pd.DataFrame, path: str | os.PathLike) -> None:
    """2×2 linear plots per epoch: rows reconstruction log-likelihood and KL, columns train and val."""
    x = history["epoch"] if "epoch" in history.columns else np.arange(1, len(history) + 1)
    figure, axes = plt.subplots(2, 2, figsize=(10, 6.4), squeeze=False)
    for column, side in enumerate(("train", "val")):
        log_likelihood = reconstruction_log_likelihood(history, side)
        kl_column = f"{side}_kl"
        panels = [
            (log_likelihood, f"{side}: reconstruction log p(x|z)\n(nats per sample, higher is better)", "tab:blue"),
            (history[kl_column].to_numpy() if kl_column in history.columns else None,
             f"{side}: KL(q(z|x) ‖ p(z))\n(nats per sample, ≥ 0)", "tab:orange"),
        ]
        for row, (values, title, colour) in enumerate(panels):
            axis = axes[row][column]
            if values is None:
                axis.text(0.5, 0.5, f"no {side} column in metrics.csv", ha="center", va="center", transform=axis.transAxes)
            else:
                axis.plot(x, values, marker=".", color=colour)
            axis.set_title(title, fontsize=9)
            axis.set_xlabel("epoch")
            axis.ticklabel_format(axis="y", style="sci", scilimits=(-3, 4))
    figure.suptitle("Healthy: reconstruction rises fast then slowly; KL rises, then falls (linear axes)")
    figure.tight_layout()
    with atomic_path(path) as tmp:
        figure.savefig(tmp, dpi=100)
    plt.close(figure)
