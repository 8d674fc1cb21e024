"""The coordinates table: one row per nodule, a series UID and a point in world coordinates (mm).

The columns are LUNA16's ``annotations.csv``: ``seriesuid, coordX, coordY, coordZ`` (ITK physical
space = DICOM patient coordinates, LPS, mm) and optionally ``diameter_mm``. Columns named like LIDC's
characteristics (``malignancy``, ``spiculation`` ...), ``label`` and ``patient_id`` are used as such;
any other column is carried through to the manifest. Rows are numbered from 1 (row N is line N + 1 of
a CSV with its header).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from lidcvae.extract.manifest import FAILURE_COLUMNS, MANIFEST_COLUMNS, malignancy_label
from lidcvae.lidc import CHARACTERISTICS

__all__ = ["REQUIRED_COLUMNS", "CandidatesError", "read_candidates"]

REQUIRED_COLUMNS = ("seriesuid", "coordX", "coordY", "coordZ")
_NUMERIC_COLUMNS = ("coordX", "coordY", "coordZ", "diameter_mm", *CHARACTERISTICS)


class CandidatesError(ValueError):
    """The coordinates table cannot be used at all (missing, empty, lacking a column); names the file."""


def _read_table(path: Path) -> pd.DataFrame:
    if not path.is_file():
        raise CandidatesError(f"candidates table not found: {path}")
    try:
        if path.suffix.lower() == ".parquet":
            return pd.read_parquet(path)
        return pd.read_csv(path, dtype={c: str for c in (*_NUMERIC_COLUMNS, "seriesuid", "patient_id")}, skipinitialspace=True)
    except pd.errors.EmptyDataError as error:
        raise CandidatesError(f"{path}: empty file; expected a header row {','.join(REQUIRED_COLUMNS)},diameter_mm "
                              "and one row per nodule") from error
    except Exception as error:  # noqa: BLE001 - pandas/pyarrow raise many types for a damaged table
        raise CandidatesError(f"{path}: not a readable CSV or Parquet table ({type(error).__name__}: {error})") from error


def _row_failure(row: pd.Series, reason: str, path: Path) -> dict:
    uid = row["seriesuid"] if isinstance(row["seriesuid"], str) and row["seriesuid"] else None
    return {"patient_id": None, "series_instance_uid": uid, "nodule_index": int(row["nodule_index"]),
            "path": str(path), "reason": f"{path.name} row {int(row['nodule_index'])}: {reason}"}


def _bad_values(row: pd.Series, raw: pd.Series, present: list[str]) -> str | None:
    """Why a row cannot be used, or None."""
    if not isinstance(row["seriesuid"], str) or not row["seriesuid"].strip():
        return "seriesuid is empty"
    for column in present:
        required = column in REQUIRED_COLUMNS
        if pd.isna(row[column]) and (required or pd.notna(raw[column])):
            return f"{column} {raw[column]!r} is not a number" if pd.notna(raw[column]) else f"{column} is empty"
        if pd.notna(row[column]) and not np.isfinite(row[column]):
            return f"{column} {raw[column]!r} is not a finite number"
    if "diameter_mm" in present and pd.notna(row["diameter_mm"]) and row["diameter_mm"] < 0:
        return f"diameter_mm {row['diameter_mm']} is negative"
    return None


def read_candidates(path: str | os.PathLike) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Read and check a coordinates table.

    Returns:
        ``(candidates, failures)``: the usable rows with ``nodule_index`` (the row number),
        ``series_instance_uid`` (= ``seriesuid``), ``centroid_{x,y,z}_mm``, numeric characteristics,
        ``label`` and the extra columns; and one ``FAILURE_COLUMNS`` row per unusable row, naming it.

    Raises:
        CandidatesError: the file is missing, empty, unreadable, has no rows or lacks a required column.
    """
    path = Path(path)
    raw = _read_table(path)
    missing = [c for c in REQUIRED_COLUMNS if c not in raw.columns]
    if missing:
        raise CandidatesError(f"{path}: missing column(s) {', '.join(missing)} (found: {', '.join(map(str, raw.columns))}); "
                              f"expected {','.join(REQUIRED_COLUMNS)}[,diameter_mm] as in LUNA16's annotations.csv")
    if raw.empty:
        raise CandidatesError(f"{path}: no rows below the header")
    raw = raw.reset_index(drop=True)
    table = raw.copy()
    table["seriesuid"] = table["seriesuid"].map(lambda v: v.strip() if isinstance(v, str) else v)
    present = [c for c in _NUMERIC_COLUMNS if c in table.columns]
    for column in present:
        table[column] = pd.to_numeric(table[column], errors="coerce").astype(float)
    table.insert(0, "nodule_index", np.arange(1, len(table) + 1))
    reasons = [_bad_values(table.loc[i], raw.loc[i], present) for i in table.index]
    failures = pd.DataFrame([_row_failure(table.loc[i], r, path) for i, r in zip(table.index, reasons) if r],
                            columns=FAILURE_COLUMNS)
    good = table[[r is None for r in reasons]]
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
