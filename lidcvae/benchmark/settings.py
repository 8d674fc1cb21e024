"""The ``benchmark`` config section as typed objects (keys and meanings: lidcvae/schemas/benchmark.yaml)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from lidcvae.config import Section

__all__ = ["BenchmarkConfig", "ContrastiveConfig", "RawPcaConfig"]


@dataclass(frozen=True)
class ContrastiveConfig(Section):
    """``benchmark.contrastive``: the same-backbone SimCLR encoder (epochs, batch, lr, τ, projection size, jitter)."""

    SECTION: ClassVar[str] = "benchmark.contrastive"
    enabled: bool
    epochs: int
    batch_size: int
    lr: float
    temperature: float
    projection_size: int
    intensity_jitter: float


@dataclass(frozen=True)
class RawPcaConfig(Section):
    """``benchmark.raw_pca``: PCA of the central ``crop``³ voxels, ``components`` kept."""

    SECTION: ClassVar[str] = "benchmark.raw_pca"
    crop: int
    components: int


@dataclass(frozen=True)
class BenchmarkConfig(Section):
    """The benchmark's variants, control, extra rows and scoring (bootstrap resamples, inner folds, seed)."""

    SECTION: ClassVar[str] = "benchmark"
    enabled: bool
    variants: tuple[str, ...]
    reference: str
    contrastive: ContrastiveConfig
    average_orientations: bool
    radiomics: bool
    raw_pca: RawPcaConfig
    bootstrap_samples: int
    inner_folds: int
    seed: int
    density_targets: bool
