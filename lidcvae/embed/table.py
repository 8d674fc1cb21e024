"""Features of a coordinates table in one call, without a workflow: the table's rows with ``z000…`` columns.

The same code as the workflow's rules: the coordinates route's extraction
(``lidcvae.extract.coordinates.extract_coordinates_cohort``) cut at the checkpoint's own patch geometry,
then ``embed_manifest``'s steps (cohort check, model input, orientation-averaged posterior means). The
table may follow FMCIB's ``get_features`` convention (``image_path, coordX, coordY, coordZ``) or
LUNA16's (``seriesuid, ...`` with ``images_root``); see ``lidcvae.extract.candidates``.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from lidcvae.embed.config import EmbedConfig
from lidcvae.embed.cohort import embed_cohort
from lidcvae.embed.encode import MEAN_PREFIX, latent_column_names
from lidcvae.train.checkpoint import CheckpointMismatch, TrainedModel, load_model

__all__ = ["features_from_table", "FAILURE_COLUMN"]

#: The column that gives why a row has no features (empty for rows that have them).
FAILURE_COLUMN = "failure"


def _read_table(table: pd.DataFrame | str | os.PathLike) -> tuple[pd.DataFrame, Path, Path]:
    """The table as given (a copy), its name in messages and the folder relative image paths are taken from."""
    if isinstance(table, pd.DataFrame):
        return table.copy(), Path("table"), Path.cwd()
    from lidcvae.extract.candidates import read_table

    path = Path(table)
    read_table(path)  # a missing or damaged file is named as the workflow names it
    # Typed as pandas reads it (read_table keeps text for messages); identifiers stay text.
    typed = pd.read_parquet(path) if path.suffix.lower() == ".parquet" else pd.read_csv(
        path, dtype={c: str for c in ("seriesuid", "image_path", "patient_id")}, skipinitialspace=True)
    return typed, path, path.parent


def _extract_settings(trained: TrainedModel, table: pd.DataFrame):
    """The ``extract`` settings that cut patches as the checkpoint's training data was cut."""
    from lidcvae.extract.candidates import CandidatesError
    from lidcvae.extract.settings import ExtractSettings

    record = trained.input
    if record.dataset != "lidc":
        raise CheckpointMismatch(f"checkpoint {trained.path}: trained on dataset {record.dataset!r}, not CT nodule patches")
    if record.needs_mask and "diameter_mm" not in table.columns:
        raise CandidatesError(f"checkpoint {trained.path} takes each nodule's mask (trained on {record.mask_kind} masks) "
                              "and the table has no diameter_mm column: add each nodule's diameter_mm (mm), drawn as a "
                              "sphere around its point")
    settings = {"sphere_mask": record.needs_mask}
    if record.patch_size is not None:
        settings["patch_size"] = int(record.patch_size)
    if record.spacing_mm is not None:
        settings["spacing_mm"] = float(record.spacing_mm)
    return ExtractSettings.from_mapping(settings, source=f"checkpoint {trained.path}")


def _failure_reasons(failures: pd.DataFrame) -> dict[int, str]:
    """Row number → its failure reasons joined by '; '."""
    named = failures.dropna(subset=["nodule_index"])
    return {int(n): "; ".join(group["reason"]) for n, group in named.groupby("nodule_index")}


def features_from_table(table: pd.DataFrame | str | os.PathLike, checkpoint: str | os.PathLike,
                        out_dir: str | os.PathLike | None = None, progress: bool = True, *,
                        ct_root: str | os.PathLike | None = None, embed: EmbedConfig | None = None) -> pd.DataFrame:
    """Embed every nodule of a coordinates table with a trained checkpoint.

    Patches are cut at the checkpoint's own geometry (its input record: patch size, spacing; a model that
    takes masks gets a sphere of each row's ``diameter_mm``), written under ``out_dir`` and encoded to
    posterior means, averaged over the training orientations as the ``embed`` rule does.

    Args:
        table: a DataFrame or a CSV / Parquet path: ``image_path, coordX, coordY, coordZ`` (FMCIB; LPS mm;
            relative paths from the CSV's folder, or the working folder for a DataFrame) or
            ``seriesuid, coordX, coordY, coordZ`` with ``ct_root`` (LUNA16); optional ``diameter_mm``.
        checkpoint: a ``best.pt`` / ``last.pt`` written by lidcvae's training.
        out_dir: where the patches, ``manifest.parquet`` and ``failures.parquet`` go; None: a temporary
            folder, removed before returning.
        progress: show progress bars (tqdm).
        ct_root: the CT folder searched by series UID (the workflow's ``images_root``), for a LUNA16-convention
            table only.
        embed: the typed ``embed`` section (batch size, torch device, orientation averaging); None: the
            schema's defaults (``EmbedConfig.from_mapping({})``).

    Returns:
        The table's rows, in order and with its index, plus ``failure`` (why a row has no features; NA
        when it has them) and ``z000…`` (posterior means; NaN on failed rows).

    Raises:
        CandidatesError: the table cannot be used (missing column; ``diameter_mm`` absent for a model
            that takes masks).
        CheckpointError, CheckpointMismatch: the checkpoint cannot be read or is not a CT model.
    """
    from lidcvae.extract.candidates import check_candidates
    from lidcvae.extract.coordinates import extract_coordinates_cohort

    settings = embed if embed is not None else EmbedConfig.from_mapping({})
    trained = load_model(checkpoint, map_location=settings.device)
    original, name, base_dir = _read_table(table)
    extract_settings = _extract_settings(trained, original)
    check_candidates(original, name, base_dir)  # a table that cannot be used at all fails before any work
    with tempfile.TemporaryDirectory(prefix="lidcvae-features-") as scratch:
        work = Path(out_dir) if out_dir is not None else Path(scratch)
        source = original.reset_index(drop=True) if isinstance(table, pd.DataFrame) else Path(table)  # a file names itself
        manifest, failures = extract_coordinates_cohort(source, ct_root, work, extract_settings, progress)
        latents = embed_cohort(trained, work / "manifest.parquet", settings, progress) if len(manifest) else None
    return _table_with_features(original, latents, _failure_reasons(failures), trained.model.latent_size)


def _table_with_features(original: pd.DataFrame, latents: pd.DataFrame | None, reasons: dict[int, str],
                         latent_size: int) -> pd.DataFrame:
    """``original`` with ``failure`` and the latent columns, matched by row number (``nodule_index``)."""
    names = latent_column_names(latent_size, MEAN_PREFIX)
    values = np.full((len(original), latent_size), np.nan)
    found = set()
    if latents is not None:
        found = set(latents["nodule_index"].astype(int))
        values[latents["nodule_index"].astype(int).to_numpy() - 1] = latents[names].to_numpy(float)
    failure = [None if n in found else reasons.get(n, "not extracted (no failure recorded)")
               for n in range(1, len(original) + 1)]
    features = pd.DataFrame(values, columns=names, index=original.index)
    return pd.concat([original.assign(**{FAILURE_COLUMN: failure}), features], axis=1)
