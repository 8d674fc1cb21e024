"""The coordinates route: patches centred on points from a table, in CT found by series UID under
``images_root`` or named by each row's ``image_path`` (``lidcvae.extract.candidates``).

The same 64³ @ 1 mm patches, NIfTI affines, part tables and manifest as the LIDC route
(``lidcvae.extract.scan``), without LIDC XML readings: the centre is the table's point, not a
consensus centroid. In the manifest ``nodule_index`` is the table's row number, ``readers`` and
``scan_id`` are empty, and so are the consensus columns; with ``extract.sphere_mask`` the mask is a ball
of the row's ``diameter_mm`` (otherwise there is no mask and ``mask_path`` is empty).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from lidcvae.extract.candidates import CT_PATH, CandidatesError, check_candidates, read_candidates
from lidcvae.extract.cohort import gather_manifest, scan_part_paths
from lidcvae.extract.manifest import FAILURE_COLUMNS, MANIFEST_COLUMNS
from lidcvae.extract.patches import PatchGrid, cut_hu_patch, write_nifti
from lidcvae.extract.settings import ExtractSettings
from lidcvae.extract.series import SeriesError
from lidcvae.extract.volumes import VOLUME_SUFFIXES, CTVolume, index_images, open_volume
from lidcvae.io import UnsafePathError, raise_if_environment, safe_name, write_parquet

__all__ = ["sphere_mask", "extract_candidates", "unknown_series_failures", "index_coordinates", "extract_coordinates_part",
           "extract_coordinates_cohort"]

log = logging.getLogger(__name__)


def sphere_mask(grid: PatchGrid, diameter_mm: float) -> np.ndarray:
    """(S, S, S) uint8 ball of ``diameter_mm`` centred on the patch centre (voxel centres within the radius)."""
    offsets = [grid.axis_mm(axis) - grid.centre_mm[axis] for axis in (2, 1, 0)]
    zz, yy, xx = np.meshgrid(*offsets, indexing="ij")
    return (zz**2 + yy**2 + xx**2 <= (diameter_mm / 2) ** 2).astype(np.uint8)


def _failure(row: pd.Series, patient_id: str | None, path: str | None, reason: str, table_name: str) -> dict[str, Any]:
    return {"patient_id": patient_id, "series_instance_uid": row["series_instance_uid"], "nodule_index": int(row["nodule_index"]),
            "path": path, "reason": f"{table_name} row {int(row['nodule_index'])}: {reason}"}


def _nodule_row(row: pd.Series, volume: CTVolume, settings: ExtractSettings, out_dir: Path) -> dict[str, Any]:
    """Cut and write one row's patches; its manifest row (paths relative to ``out_dir``)."""
    centre = row[["centroid_x_mm", "centroid_y_mm", "centroid_z_mm"]].to_numpy(float)
    grid = PatchGrid(centre, settings.patch_size, settings.spacing_mm)
    # One slice of margin beyond the cube so interpolation at its faces has both neighbours.
    margin_mm = float(np.max(np.diff(volume.z_mm), initial=1.0))
    stack = volume.slab(grid.axis_mm(2)[0] - margin_mm, grid.axis_mm(2)[-1] + margin_mm)
    patch_hu, coverage, edge = cut_hu_patch(grid, stack.hu, stack.slice_z_mm, volume.y_mm, volume.x_mm, volume.z_mm,
                                            settings.pad_hu, settings.spline_order)
    patient_id = _patient_id(row, volume)
    nodule_id = f"{patient_id}_row{int(row['nodule_index']):05d}"
    patient_dir = Path("patches") / safe_name(patient_id, "patient_id")
    image_path = patient_dir / f"{nodule_id}_image.nii.gz"
    mask_path, mask_coverage = None, np.nan
    write_nifti(patch_hu, grid, out_dir / image_path)
    if settings.sphere_mask:
        mask = sphere_mask(grid, float(row["diameter_mm"]))
        inside = np.zeros_like(mask, dtype=bool)
        inside[np.ix_(*(_inside(grid, axis_mm, a) for a, axis_mm in ((2, volume.z_mm), (1, volume.y_mm), (0, volume.x_mm))))] = True
        mask_coverage = float(inside[mask > 0].mean()) if mask.any() else np.nan
        mask_path = patient_dir / f"{nodule_id}_mask.nii.gz"
        try:
            write_nifti(mask, grid, out_dir / mask_path)
        except BaseException:
            (out_dir / image_path).unlink(missing_ok=True)  # an image without its mask is no patch
            raise
    k_row_col = [float(np.interp(centre[a], axis_mm, index)) for a, axis_mm, index in
                 ((2, volume.z_mm, volume.slice_k), (1, volume.y_mm, np.arange(volume.y_mm.size)),
                  (0, volume.x_mm, np.arange(volume.x_mm.size)))]
    table_columns = {c: row[c] for c in row.index if c not in ("patient_id",)}
    return {
        **table_columns,
        "nodule_id": nodule_id, "patient_id": patient_id, "scan_id": pd.NA, "readers": pd.NA,
        "centroid_k": k_row_col[0], "centroid_row": k_row_col[1], "centroid_col": k_row_col[2],
        "consensus_volume_mm3": np.nan, "consensus_diameter_mm": np.nan,
        "edge": edge, "coverage": coverage, "mask_coverage": mask_coverage,
        "image_path": str(image_path), "mask_path": None if mask_path is None else str(mask_path),
        "mask_kind": "sphere" if mask_path is not None else "none",  # a ball of diameter_mm, or no mask
        "patch_size": settings.patch_size, "spacing_mm": settings.spacing_mm,
    }


