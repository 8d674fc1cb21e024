"""Training curves as the seeds read them, and a computed verdict: each check states its rule and can fail.

Sign convention (the report's, everywhere): log-likelihoods in nats per sample, higher is better; KL in
nats per sample, ≥ 0. The trainer's metrics.csv (and its log's ``rec``) stores the reconstruction *loss*
−log p(x|z), so it is negated here and the curves say so. A healthy run (the seed on training tricks):
the reconstruction log-likelihood rises fast, then slowly; the KL rises while the encoder spreads codes
out, then falls as the prior pulls them in.

The run is called healthy only when every check below ran and passed (``healthy``):

- learning: the training log p(x|z) at the last epoch is above the first epoch's;
- levelled off: it gained no more in the second half of training than in the first;
- validation after the best epoch: the validation total loss at the last epoch is no more than
  ``VAL_WORSENING_TOLERANCE`` (5 %) of |best| (at least 1 nat) above its best, the epoch best.pt keeps;
- no KL spike: no epoch's training or validation KL exceeds ``KL_SPIKE_FACTOR`` (2) × the median of the
  epochs within ``KL_SPIKE_WINDOW`` (5) on each side (at least 2 each side) and that median by 1 nat;
- train/validation gap: at the best epoch the validation reconstruction loss exceeds the training one by
  at most ``GAP_TOLERANCE`` (50 %) of |training| (at least 1 nat);
- no collapse: the training KL at the end is above 1 % of its peak; settled: the KL is not still at its
  maximum at the last epoch.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from lidcvae.evaluate.figures import figure_png

__all__ = ["TrainingCheck", "reconstruction_log_likelihood", "best_epoch_row", "training_checks", "training_health",
           "healthy", "plot_training_curves", "training_seconds", "VAL_WORSENING_TOLERANCE", "GAP_TOLERANCE",
           "KL_SPIKE_FACTOR", "KL_SPIKE_WINDOW"]

MIN_EPOCHS_TO_JUDGE = 4
VAL_WORSENING_TOLERANCE = 0.05
GAP_TOLERANCE = 0.5
KL_SPIKE_FACTOR = 2.0
KL_SPIKE_WINDOW = 5


@dataclass(frozen=True)
class TrainingCheck:
    """One computed check of the curves: its name, the rule in words, whether it passed (None: not
    computable from this history) and what was found."""

    name: str
    rule: str
    passed: bool | None
    detail: str

    def to_dict(self) -> dict:
        return asdict(self)


def reconstruction_log_likelihood(history: pd.DataFrame, side: str) -> np.ndarray | None:
    """log p(x|z) per epoch for ``side`` ('train' or 'val'), nats per sample; None without the column."""
    column = f"{side}_reconstruction"
    return None if column not in history.columns else -history[column].to_numpy(np.float64)


def training_seconds(history: pd.DataFrame) -> float | None:
    """Summed epoch wall time in seconds (the trainer's ``epoch_seconds``); None when not recorded."""
    if "epoch_seconds" not in history.columns or history["epoch_seconds"].isna().all():
        return None
    return float(history["epoch_seconds"].sum())


def _epochs(history: pd.DataFrame) -> np.ndarray:
    return history["epoch"].to_numpy() if "epoch" in history.columns else np.arange(1, len(history) + 1)


def _val_total(history: pd.DataFrame) -> np.ndarray | None:
    """The validation loss best.pt is chosen by (``val_total``; reconstruction + KL without it)."""
    if "val_total" in history.columns and history["val_total"].notna().any():
        return history["val_total"].to_numpy(np.float64)
    if {"val_reconstruction", "val_kl"} <= set(history.columns):
        return (history["val_reconstruction"] + history["val_kl"]).to_numpy(np.float64)
    return None


def best_epoch_row(history: pd.DataFrame, epoch: int | None = None) -> int | None:
    """Row index of ``epoch`` (the checkpoint's) when recorded, else of the lowest validation total; None without one."""
    if epoch is not None and "epoch" in history.columns and (history["epoch"] == epoch).any():
        return int(np.flatnonzero(history["epoch"].to_numpy() == epoch)[0])
    total = _val_total(history)
    if total is None or not np.isfinite(total).any():
        return None
    return int(np.nanargmin(total))


def _learning_checks(train: np.ndarray) -> list[TrainingCheck]:
    half = len(train) // 2
    first_gain, second_gain = train[half] - train[0], train[-1] - train[half]
    learning = TrainingCheck("learning", "training log p(x|z) at the last epoch above the first's", bool(train[-1] > train[0]),
                             f"training log p(x|z) {train[0]:.4g} → {train[-1]:.4g} nats" + (
                                 "" if train[-1] > train[0] else ": it did not improve; the model is not learning."))
    levelled = TrainingCheck("levelled off", "no larger gain in the second half of training than in the first",
                             bool(second_gain <= first_gain),
                             f"gain {first_gain:.4g} nats in the first half, {second_gain:.4g} in the second" + (
                                 "" if second_gain <= first_gain else ": the reconstruction log-likelihood has not "
                                 "levelled off; train longer."))
    return [learning, levelled]


def _validation_check(history: pd.DataFrame, best: int | None) -> TrainingCheck:
    rule = (f"validation total loss at the last epoch at most {VAL_WORSENING_TOLERANCE:.0%} of |best| (≥ 1 nat) above "
            "its best")
    total = _val_total(history)
    if total is None or best is None:
        return TrainingCheck("validation after the best epoch", rule, None, "no validation columns in metrics.csv: not checked.")
    epochs = _epochs(history)
    worse = total[-1] - total[best]
    allowed = VAL_WORSENING_TOLERANCE * max(abs(total[best]), 1.0)
    detail = (f"validation total loss {total[best]:.4g} nats at epoch {epochs[best]} (best), {total[-1]:.4g} at the last "
              f"epoch {epochs[-1]}")
    if worse > allowed:
        detail += (f": {worse:.4g} nats worse, more than the {allowed:.4g} allowed; validation worsened after epoch "
                   f"{epochs[best]} (overfitting or instability).")
    return TrainingCheck("validation after the best epoch", rule, bool(worse <= allowed), detail)


def _spikes(values: np.ndarray) -> list[int]:
    """Rows whose value exceeds KL_SPIKE_FACTOR × the median of its ±KL_SPIKE_WINDOW neighbours (and it by 1 nat)."""
    found = []
    for i in range(2, len(values) - 2):
        around = np.r_[values[max(0, i - KL_SPIKE_WINDOW):i], values[i + 1:i + 1 + KL_SPIKE_WINDOW]]
        median = float(np.nanmedian(around))
        if values[i] > KL_SPIKE_FACTOR * median and values[i] - median > 1.0:
            found.append(i)
    return found


def _spike_check(history: pd.DataFrame) -> TrainingCheck:
    rule = (f"no epoch's KL above {KL_SPIKE_FACTOR:g}× the median of the {KL_SPIKE_WINDOW} epochs on each side "
            "(and above it by > 1 nat)")
    epochs, found = _epochs(history), []
    for side in ("train", "val"):
        if f"{side}_kl" in history.columns:
            found += [f"{side} KL {history[f'{side}_kl'].iloc[i]:.4g} nats at epoch {epochs[i]}"
                      for i in _spikes(history[f"{side}_kl"].to_numpy(np.float64))]
    if not {"train_kl", "val_kl"} & set(history.columns):
        return TrainingCheck("no KL spike", rule, None, "no KL columns in metrics.csv: not checked.")
    return TrainingCheck("no KL spike", rule, not found,
                         "no KL spike" if not found else f"KL spike(s): {'; '.join(found[:4])}.")


def _gap_check(history: pd.DataFrame, best: int | None) -> TrainingCheck:
    rule = f"validation reconstruction loss at the best epoch at most {GAP_TOLERANCE:.0%} of |training| (≥ 1 nat) above training"
    train, val = reconstruction_log_likelihood(history, "train"), reconstruction_log_likelihood(history, "val")
    if train is None or val is None or best is None:
        return TrainingCheck("train/validation gap", rule, None, "no validation reconstruction column: not checked.")
    gap, allowed = train[best] - val[best], GAP_TOLERANCE * max(abs(train[best]), 1.0)
    detail = f"log p(x|z) at epoch {_epochs(history)[best]}: training {train[best]:.4g}, validation {val[best]:.4g} nats"
    if gap > allowed:
        detail += f": validation is {gap:.4g} nats worse, more than {allowed:.4g}: the model fits its training samples far better than unseen ones."
    return TrainingCheck("train/validation gap", rule, bool(gap <= allowed), detail)


def _kl_shape_checks(history: pd.DataFrame) -> list[TrainingCheck]:
    if "train_kl" not in history.columns:
        return []
    kl = history["train_kl"].to_numpy(np.float64)
    collapsed = kl.max() > 0 and kl[-1] < 0.01 * kl.max()
    rising = int(np.argmax(kl)) == len(kl) - 1 and kl[-1] > kl[0]
    return [TrainingCheck("no collapse", "training KL at the end above 1 % of its peak", not collapsed,
                          f"training KL {kl[-1]:.3g} nats at the end, {kl.max():.3g} at its peak" + (
                              ": the posterior collapsed onto the prior." if collapsed else "")),
            TrainingCheck("KL settled", "training KL not at its maximum at the last epoch", not rising,
                          f"training KL {kl[0]:.4g} → {kl[-1]:.4g} nats" + (
                              ": still rising at the last epoch; the encoder is still spreading its codes and the run "
                              "is not yet in its settling phase." if rising else ""))]


def _overfitting_check(history: pd.DataFrame) -> list[TrainingCheck]:
    train, val = reconstruction_log_likelihood(history, "train"), reconstruction_log_likelihood(history, "val")
    if train is None or val is None:
        return []
    third = max(1, len(train) // 3)
    falling = bool(val[-1] < val[-third - 1] and train[-1] > train[-third - 1])
    return [TrainingCheck("no overfitting", f"validation log p(x|z) not falling over the last {third} epochs while training rises",
                          not falling, f"validation log p(x|z) {val[-third - 1]:.4g} → {val[-1]:.4g} nats over the last {third} "
                          "epochs" + (" while training rose: overfitting." if falling else ""))]


def training_checks(history: pd.DataFrame) -> list[TrainingCheck]:
    """Every check of the module docstring on ``history`` (metrics.csv); the best epoch is the one of lowest
    validation total loss (the one the trainer keeps as best.pt)."""
    if len(history) < MIN_EPOCHS_TO_JUDGE:
        return [TrainingCheck("enough epochs", f"at least {MIN_EPOCHS_TO_JUDGE} epochs recorded", False,
                              f"Only {len(history)} epoch(s) recorded: too few to judge whether training converged.")]
    best = best_epoch_row(history)
    train = reconstruction_log_likelihood(history, "train")
    checks = _learning_checks(train) if train is not None else []
    checks += [_validation_check(history, best), _spike_check(history), _gap_check(history, best)]
    return checks + _kl_shape_checks(history) + _overfitting_check(history)


def healthy(checks: list[TrainingCheck]) -> bool:
    """True only when there are checks, every one ran, and every one passed."""
    return bool(checks) and all(c.passed is True for c in checks)


def training_health(history: pd.DataFrame) -> list[str]:
    """Sentences naming what in the curves departs from a healthy run (failed or not-computable checks); empty
    only when ``healthy``."""
    return [c.detail if c.passed is False else f"{c.name}: {c.detail}" for c in training_checks(history)
            if c.passed is not True]


def plot_training_curves(history: pd.DataFrame, best_row: int | None = None) -> bytes:
    """2×2 linear plots per epoch: rows reconstruction log-likelihood and KL, columns train and val; the
    epoch of the evaluated checkpoint (``best_row``) dashed."""
    x = _epochs(history)
    figure, axes = plt.subplots(2, 2, figsize=(10, 6.4), squeeze=False)
    for column, side in enumerate(("train", "val")):
        log_likelihood = reconstruction_log_likelihood(history, side)
        kl_column = f"{side}_kl"
        panels = [
            (log_likelihood, f"{side}: log p(x|z) = −({side}_reconstruction in metrics.csv)\n(nats per sample, higher is better)",
             "tab:blue"),
            (history[kl_column].to_numpy() if kl_column in history.columns else None,
             f"{side}: KL(q(z|x) ‖ p(z))\n(nats per sample, ≥ 0)", "tab:orange"),
        ]
        for row, (values, title, colour) in enumerate(panels):
            axis = axes[row][column]
            if values is None:
                axis.text(0.5, 0.5, f"no {side} column in metrics.csv", ha="center", va="center", transform=axis.transAxes)
            else:
                axis.plot(x, values, marker=".", color=colour)
            if best_row is not None:
                axis.axvline(x[best_row], color="grey", linestyle="--", linewidth=1)
            axis.set_title(title, fontsize=9)
            axis.set_xlabel("epoch")
            axis.ticklabel_format(axis="y", style="sci", scilimits=(-3, 4))
    figure.suptitle("Training curves (linear axes); dashed: the evaluated checkpoint's epoch")
    figure.tight_layout()
    return figure_png(figure, dpi=100, tight=False)
