"""The ``phantom`` config section as a typed object (keys and meanings: lidcvae/schemas/phantom.yaml)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from lidcvae.config import Section

__all__ = ["PhantomConfig"]


@dataclass(frozen=True)
class PhantomConfig(Section):
    """Which scans the phantom cohort writes and how; built by ``PhantomConfig.from_mapping(section)``.

    Units: ``noise_hu`` HU (standard deviation), ``clearance_mm`` mm.
    """

    SECTION: ClassVar[str] = "phantom"
    n_scans: int
    patients: tuple[str, ...] | None
    seed: int
    noise_hu: float
    min_readers: int
    clearance_mm: float
    workers: int
