"""What a model sees: one typed record of how data becomes its input, stored once in its checkpoint.

For CT the record joins three homes of the facts: the extraction manifest the model trained on (patch
edge and spacing, what the mask is), the ``model`` section (input edge, HU window, mask channel,
context) and ``train.patch_fit``. The patch geometry is read from the manifest, never from the config's
``extract`` section: a model trained with ``train_vae.py --manifest`` on another extraction records
that extraction's geometry. Embed and evaluate hold a cohort against the record field by field
(``cohort_differences``) and prepare its patches from it (``lidcvae.data.PatchSource.for_input``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import pandas as pd

__all__ = ["ModelInput", "MASK_KINDS", "manifest_geometry", "cohort_differences"]

#: What a manifest's ``mask_path`` files hold: the readers' 50 % consensus, a ball of the table's
#: ``diameter_mm`` (the coordinates route's ``extract.sphere_mask``), or no mask at all.
MASK_KINDS = ("consensus", "sphere", "none")


@dataclass(frozen=True)
class ModelInput:
    """How one input of a model is made (units in the names: voxels, mm, HU).

    Attributes:
        dataset: ``lidc`` (CT nodule patches) or ``mnist``.
        event_shape: one input without the batch axis, e.g. (2, 32, 32, 32) or (1, 28, 28).
        lidcvae_version: the library that trained the model.
        patch_size: voxels per edge of the extracted patches it trained on (None: MNIST, or a hand-made
            manifest that does not record it).
        spacing_mm: their isotropic voxel spacing, mm (None likewise).
        mask_kind: what the training manifest's masks were (``MASK_KINDS``; None for MNIST).
        input_size: S, the model's input edge in voxels (patches cropped or resampled to S³).
        patch_fit: ``crop`` or ``resample`` (``train.patch_fit``).
        hu_window: (lower, upper) HU mapped linearly to [0, 1].
        mask_channel: the mask is input channel 1.
        context_voxels: None for the whole patch; r: the image only within r voxels of the mask.
        fill_hu: HU of every voxel outside the kept region.
    """

    dataset: str
    event_shape: tuple[int, ...] | None
    lidcvae_version: str
    patch_size: int | None
    spacing_mm: float | None
    mask_kind: str | None
    input_size: int | None
    patch_fit: str | None
    hu_window: tuple[float, float] | None
    mask_channel: bool
    context_voxels: int | None
    fill_hu: float | None

    @classmethod
    def for_training(cls, dataset: str, model: Any, patch_fit: str, manifest: str | os.PathLike | None) -> ModelInput:
        """The record of a run about to train ``model`` (a typed model section) on ``manifest`` (CT)."""
        import lidcvae

        if dataset == "mnist":
            shape = tuple(int(v) for v in model.event_shape) if model.event_shape else None
            return cls("mnist", shape, lidcvae.__version__, None, None, None, None, None, None, False, None, None)
        size = int(model.input_size)
        patch_size, spacing_mm, mask_kind = manifest_geometry(pd.read_parquet(manifest)) if manifest else (None, None, None)
        nodule_only = model.context.kind == "nodule"
        return cls(dataset, (2 if model.mask_channel else 1, size, size, size), lidcvae.__version__, patch_size, spacing_mm,
                   mask_kind, size, patch_fit, (float(model.hu_window[0]), float(model.hu_window[1])),
                   bool(model.mask_channel), int(model.context.dilate_voxels) if nodule_only else None,
                   float(model.context.fill_hu))

    def to_dict(self) -> dict[str, Any]:
        """Plain types (lists, not tuples), as the checkpoint stores it."""
        return {key: list(value) if isinstance(value, tuple) else value for key, value in asdict(self).items()}

    @classmethod
    def from_dict(cls, stored: Mapping[str, Any]) -> ModelInput:
        """Inverse of ``to_dict``."""
        values = dict(stored)
        for key in ("event_shape", "hu_window"):
            if values.get(key) is not None:
                values[key] = tuple(values[key])
        return cls(**values)

    @property
    def needs_mask(self) -> bool:
        """Whether each input needs the nodule's mask file (mask channel or nodule-only context)."""
        return self.mask_channel or self.context_voxels is not None


def _distinct(manifest: pd.DataFrame, column: str) -> list:
    return sorted(manifest[column].dropna().unique().tolist()) if column in manifest.columns else []


def manifest_geometry(manifest: pd.DataFrame) -> tuple[int | None, float | None, str | None]:
    """(patch_size voxels, spacing_mm, mask_kind) of a manifest's patches; None where it does not record one.

    Raises:
        ValueError: the manifest mixes patch sizes or spacings (no single model input fits them).
    """
    sizes, spacings = _distinct(manifest, "patch_size"), _distinct(manifest, "spacing_mm")
    if len(sizes) > 1 or len(spacings) > 1:
        raise ValueError(f"the manifest mixes patch sizes {sizes} or spacings {spacings} mm; extract it again")
    kinds = _distinct(manifest, "mask_kind")
    if not kinds and "mask_path" in manifest.columns:  # manifests from before the mask_kind column
        has_mask = manifest["mask_path"].map(lambda p: isinstance(p, str) and bool(p))
        kinds = ["consensus" if has_mask.all() else "none" if not has_mask.any() else "mixed"]
    return (int(sizes[0]) if sizes else None, float(spacings[0]) if spacings else None,
            "+".join(kinds) if kinds else None)


def cohort_differences(trained: ModelInput, cohort: pd.DataFrame) -> list[str]:
    """Every way a cohort's patches differ from those the model trained on, in words; [] when they fit.

    A field the cohort's manifest does not record is not compared; a cohort whose rows lack mask files
    is a difference only when the model needs them.
    """
    import lidcvae

    if trained.dataset != "lidc":
        return [f"the model was trained on dataset {trained.dataset!r}, not CT nodule patches"]
    differences = []
    sizes, spacings = _distinct(cohort, "patch_size"), _distinct(cohort, "spacing_mm")
    if trained.patch_size is not None and sizes and sizes != [trained.patch_size]:
        differences.append(f"patch_size: checkpoint {trained.patch_size} voxels, cohort {[int(s) for s in sizes]}")
    if trained.spacing_mm is not None and any(abs(float(s) - trained.spacing_mm) > 1e-6 for s in spacings):
        differences.append(f"spacing_mm: checkpoint {trained.spacing_mm} mm, cohort {[float(s) for s in spacings]}")
    if trained.needs_mask and "mask_path" in cohort.columns:
        missing = int((~cohort["mask_path"].map(lambda p: isinstance(p, str) and bool(p))).sum())
        if missing:
            differences.append(f"masks: the checkpoint's model takes each nodule's mask (mask channel or nodule-only "
                               f"context; trained on {trained.mask_kind} masks) but {missing} of {len(cohort)} cohort "
                               "rows have no mask_path (on the coordinates route, with a diameter_mm column, add "
                               '--config "extract={sphere_mask: true}": a ball of diameter_mm as each mask)')
    if tuple(trained.lidcvae_version.split(".")[:2]) != tuple(lidcvae.__version__.split(".")[:2]):
        differences.append(f"lidcvae version: checkpoint {trained.lidcvae_version}, installed {lidcvae.__version__}")
    return differences

