"""The ``render`` config section as a typed object (keys and meanings: lidcvae/schemas/render.yaml)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from lidcvae.config import ConfigError, Section

__all__ = ["RenderConfig", "RenderSplit"]

_RANGES = ("density_hu", "texture_sd_hu", "texture_correlation_mm", "lung_hu", "vessels", "vessel_radius_mm", "noise_hu")


@dataclass(frozen=True)
class RenderSplit(Section):
    """``render.split``: patient fractions in train and val (the selection split); the rest is test."""

    SECTION: ClassVar[str] = "render.split"
    train: float
    val: float

    def __post_init__(self) -> None:
        if self.train + self.val > 1.0 + 1e-9:
            raise ConfigError(f"key 'render.split': train + val = {self.train + self.val:g} leaves no room for test (at most 1)")


@dataclass(frozen=True)
class RenderConfig(Section):
    """The render route's selection, drawn-look distributions and split; built by ``RenderConfig.from_mapping``.

    Each ``(low, high)`` pair is a uniform range: HU for ``density_hu``, ``texture_sd_hu``, ``lung_hu``,
    ``noise_hu``; mm for ``texture_correlation_mm``, ``vessel_radius_mm``; a count for ``vessels``.
    """

    SECTION: ClassVar[str] = "render"
    enabled: bool
    seed: int
    min_readers: int
    patients: tuple[str, ...] | None
    workers: int
    scans_per_part: int
    density_hu: tuple[float, float]
    texture_sd_hu: tuple[float, float]
    texture_correlation_mm: tuple[float, float]
    lung_hu: tuple[float, float]
    lung_variation_hu: float
    lung_correlation_mm: float
    vessels: tuple[int, int]
    vessel_radius_mm: tuple[float, float]
    noise_hu: tuple[float, float]
    split: RenderSplit

    def __post_init__(self) -> None:
        for key in _RANGES:
            low, high = getattr(self, key)
            if low > high:
                raise ConfigError(f"key 'render.{key}': a range is [low, high], got [{low:g}, {high:g}]")
