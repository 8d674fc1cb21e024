"""The ``embed`` config section as a typed object (keys and meanings: lidcvae/schemas/embed.yaml)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from lidcvae.config import Section

__all__ = ["EmbedConfig"]


@dataclass(frozen=True)
class EmbedConfig(Section):
    """The ``embed`` config section (lidcvae/schemas/embed.yaml): encoder batch size, torch device, whether
    a 3D patch's code averages its trained orientations, and an optional checkpoint trained elsewhere (set:
    training is skipped)."""

    SECTION: ClassVar[str] = "embed"
    batch_size: int
    device: str
    average_orientations: bool
    checkpoint: str | None
