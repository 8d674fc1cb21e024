"""The benchmark's rows as files: one feature table per row, and the annotation-only rows built from the manifest.

The feature-file convention (what every row's rule writes, what ``benchmark_score.py`` reads):

- ``<row>.parquet``: one row per nodule, a ``nodule_id`` column (the manifest's) and one or more numeric
  feature columns, named freely (``z000`` ..., ``shape_Sphericity`` ...). The row's name is the file stem.
  A nodule absent from the table, or with a non-finite feature, is left out of that row's fit and score.
- ``<row>.json`` beside it: ``{"title": "trained default (VAE μ)", "kind": "model", "skip": ["sphericity"]}``.
  ``title`` is the row's display name in the table; ``kind`` is one of ``KINDS`` (``model``: learned
  features; ``control``: the untrained copy; ``baseline``: no-network image features such as radiomics or
  raw-voxel PCA; ``annotation``: no image at all, read from the readers' annotations); ``skip`` lists the
  target columns (``lidcvae.benchmark.targets``) the row is not scored on because its features contain
  them (the annotation rows holding the readers' ratings skip those ratings; diameter skips log diameter).
  ``unscored`` (only where it applies) says why the row has no features to score at all, e.g. a contrastive
  encoder that a cohort of one train nodule cannot train; every cell of that row is skipped with it as reason.

``write_feature_set`` writes both files (atomically); ``read_feature_set`` reads them back as a ``FeatureRow``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from lidcvae.io import atomic_path, write_parquet

__all__ = [
    "BenchmarkInputError", "KINDS", "DIAMETER_ROW", "RADIOMICS_ROW", "FeatureRow", "write_feature_set", "read_feature_set",
    "annotation_feature_sets", "consensus_diameter_row", "with_diameter",
]

KINDS = ("model", "control", "baseline", "annotation")
DIAMETER_ROW = "consensus_diameter"  # the size-only reference every row is paired against
RADIOMICS_ROW = "radiomics"  # the hand-made shape reference, paired against where the run scores it
SHAPE_RATINGS = ("sphericity", "lobulation", "spiculation", "margin")
DENSITY_RATINGS = ("texture", "calcification", "subtlety", "internalStructure")


class BenchmarkInputError(ValueError):
    """A feature file, its sidecar, the manifest or the rows given cannot be scored; the message names which."""


@dataclass(frozen=True)
class FeatureRow:
    """One row of the table: ``features`` is (N, F) float with ``nodule_id`` (str) as its index; ``unscored``
    is why the row is not scored at all ('' when it is)."""

    name: str
    title: str
    kind: str
    skip: tuple[str, ...]
    features: pd.DataFrame
    unscored: str = ""


def _sidecar(path: Path) -> Path:
    return path.with_suffix(".json")


def write_feature_set(path: str | Path, table: pd.DataFrame, title: str, skip: Iterable[str], kind: str,
                      unscored: str = "") -> Path:
    """Write a row's features to ``path`` (``<row>.parquet``) and its ``<row>.json`` sidecar.

    Args:
        table: ``nodule_id`` plus numeric feature columns, one row per nodule.
        title: display name in the table. skip: target columns not to score. kind: one of ``KINDS``.
        unscored: why the row is not scored at all; '' (the sidecar then has no such key) when it is.

    Raises:
        BenchmarkInputError: no ``nodule_id`` or no feature column, a repeated nodule, a non-numeric column, an unknown kind.
    """
    path = Path(path)
    if path.suffix != ".parquet":
        raise BenchmarkInputError(f"feature file {path} must end in .parquet")
    if kind not in KINDS:
        raise BenchmarkInputError(f"feature set {path.stem}: kind {kind!r} is not one of {', '.join(KINDS)}")
    _check_table(table, path.stem)
    write_parquet(table.reset_index(drop=True), path)
    meta = {"title": str(title), "kind": kind, "skip": sorted(map(str, skip))}
    if unscored:
        meta["unscored"] = str(unscored)
    with atomic_path(_sidecar(path)) as tmp:
        tmp.write_text(json.dumps(meta, indent=1) + "\n")
    return path


def _check_table(table: pd.DataFrame, name: str) -> None:
    if "nodule_id" not in table.columns:
        raise BenchmarkInputError(f"feature set {name} has no nodule_id column")
    features = [c for c in table.columns if c != "nodule_id"]
    if not features:
        raise BenchmarkInputError(f"feature set {name} has no feature column besides nodule_id")
    not_numeric = [str(c) for c in features if not pd.api.types.is_numeric_dtype(table[c])]
    if not_numeric:
        raise BenchmarkInputError(f"feature set {name}: non-numeric feature column(s) {', '.join(not_numeric)}")
    repeated = table["nodule_id"][table["nodule_id"].duplicated()]
    if len(repeated):
        raise BenchmarkInputError(f"feature set {name}: nodule {repeated.iloc[0]} appears more than once")


def read_feature_set(path: str | Path) -> FeatureRow:
    """A row written by ``write_feature_set`` (its sidecar must sit beside it), features indexed by nodule_id."""
    path = Path(path)
    sidecar = _sidecar(path)
    if not path.is_file():
        raise FileNotFoundError(f"feature file not found: {path}")
    if not sidecar.is_file():
        raise FileNotFoundError(f"feature file {path} has no sidecar {sidecar.name} (title, kind, skip)")
    meta = json.loads(sidecar.read_text())
    table = pd.read_parquet(path)
    _check_table(table, path.stem)
    if meta.get("kind") not in KINDS:
        raise BenchmarkInputError(f"{sidecar}: kind {meta.get('kind')!r} is not one of {', '.join(KINDS)}")
    features = table.assign(nodule_id=table["nodule_id"].astype(str)).set_index("nodule_id")
    features = features.apply(pd.to_numeric).astype(np.float64)  # nullable ints/floats: NA → NaN
    return FeatureRow(path.stem, str(meta.get("title", path.stem)), meta["kind"], tuple(meta.get("skip", ())), features,
                      str(meta.get("unscored", "")))


def _log_columns(manifest: pd.DataFrame, logs: dict[str, str], ratings: Iterable[str] = ()) -> pd.DataFrame:
    """``nodule_id`` + ln of each ``logs`` source column (mm) + the ``ratings`` as they are."""
    columns = {"nodule_id": manifest["nodule_id"].astype(str).to_numpy()}
    for name, source in logs.items():
        with np.errstate(divide="ignore", invalid="ignore"):
            columns[name] = np.log(_numeric(manifest[source]))
    for rating in ratings:
        columns[rating] = _numeric(manifest[rating])
    return pd.DataFrame(columns)


def _numeric(column: pd.Series) -> np.ndarray:
    return pd.to_numeric(column, errors="coerce").astype("Float64").to_numpy(np.float64, na_value=np.nan)


def consensus_diameter_row(manifest: pd.DataFrame) -> FeatureRow:
    """ln consensus diameter alone (mm), the size reference; skips log diameter, which it is."""
    table = _log_columns(manifest, {"log_consensus_diameter_mm": "consensus_diameter_mm"})
    return FeatureRow(DIAMETER_ROW, "consensus diameter alone", "annotation", ("log_diameter",),
                      table.set_index("nodule_id"))


def with_diameter(row: FeatureRow, diameter: FeatureRow) -> FeatureRow:
    """``row``'s features with ln consensus diameter beside them (F + 1 columns): does a model's code add to
    size, not only match it. Named ``<row>+diameter``; skips what either part skips (log diameter)."""
    features = row.features.join(diameter.features.add_prefix("size_"), how="left")
    return FeatureRow(f"{row.name}+diameter", f"{row.title} + consensus diameter", row.kind,
                      tuple(sorted({*row.skip, *diameter.skip})), features, row.unscored)


def annotation_feature_sets(manifest: pd.DataFrame) -> dict[str, dict]:
    """The no-image ceiling rows, ``{row: {"table", "title", "skip", "kind"}}``, each ready for ``write_feature_set``.

    Consensus diameter alone (ln ``consensus_diameter_mm``, skips log diameter); where the manifest has the
    render route's ``annotation_diameter_mm`` also the readers' mean diameter alone (ln), + their four
    shape ratings (skipping those targets), and + their four density ratings (skipping those).
    """
    consensus = consensus_diameter_row(manifest)
    sets = {DIAMETER_ROW: {"table": consensus.features.reset_index(), "title": consensus.title,
                           "skip": list(consensus.skip), "kind": "annotation"}}
    if "annotation_diameter_mm" not in manifest.columns:
        return sets
    diameter = {"log_annotation_diameter_mm": "annotation_diameter_mm"}
    for row, title, ratings in (
        ("readers_diameter", "readers' diameter alone", ()),
        ("readers_diameter_shape", "readers' diameter + shape ratings", SHAPE_RATINGS),
        ("readers_diameter_density", "readers' diameter + density ratings", DENSITY_RATINGS),
    ):
        sets[row] = {"table": _log_columns(manifest, diameter, ratings), "title": title, "skip": list(ratings),
                     "kind": "annotation"}
    return sets
