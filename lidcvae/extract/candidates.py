"""The coordinates table: one row per nodule, its CT and a point in world coordinates (mm).

Two conventions name the CT (``table_convention``):

- LUNA16's ``annotations.csv``: ``seriesuid, coordX, coordY, coordZ``; the series is found by its UID
  under ``images_root``.
- FMCIB's ``get_features``: ``image_path, coordX, coordY, coordZ``; each row names its CT, a volume file
  (``.nrrd``, ``.nii``, ``.nii.gz``, ``.mhd``) or a DICOM series folder, several rows per scan. A
  relative path is taken from the table's folder; no ``images_root`` is needed. The resolved path is
  the manifest's ``table_image_path`` (its ``image_path`` is the patch).

Points are ITK physical space = DICOM patient coordinates (LPS, mm); ``diameter_mm`` is optional.
Columns named like LIDC's characteristics (``malignancy``, ``spiculation`` ...), ``label`` and
``patient_id`` are used as such; any other column is carried through to the manifest. Rows are numbered
from 1 (row N is line N + 1 of a CSV with its header).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from lidcvae.extract.manifest import FAILURE_COLUMNS, MANIFEST_COLUMNS, malignancy_label
from lidcvae.annotations import CHARACTERISTICS

__all__ = ["REQUIRED_COLUMNS", "IMAGE_PATH_COLUMNS", "CT_PATH", "CandidatesError", "read_table", "read_candidates", "check_candidates",
           "table_convention", "table_names_images"]

REQUIRED_COLUMNS = ("seriesuid", "coordX", "coordY", "coordZ")
#: FMCIB's convention: each row names its CT file or DICOM series folder.
IMAGE_PATH_COLUMNS = ("image_path", "coordX", "coordY", "coordZ")
#: The candidates' (and manifest's) column holding a row's resolved ``image_path`` (``image_path`` is the patch's).
CT_PATH = "table_image_path"
_NUMERIC_COLUMNS = ("coordX", "coordY", "coordZ", "diameter_mm", *CHARACTERISTICS)


class CandidatesError(ValueError):
    """The coordinates table cannot be used at all (missing, empty, lacking a column); names the file."""


def read_table(path: Path) -> pd.DataFrame:
    """A coordinates table file as written (CSV: identifiers and numbers kept as text for messages), unchecked."""
    if not path.is_file():
        raise CandidatesError(f"candidates table not found: {path}")
    try:
        if path.suffix.lower() == ".parquet":
            return pd.read_parquet(path)
        return pd.read_csv(path, dtype={c: str for c in (*_NUMERIC_COLUMNS, "seriesuid", "image_path", "patient_id")},
                           skipinitialspace=True)
    except pd.errors.EmptyDataError as error:
        raise CandidatesError(f"{path}: empty file; expected a header row {','.join(REQUIRED_COLUMNS)},diameter_mm "
                              "and one row per nodule") from error
    except Exception as error:  # noqa: BLE001 - pandas/pyarrow raise many types for a damaged table
        raise CandidatesError(f"{path}: not a readable CSV or Parquet table ({type(error).__name__}: {error})") from error


def table_convention(columns: Sequence[str]) -> str:
    """``"image_path"`` when the table names each row's CT (FMCIB), else ``"seriesuid"`` (LUNA16)."""
    return "image_path" if "image_path" in columns else "seriesuid"


def table_names_images(path: str | os.PathLike) -> bool:
    """Whether the table at ``path`` has an ``image_path`` column (its header only; False if unreadable)."""
    path = Path(path)
    try:
        if path.suffix.lower() == ".parquet":
            import pyarrow.parquet as pq

            return table_convention(pq.read_schema(path).names) == "image_path"
        return table_convention(pd.read_csv(path, nrows=0, skipinitialspace=True).columns) == "image_path"
    except Exception:  # noqa: BLE001 - missing or damaged: read_candidates names the problem when it runs
        return False


def _row_failure(row: pd.Series, reason: str, path: Path) -> dict:
    uid = row.get("seriesuid") if isinstance(row.get("seriesuid"), str) and row.get("seriesuid") else None
    return {"patient_id": None, "series_instance_uid": uid, "nodule_index": int(row["nodule_index"]),
            "path": str(path), "reason": f"{path.name} row {int(row['nodule_index'])}: {reason}"}


def _bad_values(row: pd.Series, raw: pd.Series, present: list[str]) -> str | None:
    """Why a row cannot be used, or None."""
    key = table_convention(row.index)
    if not isinstance(row[key], str) or not row[key].strip():
        return f"{key} is empty"
    for column in present:
        required = column in IMAGE_PATH_COLUMNS
        if pd.isna(row[column]) and (required or pd.notna(raw[column])):
            return f"{column} {raw[column]!r} is not a number" if pd.notna(raw[column]) else f"{column} is empty"
        if pd.notna(row[column]) and not np.isfinite(row[column]):
            return f"{column} {raw[column]!r} is not a finite number"
    if "diameter_mm" in present and pd.notna(row["diameter_mm"]) and row["diameter_mm"] < 0:
        return f"diameter_mm {row['diameter_mm']} is negative"
    return None


