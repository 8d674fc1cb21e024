"""Radiomics baseline: pyradiomics shape, first-order and GLCM features of each nodule patch.

Read from the extraction's image and consensus-mask NIfTIs (1 mm isotropic HU, mask label 1), with
pyradiomics' defaults otherwise (fixed bin width 25 HU for first-order and GLCM, no resampling, no
filters). These are the hand-crafted features a radiologist-facing pipeline would use; a latent
representation should carry at least as much about the nodule.
"""

from __future__ import annotations

import logging
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd

__all__ = ["FEATURE_CLASSES", "radiomics_features", "radiomics_table"]

FEATURE_CLASSES = ("shape", "firstorder", "glcm")


def _extractor(feature_classes: tuple[str, ...]):
    from radiomics import featureextractor

    logging.getLogger("radiomics").setLevel(logging.ERROR)
    extractor = featureextractor.RadiomicsFeatureExtractor(binWidth=25, label=1, additionalInfo=False)
    extractor.disableAllFeatures()
    for feature_class in feature_classes:
        extractor.enableFeatureClassByName(feature_class)
    return extractor


def radiomics_features(image_path: str | Path, mask_path: str | Path,
                       feature_classes: tuple[str, ...] = FEATURE_CLASSES) -> dict[str, float]:
    """{feature name: value} of one nodule, e.g. ``original_shape_MeshVolume`` (mm³).

    Raises:
        ValueError: naming the mask file, when its mask is empty or pyradiomics rejects the pair.
    """
    import SimpleITK as sitk

    image, mask = sitk.ReadImage(str(image_path)), sitk.ReadImage(str(mask_path))
    if not sitk.GetArrayViewFromImage(mask).any():
        raise ValueError(f"{mask_path}: the consensus mask is empty, no radiomics features")
    try:
        values = _extractor(feature_classes).execute(image, mask)
    except Exception as error:  # pyradiomics raises bare ValueErrors/AssertionErrors without the file
        raise ValueError(f"{mask_path}: pyradiomics failed: {error}") from error
    return {name: float(value) for name, value in values.items() if not name.startswith("diagnostics_")}


def _row(job: tuple[str, str, tuple[str, ...], bool]) -> dict[str, float]:
    image, mask, classes, empty_as_nan = job
    try:
        return radiomics_features(image, mask, classes)
    except ValueError as error:
        if empty_as_nan and "mask is empty" in str(error):
            return {}  # a row of NaN: the nodule has no radiomics features
        raise


def radiomics_table(table: pd.DataFrame, workers: int = 1, feature_classes: tuple[str, ...] = FEATURE_CLASSES,
                    empty_as_nan: bool = False) -> pd.DataFrame:
    """One row per ``table`` row (its ``image_path`` and ``mask_path``), one column per feature of
    ``feature_classes`` (shape alone for rendered nodules, whose density is drawn). ``empty_as_nan``: a
    nodule whose mask patch is empty gets a row of NaN instead of stopping the table.

    Returns:
        DataFrame indexed like ``table``; columns sorted by name, float64.
    """
    pairs = [(image, mask, feature_classes, empty_as_nan)
             for image, mask in zip(table["image_path"].astype(str), table["mask_path"].astype(str))]
    if workers > 1 and len(pairs) > 1:
        with ProcessPoolExecutor(workers) as pool:
            rows = list(pool.map(_row, pairs, chunksize=4))
    else:
        rows = [_row(pair) for pair in pairs]
    features = pd.DataFrame(rows, index=table.index)
    return features[sorted(features.columns)].astype(np.float64)
