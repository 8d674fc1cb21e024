"""The ``train`` config section as a typed object (keys and meanings: lidcvae/schemas/train.yaml)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import torch

__all__ = ["TrainConfig"]


@dataclass
class TrainConfig:
    """Optimisation, loss weighting, augmentation and runtime settings of one training run."""

    seed: int = 0
    epochs: int = 20
    batch_size: int = 4
    lr: float = 1e-3
    betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = 0.0
    schedule: str = "cosine"
    lr_warmup_steps: int = 0
    min_lr_ratio: float = 0.05
    beta: float = 1.0
    free_bits: float = 0.0
    kl_warmup_steps: int = 0
    grad_clip: dict[str, Any] = field(default_factory=lambda: {"mode": "value", "max": 1e5})
    augment: dict[str, bool] = field(default_factory=lambda: {"flips": True, "rot90": True})
    patch_fit: str = "crop"
    manifest: str | None = None
    precision: str = "auto"
    compile: bool = False
    deterministic: bool = False
    device: str = "auto"
    gpus: int = 0
    cpu_processes: int = 0
    threads: int = 2
    active_unit_threshold: float = 0.01
    progress: bool = True

    @classmethod
    def from_dict(cls, section: dict[str, Any]) -> TrainConfig:
        """From a validated ``train`` section; unknown keys are an error."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(section) - known
        if unknown:
            raise KeyError(f"train: unknown keys {sorted(unknown)}")
        values = dict(section)
        if "betas" in values:
            values["betas"] = tuple(values["betas"])
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (lists, not tuples) that round-trips through YAML and ``from_dict``."""
        values = dataclasses.asdict(self)
        values["betas"] = list(self.betas)
        return values

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
