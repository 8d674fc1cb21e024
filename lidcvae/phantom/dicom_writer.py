"""Write a volume as a CT Image Storage series, one RLE Lossless file per slice.

The files carry what a real LIDC-IDRI series carries: patient, study and series identity (Study and
Series Instance UIDs from the annotation database), a Frame of Reference, the image plane
(ImagePositionPatient, ImageOrientationPatient, PixelSpacing, SliceThickness, SliceLocation), the
CT Image module (Rescale Intercept -1024, slope 1; 12 bits stored unsigned, as the LIDC scanners
wrote) and a lung window. SOP Instance and Frame of Reference UIDs are derived from the series UID
and the seed, so a rerun writes identical files.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, CTImageStorage, RLELossless, generate_uid

from lidcvae import __version__
from lidcvae.io import atomic_path
from lidcvae.phantom.geometry import PhantomGrid

__all__ = ["SeriesIdentity", "series_folder", "write_ct_series", "write_ct_slice"]

RESCALE_INTERCEPT = -1024
BITS_STORED = 12
CONTENT_DATE = "20000101"  # fixed: the phantom is deterministic


@dataclass(frozen=True)
class SeriesIdentity:
    """Who and what a series is: the database's identity and the phantom's seed."""

    patient_id: str
    study_instance_uid: str
    series_instance_uid: str
    seed: int


def series_folder(root: str | os.PathLike, identity: SeriesIdentity) -> Path:
    """``root/<PatientID>/<StudyInstanceUID>/<SeriesInstanceUID>``: pylidc's own layout."""
    return Path(root) / identity.patient_id / identity.study_instance_uid / identity.series_instance_uid


def _uid(identity: SeriesIdentity, *parts: object) -> str:
    return generate_uid(entropy_srcs=[identity.series_instance_uid, str(identity.seed), *map(str, parts)])


def _series_dataset(identity: SeriesIdentity, geometry: PhantomGrid) -> Dataset:
    """The attributes every slice of the series shares."""
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.SOPClassUID = CTImageStorage
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = CONTENT_DATE
    ds.StudyTime = ds.SeriesTime = ds.ContentTime = "120000"
    ds.AccessionNumber = ""
    ds.Modality = "CT"
    ds.Manufacturer = "lidcvae phantom"
    ds.ReferringPhysicianName = ""
    ds.SeriesDescription = "lidcvae phantom chest CT"
    ds.ManufacturerModelName = "lidcvae"
    ds.SoftwareVersions = __version__
    ds.PatientName = identity.patient_id
    ds.PatientID = identity.patient_id
    ds.PatientBirthDate = ""
    ds.PatientSex = ""
    ds.BodyPartExamined = "CHEST"
    ds.SliceThickness = f"{geometry.slice_thickness_mm:g}"
    ds.KVP = "120"
    ds.PatientPosition = "HFS"
    ds.StudyInstanceUID = identity.study_instance_uid
    ds.SeriesInstanceUID = identity.series_instance_uid
    ds.StudyID = "1"
    ds.SeriesNumber = 1
    ds.AcquisitionNumber = 1
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.FrameOfReferenceUID = _uid(identity, "frame-of-reference")
    ds.PositionReferenceIndicator = ""
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = geometry.rows, geometry.cols
    ds.PixelSpacing = [f"{geometry.pixel_spacing_mm:.10g}"] * 2
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, BITS_STORED, BITS_STORED - 1
    ds.PixelRepresentation = 0
    ds.WindowCenter, ds.WindowWidth = "-600", "1500"
    ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = f"{RESCALE_INTERCEPT}", "1", "HU"
    return ds


def write_ct_slice(
    path: Path, series: Dataset, slice_hu: np.ndarray, k: int, identity: SeriesIdentity, geometry: PhantomGrid
) -> Path:
    """Write slice ``k`` ((rows, cols) int16 HU) of a series, RLE Lossless, atomically."""
    ds = series.copy()
    z_mm = float(geometry.slice_z_mm[k])
    ds.SOPInstanceUID = _uid(identity, "slice", f"{z_mm:.6f}")
    ds.InstanceNumber = k + 1
    x0, y0 = geometry.origin_xy_mm
    ds.ImagePositionPatient = [f"{x0:.6f}", f"{y0:.6f}", f"{z_mm:.6f}"]
    ds.SliceLocation = f"{z_mm:.6f}"
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = RLELossless
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    meta.ImplementationVersionName = f"LIDCVAE_{__version__}"
    ds.file_meta = meta
    stored = (slice_hu.astype(np.int32) - RESCALE_INTERCEPT).clip(0, 2**BITS_STORED - 1).astype(np.uint16)
    ds.compress(RLELossless, stored, encoding_plugin="pydicom", generate_instance_uid=False)
    with atomic_path(path) as tmp:
        ds.save_as(tmp, enforce_file_format=True)
    return path


def write_ct_series(root: str | os.PathLike, volume_hu: np.ndarray, identity: SeriesIdentity, geometry: PhantomGrid) -> Path:
    """Write a (K, rows, cols) int16 HU volume as K files ``<z>.dcm`` under the series folder.

    Returns:
        The series folder.
    """
    folder = series_folder(root, identity)
    series = _series_dataset(identity, geometry)
    for k in range(volume_hu.shape[0]):
        write_ct_slice(folder / f"{geometry.slice_z_mm[k]:.6f}.dcm", series, volume_hu[k], k, identity, geometry)
    return folder
