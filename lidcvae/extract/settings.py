"""The ``extract`` config section as a typed object (keys and meanings: lidcvae/schemas/extract.yaml)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from lidcvae.config import Section

__all__ = ["ExtractSettings", "SplitFractions"]


@dataclass(frozen=True)
class SplitFractions(Section):
    """``extract.split``: patient fractions in train and val (the rest is test) and the hash salt."""

    SECTION: ClassVar[str] = "extract.split"
    train: float
    val: float
    salt: str


@dataclass(frozen=True)
class ExtractSettings(Section):
    """Patch geometry, consensus and nodule selection; built by ``ExtractSettings.from_mapping(section)``.

    Units: ``patch_size`` voxels per edge, ``spacing_mm`` and ``cluster_tolerance_mm`` mm, ``pad_hu`` HU.
    ``stored_values_are_hu``: DICOM CT slices without RescaleSlope / RescaleIntercept hold HU already
    (otherwise such a slice is a failure row).
    """

    SECTION: ClassVar[str] = "extract"
    patch_size: int
    spacing_mm: float
    consensus_level: float
    cluster_tolerance_mm: float | None
    min_readers: int
    pad_hu: int
    interpolation: str
    split: SplitFractions
    workers: int
    sphere_mask: bool
    stored_values_are_hu: bool

    @property
    def spline_order(self) -> int:
        return {"linear": 1, "cubic": 3}[self.interpolation]