def _inside(grid: PatchGrid, volume_axis_mm: np.ndarray, axis: int) -> np.ndarray:
    """(S,) whether each patch position along ``axis`` lies within the volume's voxel-centre range."""
    positions = grid.axis_mm(axis)
    return (positions >= volume_axis_mm[0] - 1e-6) & (positions <= volume_axis_mm[-1] + 1e-6)


def _patient_id(row: pd.Series, volume: CTVolume) -> str:
    """The table's ``patient_id``, else the DICOM PatientID, else the series UID (one patient per scan)."""
    if "patient_id" in row.index and isinstance(row["patient_id"], str) and row["patient_id"].strip():
        return row["patient_id"].strip()
    return volume.patient_id or str(row["series_instance_uid"])


def extract_candidates(files: pd.DataFrame, candidates: pd.DataFrame, out_dir: str | os.PathLike,
                       settings: ExtractSettings, table_name: str = "candidates") -> tuple[pd.DataFrame, pd.DataFrame]:
    """Cut every table row of one series; a problem becomes a failure row naming the row, never an exception.

    Args:
        files: image index rows of the series (``volumes.IMAGE_INDEX_COLUMNS``).
        candidates: the series' rows from ``read_candidates``.
        out_dir: extraction folder; patches land in ``out_dir/patches/<patient>/``.
        settings: extraction settings.
        table_name: the table's file name, quoted in failure reasons.

    Returns:
        ``(nodules, failures)``: manifest rows (no ``split``) and ``FAILURE_COLUMNS`` rows.
    """
    rows, failures = [], []
    try:
        volume = open_volume(files, settings.stored_values_are_hu)
    except Exception as error:  # noqa: BLE001 - SeriesError, or whatever else a damaged file throws
        raise_if_environment(error)
        reason = str(error) if isinstance(error, SeriesError) else f"unexpected {type(error).__name__}: {error}"
        source = str(files["path"].iloc[0])
        failures = [_failure(row, None, source, reason, table_name) for _, row in candidates.iterrows()]
        return pd.DataFrame(rows), pd.DataFrame(failures, columns=FAILURE_COLUMNS)
    # In z order, so neighbouring slabs share the slices they read.
    for _, row in candidates.sort_values(["centroid_z_mm", "nodule_index"]).iterrows():
        point = row[["centroid_x_mm", "centroid_y_mm", "centroid_z_mm"]].to_numpy(float)
        if not volume.contains(point):
            failures.append(_failure(row, volume.patient_id, volume.source,
                                     f"point ({point[0]:.2f}, {point[1]:.2f}, {point[2]:.2f}) mm lies outside its volume "
                                     f"({volume.extent_text()}); coordinates must be world (LPS) mm, as in LUNA16", table_name))
            continue
        if settings.sphere_mask and not (pd.notna(row.get("diameter_mm", np.nan)) and row["diameter_mm"] > 0):
            failures.append(_failure(row, volume.patient_id, volume.source, "extract.sphere_mask needs a positive diameter_mm", table_name))
            continue
        try:
            rows.append(_nodule_row(row, volume, settings, Path(out_dir)))
        except UnsafePathError as error:
            failures.append(_failure(row, None, volume.source, str(error), table_name))
        except SeriesError as error:  # its patch reaches missing slices, or a slice it needs is unusable
            failures.append(_failure(row, volume.patient_id, volume.source, str(error), table_name))
        except Exception as error:  # noqa: BLE001 - keep the series' other rows
            log.exception("row %d: unexpected error", row["nodule_index"])
            failures.append(_failure(row, volume.patient_id, volume.source, f"{type(error).__name__}: {error}", table_name))
    log.info("series %s: %d nodule(s), %d failure(s)", files["series_instance_uid"].iloc[0], len(rows), len(failures))
    return pd.DataFrame(rows), pd.DataFrame(failures, columns=FAILURE_COLUMNS)


