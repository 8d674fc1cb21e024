"""HU ↔ network intensity: a clipped linear window, the one transform every stage shares."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

__all__ = ["HUWindow"]


@dataclass(frozen=True)
class HUWindow:
    """Map HU linearly so that ``lower_hu`` → 0 and ``upper_hu`` → 1, clipping outside.

    The configured window (``model.hu_window``; default in lidcvae/schemas/model.yaml) is stored in
    every checkpoint's model section.
    """

    lower_hu: float
    upper_hu: float

    @classmethod
    def from_bounds(cls, bounds: Sequence[float]) -> HUWindow:
        """From ``[lower, upper]`` HU, as ``model.hu_window`` holds it."""
        lower, upper = bounds
        return cls(float(lower), float(upper))

    @property
    def width_hu(self) -> float:
        return self.upper_hu - self.lower_hu

    def to_unit(self, patch_hu: np.ndarray | torch.Tensor) -> np.ndarray | torch.Tensor:
        """HU (any shape, any dtype) → float32 in [0, 1]."""
        if isinstance(patch_hu, torch.Tensor):
            return ((patch_hu.float() - self.lower_hu) / self.width_hu).clamp(0.0, 1.0)
        return np.clip((np.asarray(patch_hu, np.float32) - self.lower_hu) / self.width_hu, 0.0, 1.0)

    def to_hu(self, unit: np.ndarray | torch.Tensor) -> np.ndarray | torch.Tensor:
        """[0, 1] → HU (float); the inverse of ``to_unit`` inside the window."""
        return unit * self.width_hu + self.lower_hu
