"""The ``train`` config section as a typed object (keys and meanings: lidcvae/schemas/train.yaml)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from lidcvae.config import Section
from lidcvae.data.augment import orientation_moves

__all__ = ["TrainConfig", "GradClip", "Augment"]


@dataclass(frozen=True)
class GradClip(Section):
    """``train.grad_clip``: ``value`` clips each gradient element to ±max, ``norm`` the total L2 norm."""

    SECTION: ClassVar[str] = "train.grad_clip"
    mode: str
    max: float


@dataclass(frozen=True)
class Augment(Section):
    """``train.augment``: random flips along z, y, x and 90° rotations in the axial plane."""

    SECTION: ClassVar[str] = "train.augment"
    flips: bool
    rot90: bool

    @property
    def orientation_count(self) -> int:
        """How many orientations these moves reach, the identity included (16 with both, 1 with neither;
        ``lidcvae.data.augment.orientation_moves``): what an embedding averaged over orientations averages over."""
        return len(orientation_moves(self.flips, self.rot90))


@dataclass(frozen=True)
class TrainConfig(Section):
    """Optimisation, loss weighting, augmentation and runtime settings of one training run.

    Built by ``TrainConfig.from_mapping(section)``; every default is in the schema.
    """

    SECTION: ClassVar[str] = "train"
    seed: int
    epochs: int
    batch_size: int
    lr: float
    betas: tuple[float, float]
    weight_decay: float
    schedule: str
    lr_warmup_steps: int
    min_lr_ratio: float
    beta: float
    free_bits: float
    kl_warmup_steps: int
    grad_clip: GradClip
    augment: Augment
    patch_fit: str
    precision: str
    compile: bool
    deterministic: bool
    device: str
    gpus: int
    cpu_processes: int
    threads: int
    progress: bool

    def kl_weight(self, step: int) -> float:
        """β at optimisation step ``step`` (0-based): linear warm-up from 0 over ``kl_warmup_steps``."""
        if self.kl_warmup_steps <= 0:
            return self.beta
        return self.beta * min(1.0, (step + 1) / self.kl_warmup_steps)

    def resolve_device(self) -> torch.device:
        """``device`` with ``auto`` resolved to CUDA when present."""
        if self.device == "auto":
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        return torch.device(self.device)

    def autocast_dtype(self, device: torch.device) -> torch.dtype | None:
        """bf16 for autocast on GPU under ``auto``/``bf16``; None = full fp32."""
        if self.precision == "fp32" or (self.precision == "auto" and device.type != "cuda"):
            return None
        return torch.bfloat16