def unknown_series_failures(candidates: pd.DataFrame, index: pd.DataFrame, images_root: str | os.PathLike,
                            table_name: str = "candidates") -> pd.DataFrame:
    """One failure row per table row whose series is neither a DICOM series nor a volume file under the root."""
    known = set(index["series_instance_uid"])
    unknown = candidates[~candidates["series_instance_uid"].isin(known)]
    suffixes = " / ".join(VOLUME_SUFFIXES)

    def reason(uid: str) -> str:
        return (f"series {uid} not found under images_root {images_root} (no DICOM series with that SeriesInstanceUID, "
                f"no file named {uid} + {suffixes})")

    return pd.DataFrame([_failure(row, None, None, reason(row["series_instance_uid"]), table_name) for _, row in unknown.iterrows()],
                        columns=FAILURE_COLUMNS)


def index_coordinates(candidates: pd.DataFrame, images_root: str | os.PathLike | None, table_name: str = "candidates",
                      threads: int = 4, progress: bool = True) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Index the CT of ``read_candidates``' rows: each row's ``image_path``, else every image under ``images_root``.

    Returns:
        ``(candidates, index, unreadable, row_failures)``: the rows with their series found (series UID
        set), the image index, unreadable DICOM files, and a failure row per row whose CT is missing.

    Raises:
        CandidatesError: the table names series by UID and ``images_root`` is not set.
        DicomRootError: ``images_root`` is missing or holds no image.
    """
    from lidcvae.extract.table_images import index_table_images

    if CT_PATH in candidates.columns:
        if images_root:
            log.info("%s gives each row's image_path: images_root %s is not searched", table_name, images_root)
        return index_table_images(candidates, table_name, threads, progress)
    if not images_root:
        raise CandidatesError(f"{table_name} names each row's series by seriesuid: set images_root to the folder of CT "
                              f"(DICOM series or <seriesuid>{' / '.join(VOLUME_SUFFIXES)} files), or give the table an "
                              "image_path column (a volume file or DICOM series folder per row)")
    index, unreadable = index_images(images_root, threads=threads, progress=progress)
    return candidates, index, unreadable, unknown_series_failures(candidates, index, images_root, table_name)


def extract_coordinates_part(files: pd.DataFrame, candidates: pd.DataFrame, out_dir: str | os.PathLike,
                             nodules_path: str | os.PathLike, failures_path: str | os.PathLike, settings: ExtractSettings,
                             table_name: str = "candidates") -> None:
    """Extract one series' rows: patches under ``out_dir/patches/``, then its two part tables (failures
    last: the 'done' marker)."""
    nodules, failures = extract_candidates(files, candidates, out_dir, settings, table_name)
    extra = [c for c in nodules.columns if c not in MANIFEST_COLUMNS]
    write_parquet(nodules.reindex(columns=[c for c in MANIFEST_COLUMNS if c != "split"] + extra), nodules_path)
    write_parquet(failures.reindex(columns=FAILURE_COLUMNS), failures_path)


def extract_coordinates_cohort(candidates_path: str | os.PathLike | pd.DataFrame, images_root: str | os.PathLike | None,
                               out_dir: str | os.PathLike, settings: ExtractSettings | None = None,
                               progress: bool = True) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Read the table, index its CT once (``index_coordinates``), extract every series it names, gather the
    manifest (``settings``: the typed ``extract`` section; None takes the schema's defaults).

    ``candidates_path`` may be a DataFrame (named "table" in messages; relative ``image_path`` values
    are then taken from the working folder). ``images_root`` is not needed when the table has ``image_path``.

    Returns:
        ``(manifest, failures)`` as written to ``out_dir``; every table row is in exactly one of them.

    Raises:
        CandidatesError: the table cannot be used at all.
        DicomRootError: ``images_root`` is missing or holds no image.
    """
    settings = settings or ExtractSettings.from_mapping({})
    out_dir = Path(out_dir)
    if isinstance(candidates_path, pd.DataFrame):
        table_name = "table"
        candidates, row_failures = check_candidates(candidates_path, table_name, Path.cwd())
    else:
        table_name = Path(candidates_path).name
        candidates, row_failures = read_candidates(candidates_path)
    candidates, index, unreadable, unknown = index_coordinates(candidates, images_root, table_name, progress=progress)
    write_parquet(index, out_dir / "image_index.parquet")
    row_failures = pd.concat([f for f in (row_failures, unknown) if len(f)] or [row_failures], ignore_index=True)
    files_of = dict(tuple(index.groupby("series_instance_uid")))
    series = sorted(set(candidates["series_instance_uid"]) & set(files_of))
    parts = [scan_part_paths(out_dir, uid) for uid in series]
    for uid in tqdm(series, desc="extract series", unit="series", disable=not progress):
        rows = candidates[candidates["series_instance_uid"] == uid]
        extract_coordinates_part(files_of[uid], rows, out_dir, *scan_part_paths(out_dir, uid), settings, table_name)
    return gather_manifest(parts, out_dir / "manifest.parquet", out_dir / "failures.parquet", settings, unreadable, row_failures)
