"""The CT of a table that names each row's image (FMCIB's ``image_path`` convention), indexed for extraction.

Each distinct ``image_path`` becomes one series of the image index (``volumes.IMAGE_INDEX_COLUMNS``), so the
per-series extraction is the LUNA16 route's: a DICOM series folder is indexed header-only and keeps its
SeriesInstanceUID; a volume file is named by its file name without the suffix (``<parent>_<stem>`` where
two files share a name, plus a hash where that is not enough), a name usable in output paths. A row
whose image is missing or unusable becomes a failure row naming the row and the path.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from pathlib import Path

import pandas as pd
from tqdm.auto import tqdm

from lidcvae.extract.candidates import CT_PATH
from lidcvae.extract.dicom_index import find_dicom_files, index_dicom_files
from lidcvae.extract.manifest import FAILURE_COLUMNS
from lidcvae.extract.volumes import IMAGE_INDEX_COLUMNS, VOLUME_SUFFIXES
from lidcvae.io import UnsafePathError, safe_name

__all__ = ["index_table_images", "volume_keys"]


def _volume_suffix(path: Path) -> str | None:
    return next((s for s in VOLUME_SUFFIXES if path.name.lower().endswith(s) and len(path.name) > len(s)), None)


def _file_name_part(text: str) -> str:
    """``text`` as letters, digits, '.', '_' and '-', starting with a letter or digit ('image' if nothing is left)."""
    return re.sub(r"[^0-9A-Za-z._-]+", "_", text).lstrip("._-")[:120] or "image"


def volume_keys(paths: Iterable[str]) -> dict[str, str]:
    """A distinct series name for each volume file path: its stem, else ``<parent>_<stem>``, else plus a hash."""
    paths = sorted(set(paths))
    stems = {p: _file_name_part(Path(p).name[: -len(_volume_suffix(Path(p)) or "")]) for p in paths}
    keys = {p: stems[p] if list(stems.values()).count(stems[p]) == 1 else f"{_file_name_part(Path(p).parent.name)}_{stems[p]}"
            for p in paths}
    return {p: key if list(keys.values()).count(key) == 1 else f"{key}-{hashlib.sha1(p.encode()).hexdigest()[:10]}"
            for p, key in keys.items()}


def _dicom_series(folder: Path, threads: int) -> tuple[pd.DataFrame, pd.DataFrame, str | None]:
    """(index rows of the folder's one CT series, unreadable files, why not when there is no single series)."""
    files = find_dicom_files(folder)
    if not files:
        return pd.DataFrame(columns=IMAGE_INDEX_COLUMNS), pd.DataFrame(columns=["path", "reason"]), \
            "the folder holds no DICOM (.dcm) file"
    headers, unreadable = index_dicom_files(files, threads, progress=False)
    uids = sorted(headers["series_instance_uid"].dropna().unique())
    if len(uids) > 1:  # a study folder: its one CT series, if it has one
        uids = sorted(headers.loc[headers["modality"] == "CT", "series_instance_uid"].dropna().unique())
    if len(uids) != 1:
        found = sorted(headers["series_instance_uid"].dropna().unique())
        return headers.iloc[:0], unreadable, (f"the folder holds {len(found)} DICOM series"
                                              + (f" ({', '.join(found[:3])}{' ...' if len(found) > 3 else ''})" if found else "")
                                              + "; name one series folder per row")
    try:
        safe_name(uids[0], "SeriesInstanceUID")
    except UnsafePathError as error:
        return headers.iloc[:0], unreadable, str(error)
    return headers[headers["series_instance_uid"] == uids[0]].assign(kind="dicom"), unreadable, None


def index_table_images(candidates: pd.DataFrame, table_name: str = "candidates", threads: int = 4,
                       progress: bool = True) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Index the image each row names (``table_image_path``, absolute) and give the rows its series name.

    Returns:
        ``(candidates, index, unreadable, failures)``: the rows whose image was found, with
        ``series_instance_uid`` set; ``IMAGE_INDEX_COLUMNS`` rows; DICOM files whose header could not be
        read (``path, reason``); and a ``FAILURE_COLUMNS`` row per row whose image is missing or unusable.
    """
    parts, unreadable_parts, series_of, reasons, volumes = [], [], {}, {}, []
    for text in tqdm(sorted(set(candidates[CT_PATH])), desc="index images", unit="image", disable=not progress):
        path = Path(text)
        if path.is_dir():
            headers, unreadable, reasons[text] = _dicom_series(path, threads)
            unreadable_parts.append(unreadable)
            if reasons[text] is None:
                parts.append(headers)
                series_of[text] = headers["series_instance_uid"].iloc[0]
        elif path.is_file() and _volume_suffix(path):
            volumes.append(text)
        elif path.exists():
            reasons[text] = f"not a volume file ({' / '.join(VOLUME_SUFFIXES)}) or a DICOM series folder"
        else:
            reasons[text] = "not found"
    series_of.update(volume_keys(volumes))
    parts.append(pd.DataFrame({"path": volumes, "series_instance_uid": [series_of[p] for p in volumes], "kind": "volume"}))
    index = pd.concat([p for p in parts if len(p)] or [pd.DataFrame(columns=IMAGE_INDEX_COLUMNS)], ignore_index=True)
    unreadable = pd.concat([u for u in unreadable_parts if len(u)] or [pd.DataFrame(columns=["path", "reason"])], ignore_index=True)
    failed = candidates[~candidates[CT_PATH].isin(series_of)]
    failures = pd.DataFrame([{"patient_id": None, "series_instance_uid": None, "nodule_index": int(row["nodule_index"]),
                              "path": row[CT_PATH],
                              "reason": f"{table_name} row {int(row['nodule_index'])}: image_path {row[CT_PATH]}: "
                                        f"{reasons.get(row[CT_PATH]) or 'unusable'}"}
                             for _, row in failed.iterrows()], columns=FAILURE_COLUMNS)
    found = candidates[candidates[CT_PATH].isin(series_of)].copy()
    found["series_instance_uid"] = found[CT_PATH].map(series_of)
    return found.reset_index(drop=True), index.reindex(columns=IMAGE_INDEX_COLUMNS), unreadable, failures
