"""Where the evaluated weights came from, whether a cohort lies outside what they saw, and what the masks are.

- ``CheckpointOrigin``: the checkpoint file, its epoch, what it was trained on (read from its stored
  config: run name, cohort, dataset kind; its training sample count only when this run trained it, as
  the checkpoint does not record it), whether this run trained it, and its own validation split's
  reconstruction loss and KL at that epoch (from the metrics.csv beside it).
- The out-of-distribution rule (``out_of_distribution``): a cohort's reconstruction loss −log p(x|z) above
  its validation value by more than ``OOD_FACTOR`` − 1 times |validation| (i.e. more than 2× for a
  positive loss), or its KL above ``OOD_FACTOR`` (2) × the validation KL.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pandas as pd

__all__ = ["OOD_FACTOR", "NOT_SPLIT", "Vocabulary", "vocabulary", "mask_name",
           "cohort_mask_kind", "CheckpointOrigin", "stored_cohort", "checkpoint_origin",
           "out_of_distribution", "size_column"]

OOD_FACTOR = 2.0
NOT_SPLIT = "not split (embedded with a trained model)"
SIZE_COLUMNS = ("consensus_diameter_mm", "diameter_mm")

_MASK_NAMES = {"consensus": "consensus (50 %) mask", "sphere": "sphere mask (a ball of the table's diameter_mm)",
               "none": "no mask"}


@dataclass(frozen=True)
class Vocabulary:
    """The words the report uses for one sample: ``nodule``/``nodules`` for CT, ``digit``/``digits`` for MNIST."""

    one: str
    many: str
    has_patients: bool


def vocabulary(dataset: str | None) -> Vocabulary:
    """MNIST speaks of digits and has no patients; everything else is CT nodules."""
    return Vocabulary("digit", "digits", False) if dataset == "mnist" else Vocabulary("nodule", "nodules", True)


def mask_name(kind: str | None) -> str:
    """What a manifest's ``mask_kind`` is, in words (unknown kinds, e.g. an old manifest's, as 'mask')."""
    return _MASK_NAMES.get(kind or "", "mask")


def cohort_mask_kind(tables: Mapping[str, pd.DataFrame]) -> str | None:
    """The one ``mask_kind`` of the cohort's manifest rows; 'mixed' when several, None when not recorded."""
    kinds = {str(k) for t in tables.values() if "mask_kind" in t.columns for k in t["mask_kind"].dropna().unique()}
    return None if not kinds else kinds.pop() if len(kinds) == 1 else "mixed"


def size_column(table: pd.DataFrame) -> str | None:
    """The diameter column a size-only control reads (``consensus_diameter_mm``, or ``diameter_mm`` on the
    coordinates route) when it has values; None (MNIST, coordinates without diameters)."""
    for column in SIZE_COLUMNS:
        if column in table.columns and pd.to_numeric(table[column], errors="coerce").notna().sum() >= 2:
            return column
    return None


def stored_cohort(config: Mapping[str, Any]) -> str:
    """What a checkpoint's stored config says it trained on: cohort kind and run name."""
    if config.get("dataset") == "mnist":
        what = "MNIST digits"
    elif config.get("candidates"):
        what = f"a nodule-coordinates table ({config['candidates']})"
    elif config.get("dicom_root"):
        what = f"LIDC-IDRI DICOM ({config['dicom_root']})"
    else:
        what = "the phantom cohort (synthetic CT on real LIDC-IDRI geometry)"
    return f"{what}, run '{config.get('name', '?')}', dataset {config.get('dataset', '?')}"


@dataclass(frozen=True)
class CheckpointOrigin:
    """The evaluated weights, named (see the module docstring); ``validation`` holds the checkpoint's own
    validation ``epoch``, ``reconstruction_nll_nats`` and ``kl_nats`` when its metrics.csv records them."""

    file: str
    epoch: int
    trained_here: bool
    trained_on: str
    mask_kind: str | None
    training_samples: int | None
    validation: dict | None

    def to_dict(self) -> dict:
        return asdict(self)

    def sentence(self, words: Vocabulary) -> str:
        """One line for the headline."""
        count = (f"{self.training_samples} training {words.one if self.training_samples == 1 else words.many}" if self.training_samples is not None
                 else f"training {words.one} count not recorded in the checkpoint")
        masks = f", {mask_name(self.mask_kind)}s" if self.mask_kind else ""
        who = "trained by this run" if self.trained_here else "trained elsewhere (embed.checkpoint); this run trained nothing"
        return f"{self.file}, epoch {self.epoch}: {who}; trained on {self.trained_on} ({count}{masks})."


def _validation_reference(history: pd.DataFrame | None, epoch: int) -> dict | None:
    if history is None or not {"epoch", "val_reconstruction", "val_kl"} <= set(history.columns):
        return None
    rows = history[history["epoch"] == epoch]
    if rows.empty or rows[["val_reconstruction", "val_kl"]].isna().any(axis=None):
        return None
    return {"epoch": int(epoch), "reconstruction_nll_nats": float(rows["val_reconstruction"].iloc[0]),
            "kl_nats": float(rows["val_kl"].iloc[0])}


def checkpoint_origin(trained: Any, trained_here: bool, history: pd.DataFrame | None,
                      train_table: pd.DataFrame | None) -> CheckpointOrigin:
    """The origin of a ``TrainedModel`` (``lidcvae.train.checkpoint.load_model``); ``history`` is its training
    metrics.csv, ``train_table`` this run's train split (counted only when this run trained the model)."""
    samples = len(train_table) if trained_here and train_table is not None else None
    return CheckpointOrigin(str(Path(trained.path)), int(trained.epoch), trained_here, stored_cohort(trained.config),
                            trained.input.mask_kind, samples, _validation_reference(history, int(trained.epoch)))


def out_of_distribution(name: str, scores: Mapping[str, Any], validation: Mapping[str, Any] | None) -> list[str]:
    """Warnings when split ``name``'s reconstruction loss or KL (``evaluate_split`` metrics) lies far outside the
    checkpoint's own validation values (the rule of the module docstring); empty when within or unknown."""
    if not validation or not scores:
        return []
    found = []
    nll, reference = -scores["reconstruction_log_likelihood_nats"], validation["reconstruction_nll_nats"]
    if nll > reference + (OOD_FACTOR - 1) * abs(reference):
        found.append(f"reconstruction loss −log p(x|z) {nll:.4g} nats against {reference:.4g} on the checkpoint's validation split")
    if scores["kl_nats"] > OOD_FACTOR * validation["kl_nats"]:
        found.append(f"KL {scores['kl_nats']:.4g} nats against {validation['kl_nats']:.4g} on its validation split")
    if not found:
        return []
    return [f"OUT OF DISTRIBUTION: the {name} {scores['samples']} sample(s) lie far outside what the checkpoint saw "
            f"(rule: loss above {OOD_FACTOR:g}× its validation value at epoch {validation['epoch']}, or KL above "
            f"{OOD_FACTOR:g}×): {'; '.join(found)}. Its reconstructions and codes may not mean what they mean on its own data."]
