"""The benchmark on real CT: configs/benchmark/lidc.yaml goes from real LIDC-IDRI DICOM to the table.

The cohort is the shared real series: LIDC-IDRI-0001 whole (133 slices, ../shared/data/lidc-whole) and
LIDC-IDRI-0002 (12 slices, nodule cut, ../shared/data/lidc-sample), one nodule each. Split one patient to
train and one to test, nothing can be scored (one nodule to fit, one to test): the run must still reach the
table, count each split's nodules, and say per row and target why a cell has no score.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from lidcvae.benchmark.table import CONTAINS_TARGET

REPO = Path(__file__).resolve().parents[1]
ROWS = {"variant-tiny", "variant-tiny+diameter", "untrained", "consensus_diameter", "raw-pca", "contrastive",
        "contrastive+diameter", "radiomics"}  # no readers_*
DENSITY = {"texture", "calcification", "subtlety", "internalStructure"}
TARGETS = {"label", "sphericity", "lobulation", "spiculation", "margin", "log_diameter", *DENSITY}
# CI size, as configs/benchmark/tiny.yaml on the render route; the split puts one patient in train, one in test.
CI_SIZE = ["extract={split: {train: 0.5, val: 0.0}}",
           "benchmark={variants: [tiny], reference: tiny, contrastive: {enabled: true, epochs: 2, batch_size: 8}, "
           "raw_pca: {crop: 16, components: 4}, bootstrap_samples: 10, inner_folds: 2}"]


@pytest.fixture(scope="module")
def real_dicom_root(shared_data: Path, lidc_sample: Path, tmp_path_factory) -> Path:
    """A DICOM root of links: the whole LIDC-IDRI-0001 series and the sample's LIDC-IDRI-0002."""
    whole = shared_data / "lidc-whole" / "LIDC-IDRI-0001"
    if not whole.is_dir():
        pytest.skip(f"the whole LIDC-IDRI-0001 series is absent: {whole}")
    root = tmp_path_factory.mktemp("lidc-real")
    (root / "LIDC-IDRI-0001").symlink_to(whole)
    (root / "LIDC-IDRI-0002").symlink_to(lidc_sample / "LIDC-IDRI-0002")
    return root


def _test_counts(test: pd.DataFrame, target: str) -> tuple[int, int]:
    """(nodules, patients) of the test split with a value of ``target`` (log diameter: the consensus diameter)."""
    has = test["consensus_diameter_mm" if target == "log_diameter" else target].notna()
    return int(has.sum()), test.loc[has, "patient_id"].nunique()


@pytest.mark.slow
def test_the_lidc_benchmark_goes_from_real_dicom_to_a_table_saying_why_each_cell_is_unscored(real_dicom_root, tmp_path):
    target = "results/benchmark-lidc/benchmark/table.md"  # before --config, which takes every word after it
    command = [sys.executable, "-m", "snakemake", target, "--snakefile", str(REPO / "snakefile"), "--directory",
               str(tmp_path), "--cores", "2", "--configfile", str(REPO / "configs" / "benchmark" / "lidc.yaml"),
               "--config", f"dicom_root={real_dicom_root}", *CI_SIZE]
    run = subprocess.run(command, capture_output=True, text=True, timeout=900, cwd=REPO)
    assert run.returncode == 0, run.stderr[-3000:]
    out = tmp_path / "results" / "benchmark-lidc"
    manifest = pd.read_parquet(out / "extract" / "manifest.parquet")
    assert sorted(manifest["patient_id"]) == ["LIDC-IDRI-0001", "LIDC-IDRI-0002"]
    assert sorted(manifest["split"]) == ["test", "train"]
    test = manifest[manifest["split"] == "test"]

    table = pd.read_csv(out / "benchmark" / "table.csv", keep_default_na=False, na_values=[""])
    assert set(table["row"]) == ROWS and set(table["target"]) == TARGETS  # density targets: density_targets is true
    assert "firstorder" in table.loc[table["row"] == "radiomics", "title"].iloc[0]  # real CT: first-order features too
    assert (table["status"] == "skipped").all() and table["test"].isna().all() and (table["n_val_nodules"] == 0).all()
    contains = table["row"].isin(["consensus_diameter", "variant-tiny+diameter", "contrastive+diameter"]) & (
        table["target"] == "log_diameter")
    assert (table.loc[contains, "reason"] == CONTAINS_TARGET).all()
    contrastive = table["row"].str.startswith("contrastive") & ~contains  # one train nodule: SimCLR has no pair
    assert table.loc[contrastive, "reason"].str.startswith("not trained: the train split holds 1 nodule").all()
    for record in table[~contains & ~contrastive].itertuples():
        assert (record.n_test_nodules, record.n_test_patients) == _test_counts(test, record.target), record
        assert record.reason.startswith("1 test patient (a patient-bootstrap interval needs 2 or more)"), record
        assert "train + val nodule(s) hold one" in record.reason, record

    markdown = (out / "benchmark" / "table.md").read_text()
    assert "Not scored (n/a), why:" in markdown and not re.search(r"\bnan\b", markdown)
    assert "— contrastive (SimCLR, same backbone); contrastive (SimCLR, same backbone) + consensus diameter: not trained" in markdown