def read_candidates(path: str | os.PathLike) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Read and check a coordinates table (CSV or Parquet); relative ``image_path`` values are taken
    from its folder.

    Returns:
        ``(candidates, failures)`` as ``check_candidates``.

    Raises:
        CandidatesError: the file is missing, empty, unreadable, has no rows or lacks a required column.
    """
    path = Path(path)
    return check_candidates(read_table(path), path, path.parent)


def check_candidates(raw: pd.DataFrame, source: str | os.PathLike, base_dir: str | os.PathLike) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Check a coordinates table already in memory.

    Args:
        raw: the table, in either convention (module docstring).
        source: its file (or a name), quoted in messages and failure rows.
        base_dir: the folder relative ``image_path`` values are taken from.

    Returns:
        ``(candidates, failures)``: the usable rows with ``nodule_index`` (the row number),
        ``series_instance_uid`` (= ``seriesuid``; empty with ``image_path``, set when the images are
        indexed), ``table_image_path`` (``image_path`` made absolute), ``centroid_{x,y,z}_mm``, numeric
        characteristics, ``label`` and the extra columns; and one ``FAILURE_COLUMNS`` row per unusable
        row, naming it.

    Raises:
        CandidatesError: the table has no rows, lacks a required column or mixes the two conventions.
    """
    path = Path(source)
    key = table_convention(raw.columns)
    if key == "image_path" and "seriesuid" in raw.columns:
        raise CandidatesError(f"{path}: has both seriesuid and image_path columns; keep one convention (seriesuid with "
                              "images_root, as LUNA16, or image_path per row, as FMCIB)")
    required = IMAGE_PATH_COLUMNS if key == "image_path" else REQUIRED_COLUMNS
    missing = [c for c in required if c not in raw.columns]
    if missing:
        raise CandidatesError(f"{path}: missing column(s) {', '.join(missing)} (found: {', '.join(map(str, raw.columns))}); "
                              f"expected {','.join(REQUIRED_COLUMNS)}[,diameter_mm] as in LUNA16's annotations.csv, or "
                              f"{','.join(IMAGE_PATH_COLUMNS)}[,diameter_mm] as FMCIB's get_features takes")
    if raw.empty:
        raise CandidatesError(f"{path}: no rows below the header")
    raw = raw.reset_index(drop=True)
    table = raw.copy()
    table[key] = table[key].map(lambda v: v.strip() if isinstance(v, str) else v)
    present = [c for c in _NUMERIC_COLUMNS if c in table.columns]
    for column in present:
        table[column] = pd.to_numeric(table[column], errors="coerce").astype(float)
    table.insert(0, "nodule_index", np.arange(1, len(table) + 1))
    reasons = [_bad_values(table.loc[i], raw.loc[i], present) for i in table.index]
    failures = pd.DataFrame([_row_failure(table.loc[i], r, path) for i, r in zip(table.index, reasons) if r],
                            columns=FAILURE_COLUMNS)
    good = table[[r is None for r in reasons]].copy()
    if key == "image_path":
        good["image_path"] = [os.path.abspath(Path(base_dir) / Path(p).expanduser()) for p in good["image_path"]]
        good = good.rename(columns={"image_path": CT_PATH}).assign(seriesuid=None)
    return _as_manifest_columns(good), failures


def _as_manifest_columns(table: pd.DataFrame) -> pd.DataFrame:
    """Rename the table's columns to the manifest's; extra columns that collide get a ``table_`` prefix."""
    table = table.rename(columns={"seriesuid": "series_instance_uid", "coordX": "centroid_x_mm",
                                  "coordY": "centroid_y_mm", "coordZ": "centroid_z_mm"})
    own = {"nodule_index", "series_instance_uid", "centroid_x_mm", "centroid_y_mm", "centroid_z_mm", "patient_id",
           "label", *CHARACTERISTICS}
    table = table.rename(columns={c: f"table_{c}" for c in table.columns if c in MANIFEST_COLUMNS and c not in own})
    for column in CHARACTERISTICS:
        if column not in table.columns:
            table[column] = np.nan
    if "label" in table.columns:
        table["label"] = pd.to_numeric(table["label"], errors="coerce").astype("Int64")
    else:
        table["label"] = pd.array([malignancy_label(m) if pd.notna(m) else pd.NA for m in table["malignancy"]], dtype="Int64")
    return table.reset_index(drop=True)
