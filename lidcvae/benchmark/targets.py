"""What the benchmark predicts, read from the cohort manifest.

- malignancy, median rule: the manifest's ``label`` (readers' median > 3 → 1, < 3 → 0, = 3 → NA); AUC.
- malignancy, LUNA16-style rule: ``luna16_label`` where the manifest has it (the render route); AUC.
- sphericity, lobulation, spiculation, margin: the readers' median rating (1–5); ridge, R².
- log diameter: ln of ``consensus_diameter_mm``; ridge, R².
- with ``density_targets`` (real CT only; the render route draws density blind to them): texture,
  calcification, subtlety, internal structure (medians); ridge, R².
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from lidcvae.benchmark.rows import BenchmarkInputError
from lidcvae.evaluate.representation import Target

__all__ = ["SHAPE_TARGETS", "DENSITY_TARGETS", "benchmark_targets", "target_values"]

MALIGNANCY_TARGETS = (
    Target("label", "binary", "Malignancy (median rule)"),
    Target("luna16_label", "binary", "Malignancy (LUNA16 rule)"),
)
SHAPE_TARGETS = (
    Target("sphericity", "ordinal", "Sphericity"),
    Target("lobulation", "ordinal", "Lobulation"),
    Target("spiculation", "ordinal", "Spiculation"),
    Target("margin", "ordinal", "Margin"),
    Target("log_diameter", "ordinal", "log diameter"),
)
DENSITY_TARGETS = (
    Target("texture", "ordinal", "Texture"),
    Target("calcification", "ordinal", "Calcification"),
    Target("subtlety", "ordinal", "Subtlety"),
    Target("internalStructure", "ordinal", "Internal structure"),
)
# Targets computed from a manifest column rather than read as they are.
_DERIVED = {"log_diameter": ("consensus_diameter_mm", np.log)}


def _source(target: Target) -> str:
    return _DERIVED[target.column][0] if target.column in _DERIVED else target.column


def benchmark_targets(manifest: pd.DataFrame, density_targets: bool) -> list[Target]:
    """The targets this manifest can be scored on (``luna16_label`` only where the column exists).

    Raises:
        BenchmarkInputError: a required column (``label``, a shape rating, ``consensus_diameter_mm``, a density
            rating when ``density_targets``) is missing, naming it.
    """
    targets = [t for t in MALIGNANCY_TARGETS if t.column != "luna16_label" or "luna16_label" in manifest.columns]
    targets += list(SHAPE_TARGETS) + (list(DENSITY_TARGETS) if density_targets else [])
    missing = [_source(t) for t in targets if _source(t) not in manifest.columns]
    if missing:
        raise BenchmarkInputError(f"the manifest has no column {', '.join(missing)} (needed by the benchmark's targets)")
    return targets


def target_values(manifest: pd.DataFrame, target: Target) -> np.ndarray:
    """(N,) float values of ``target`` in manifest order; NaN where the nodule has none (e.g. label = NA)."""
    values = pd.to_numeric(manifest[_source(target)], errors="coerce").astype("Float64")
    values = values.to_numpy(dtype=np.float64, na_value=np.nan)
    if target.column in _DERIVED:
        with np.errstate(divide="ignore", invalid="ignore"):
            values = _DERIVED[target.column][1](values)
    return np.where(np.isfinite(values), values, np.nan)
