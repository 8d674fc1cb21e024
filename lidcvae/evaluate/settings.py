"""The evaluate stage's settings, typed: the ``evaluate`` config section (lidcvae/schemas/evaluate.yaml)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from lidcvae.config import Section

__all__ = ["ProbeSettings", "EvaluateSettings"]


@dataclass(frozen=True)
class ProbeSettings(Section):
    """Downstream probe: which label to predict, how to group folds, which baselines to fit."""

    SECTION: ClassVar[str] = "evaluate.probe"
    enabled: bool
    label_column: str
    group_column: str
    n_splits: int
    bootstrap_samples: int
    baseline_columns: tuple[str, ...]
    raw_voxel_pca: bool
    voxel_stride: int


@dataclass(frozen=True)
class EvaluateSettings(Section):
    """Everything ``evaluate_model`` needs besides the model and the data; built by
    ``EvaluateSettings.from_mapping(section)``, every default in the schema."""

    SECTION: ClassVar[str] = "evaluate"
    splits: tuple[str, ...]
    batch_size: int
    iwae_samples: int
    iwae_chunk_size: int
    active_unit_threshold: float
    kl_active_threshold_nats: float
    min_active_units: int
    pca_variance_fraction: float
    montage_samples: int
    prior_samples: int
    sample_from: str
    interpolation_steps: int
    image_zoom: int
    retrieval_queries: int
    retrieval_neighbours: int
    projector: bool
    representation_table: str | None
    seed: int
    probe: ProbeSettings
