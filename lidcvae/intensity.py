"""HU ↔ network intensity: a clipped linear window, the one transform every stage shares."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

__all__ = ["HUWindow"]


@dataclass(frozen=True)
class HUWindow:
    """Map HU linearly so that ``lower_hu`` → 0 and ``upper_hu`` → 1, clipping outside.

    The default window (−1000, 400) HU keeps air, lung, soft tissue and most calcification apart.
    """

    lower_hu: float = -1000.0
    upper_hu: float = 400.0

    @classmethod
    def from_config(cls, model_config: Mapping[str, Any]) -> HUWindow:
        """The window in ``model.hu_window`` ([lower, upper] HU), or the default when absent."""
        window = model_config.get("hu_window")
        return cls() if window is None else cls(float(window[0]), float(window[1]))

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
