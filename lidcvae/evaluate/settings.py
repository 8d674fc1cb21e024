"""The evaluate stage's settings, typed; built from the validated ``evaluate`` config section."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

__all__ = ["ProbeSettings", "EvaluateSettings"]


def _known(cls, values: dict[str, Any]) -> dict[str, Any]:
    names = {f.name for f in fields(cls)}
    return {k: v for k, v in values.items() if k in names}


@dataclass
class ProbeSettings:
    """Downstream probe: which label to predict, how to group folds, which baselines to fit."""

    enabled: bool = True
    label_column: str = "label"
    group_column: str = "patient_id"
    n_splits: int = 5
    bootstrap_samples: int = 1000
    baseline_columns: list[str] = field(default_factory=lambda: ["consensus_diameter_mm"])
    raw_voxel_pca: bool = True
    voxel_stride: int = 1

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> ProbeSettings:
        return cls(**_known(cls, values))


@dataclass
class EvaluateSettings:
    """Everything ``evaluate_model`` needs besides the model and the data; see lidcvae/schemas/evaluate.yaml."""

    splits: list[str] = field(default_factory=lambda: ["test", "val"])
    batch_size: int = 8
    iwae_samples: int = 100
    iwae_chunk_size: int = 10
    active_unit_threshold: float = 0.01
    min_active_units: int = 2
    pca_variance_fraction: float = 0.9
    montage_samples: int = 8
    prior_samples: int = 8
    sample_from: str = "aggregate_posterior"
    interpolation_steps: int = 8
    image_zoom: int = 2
    seed: int = 0
    probe: ProbeSettings = field(default_factory=ProbeSettings)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> EvaluateSettings:
        known = _known(cls, values)
        known["probe"] = ProbeSettings.from_dict(values.get("probe", {}))
        return cls(**known)
