"""Stage 1: LIDC-IDRI DICOM → 64³ isotropic 1 mm nodule patches, a manifest and a failures table."""

from lidcvae.extract.cohort import GeometryMismatchError, extract_cohort, extract_series_part, gather_manifest
from lidcvae.extract.dicom_index import DicomRootError, index_dicom_tree
from lidcvae.extract.manifest import read_manifest
from lidcvae.extract.scan import extract_scan
from lidcvae.extract.settings import ExtractSettings

__all__ = [
    "extract_cohort", "extract_series_part", "gather_manifest", "DicomRootError", "index_dicom_tree",
    "read_manifest", "ExtractSettings", "extract_scan", "GeometryMismatchError",
]
