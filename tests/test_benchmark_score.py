"""The benchmark's scoring on synthetic cohorts: exact metrics, no test leakage, patient-bootstrap intervals,
paired differences, skipped targets, the markdown's n header, and the feature-file round trip."""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import r2_score, roc_auc_score

from lidcvae.benchmark.bootstrap import patient_resamples, weighted_auc, weighted_r2
from lidcvae.benchmark.rows import FeatureRow, annotation_feature_sets, read_feature_set, write_feature_set
from lidcvae.benchmark.score import score_benchmark, score_files
from lidcvae.benchmark.settings import BenchmarkConfig
from lidcvae.benchmark.table import CONTAINS_TARGET, format_markdown, format_number

SCRIPT = Path(__file__).resolve().parents[1] / "pipelines" / "benchmark_score.py"
SETTINGS = BenchmarkConfig.from_mapping({"bootstrap_samples": 200, "inner_folds": 3, "seed": 0})
RATINGS = ("subtlety", "internalStructure", "calcification", "sphericity", "margin", "lobulation", "spiculation",
           "texture", "malignancy")


def synthetic_manifest(n_patients: int, seed: int = 0, nodules_per_patient: int = 2) -> pd.DataFrame:
    """Patients split 60/20/20 in order; malignancy grows with diameter; ratings random 1–5."""
    rng = np.random.default_rng(seed)
    patient = np.repeat(np.arange(n_patients), nodules_per_patient)
    n = len(patient)
    split = np.where(patient < 0.6 * n_patients, "train", np.where(patient < 0.8 * n_patients, "val", "test"))
    diameter = rng.uniform(4, 30, n)
    malignancy = np.clip(np.round(1 + 4 * (diameter - 4) / 26 + rng.normal(0, 0.8, n)), 1, 5)
    table = pd.DataFrame({
        "nodule_id": [f"P{p:04d}_n{i}" for i, p in enumerate(patient)], "patient_id": [f"P{p:04d}" for p in patient],
        "split": split, "consensus_diameter_mm": diameter, "annotation_diameter_mm": diameter * rng.uniform(0.9, 1.1, n),
        **{r: rng.integers(1, 6, n).astype(float) for r in RATINGS}})
    table["malignancy"] = malignancy
    table["label"] = pd.array([1 if m > 3 else 0 if m < 3 else pd.NA for m in malignancy], dtype="Int64")
    return table


def row(name: str, manifest: pd.DataFrame, columns: dict[str, np.ndarray], skip=(), kind="model") -> FeatureRow:
    features = pd.DataFrame(columns, index=manifest["nodule_id"].astype(str)).astype(float)
    features.index.name = "nodule_id"
    return FeatureRow(name, name.replace("_", " "), kind, tuple(skip), features)


def noise_row(name: str, manifest: pd.DataFrame, seed: int) -> FeatureRow:
    rng = np.random.default_rng(seed)
    return row(name, manifest, {f"z{i}": rng.normal(size=len(manifest)) for i in range(3)}, kind="control")


def markdown_cells(line: str) -> list[str]:
    return [text.strip() for text in line.strip().strip("|").split("|")]


def cell(table: pd.DataFrame, row_name: str, target: str) -> pd.Series:
    return table[(table["row"] == row_name) & (table["target"] == target)].iloc[0]


# -- exact metrics --------------------------------------------------------------------------------------

AUC_CASES = [  # (truth, score, AUC): 3 of 4 pairs ordered; a tie counts one half
    ([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8], 0.75),
    ([0, 1, 0, 1], [0.2, 0.2, 0.5, 0.9], 0.625),
    ([1, 1, 0, 0], [0.1, 0.2, 0.3, 0.4], 0.0),
]


@pytest.mark.parametrize("truth, score, expected", AUC_CASES)
def test_auc_is_exact_and_a_weight_counts_as_a_copy(truth, score, expected):
    truth, score = np.array(truth), np.array(score)
    assert weighted_auc(truth, score, np.ones((1, 4)))[0] == pytest.approx(expected, abs=1e-12)
    weights = np.array([[2, 0, 1, 3]])
    copies = np.repeat(np.arange(4), weights[0])
    assert weighted_auc(truth, score, weights)[0] == pytest.approx(roc_auc_score(truth[copies], score[copies]))


def test_r2_is_exact_and_a_weight_counts_as_a_copy():
    truth, predicted = np.array([1.0, 2.0, 3.0, 5.0]), np.array([1.5, 2.0, 2.5, 5.0])
    # Σ(y − ŷ)² = 0.5, Σ(y − ȳ)² = 8.75 (ȳ = 2.75)
    assert weighted_r2(truth, predicted, np.ones((1, 4)))[0] == pytest.approx(1 - 0.5 / 8.75, abs=1e-12)
    weights = np.array([[1, 3, 0, 2]])
    copies = np.repeat(np.arange(4), weights[0])
    assert weighted_r2(truth, predicted, weights)[0] == pytest.approx(r2_score(truth[copies], predicted[copies]))


def test_resampled_auc_is_nan_without_both_classes():
    assert np.isnan(weighted_auc(np.array([0, 1]), np.array([0.3, 0.6]), np.array([[2, 0]]))[0])


# -- fitting never sees the test patients -------------------------------------------------------------------

def test_a_feature_that_encodes_the_target_off_test_only_scores_chance_on_test():
    manifest = synthetic_manifest(200)
    label = manifest["label"].to_numpy(float, na_value=np.nan)
    leaky = np.where(manifest["split"] == "test", np.random.default_rng(1).normal(size=len(manifest)), label)
    leaky = np.nan_to_num(leaky, nan=0.5)
    rows = [row("leaky", manifest, {"a": leaky}), noise_row("untrained", manifest, 2)]
    table = score_benchmark(manifest, rows, "untrained", SETTINGS)
    scored = cell(table, "leaky", "label")
    assert scored["val"] == pytest.approx(1.0)  # the train-only probe reads val perfectly
    assert scored["ci_low"] < 0.5 < scored["ci_high"]
    assert abs(scored["test"] - 0.5) < 0.15


def test_a_feature_equal_to_the_target_scores_perfectly():
    manifest = synthetic_manifest(60)
    rows = [row("exact", manifest, {"s": manifest["sphericity"].to_numpy()}), noise_row("untrained", manifest, 0)]
    table = score_benchmark(manifest, rows, "untrained", SETTINGS)
    assert cell(table, "exact", "sphericity")["test"] > 0.999
    assert cell(table, "consensus_diameter", "label")["test"] > 0.8  # malignancy was made to grow with size


# -- bootstrap and paired differences ------------------------------------------------------------------------

def test_the_interval_holds_the_estimate_and_narrows_with_more_patients():
    widths = []
    for n_patients in (60, 480):
        manifest = synthetic_manifest(n_patients)
        table = score_benchmark(manifest, [noise_row("untrained", manifest, 0)], "untrained", SETTINGS)
        for target in ("label", "log_diameter", "sphericity"):
            scored = cell(table, "untrained" if target != "label" else "consensus_diameter", target)
            assert scored["ci_low"] <= scored["test"] <= scored["ci_high"]
        scored = cell(table, "untrained", "label")  # near chance, where a width goes as 1/√patients
        widths.append(scored["ci_high"] - scored["ci_low"])
    assert widths[1] < 0.6 * widths[0]


def test_resamples_draw_patients_and_are_seeded():
    counts = patient_resamples(30, 50, seed=4)
    assert counts.shape == (50, 30) and (counts.sum(axis=1) == 30).all()
    assert np.array_equal(counts, patient_resamples(30, 50, seed=4))


def test_a_row_paired_with_itself_differs_by_exactly_zero():
    manifest = synthetic_manifest(80)
    table = score_benchmark(manifest, [noise_row("untrained", manifest, 0)], "untrained", SETTINGS)
    for target in ("label", "sphericity", "log_diameter"):
        scored = cell(table, "untrained", target)
        assert (scored["diff_vs_control"], scored["diff_vs_control_ci_low"], scored["diff_vs_control_ci_high"]) == (0, 0, 0)
    diameter = cell(table, "consensus_diameter", "label")
    assert (diameter["diff_vs_diameter"], diameter["diff_vs_diameter_ci_low"], diameter["diff_vs_diameter_ci_high"]) == (0, 0, 0)


def test_every_row_is_paired_against_radiomics_when_the_run_scores_it():
    """The shape goal is judged against pyradiomics by the paired interval: a row reading sphericity exactly
    beats a noisy radiomics row by its R² gap, radiomics against itself is 0, and the markdown has the section."""
    manifest = synthetic_manifest(120)
    rng = np.random.default_rng(3)
    sphericity = manifest["sphericity"].to_numpy()
    rows = [row("exact", manifest, {"s": sphericity}), noise_row("untrained", manifest, 0),
            row("radiomics", manifest, {"s": sphericity + rng.normal(0, 1.5, len(manifest))}, kind="baseline")]
    table = score_benchmark(manifest, rows, "untrained", SETTINGS)
    exact, radiomics = cell(table, "exact", "sphericity"), cell(table, "radiomics", "sphericity")
    assert exact["diff_vs_radiomics"] == pytest.approx(exact["test"] - radiomics["test"], abs=1e-9)
    assert exact["diff_vs_radiomics_ci_low"] > 0.2
    assert (radiomics["diff_vs_radiomics"], radiomics["diff_vs_radiomics_ci_low"]) == (0, 0)
    with_section = format_markdown(table, "untrained", "consensus_diameter", SETTINGS.bootstrap_samples, "radiomics")
    assert "### Row − radiomics" in with_section
    without = score_benchmark(manifest, rows[:2], "untrained", SETTINGS)
    assert without["diff_vs_radiomics"].isna().all()
    assert "### Row − radiomics" not in format_markdown(without, "untrained", "consensus_diameter", 200, "radiomics")


# -- the table -------------------------------------------------------------------------------------------------

def test_a_skipped_target_shows_as_a_dash_and_the_header_gives_n():
    manifest = synthetic_manifest(60)
    rows = [row("shape", manifest, {"s": manifest["sphericity"].to_numpy()}, skip=("sphericity",)),
            noise_row("untrained", manifest, 0)]
    table = score_benchmark(manifest, rows, "untrained", SETTINGS)
    assert cell(table, "shape", "sphericity")["status"] == "skipped"
    markdown = format_markdown(table, "untrained", "consensus_diameter", SETTINGS.bootstrap_samples, "radiomics")
    lines = markdown.splitlines()
    headers = markdown_cells(next(line for line in lines if line.startswith("| row |")))
    shape = markdown_cells(next(line for line in lines if line.startswith("| shape |")))
    assert shape[headers.index("Sphericity (R²)")] == "—"
    test = manifest[manifest["split"] == "test"]
    labelled = test[test["label"].notna()]
    assert (f"Malignancy (median rule) {len(labelled)} nodules / {labelled['patient_id'].nunique()} patients"
            in markdown)
    assert f"Sphericity {len(test)} nodules / {test['patient_id'].nunique()} patients" in markdown
    assert "patient-bootstrap 95 %" in markdown and "AUC: 0.5 chance" in markdown
    assert not re.search(r"−0\.00(?!\d)", markdown)  # no negative zero (−0.002 is a number)
    versus_diameter = markdown.split("### Row − consensus diameter alone")[1].split("##")[0].splitlines()
    untrained = markdown_cells(next(line for line in versus_diameter if line.startswith("| untrained |")))
    assert untrained[headers.index("log diameter (R²)")] == "—"  # diameter skips it: nothing to pair
    assert not any(line.startswith("| consensus diameter alone |") for line in versus_diameter)


def test_a_cohort_with_no_test_patient_still_gives_the_table_every_cell_saying_so():
    manifest = synthetic_manifest(10)  # 6 train, 2 val, 2 test patients; the test ones moved to train
    manifest["split"] = manifest["split"].replace({"test": "train"})
    table = score_benchmark(manifest, [noise_row("untrained", manifest, 0)], "untrained", SETTINGS)
    unscored = table[table["reason"] != CONTAINS_TARGET]
    assert (table["status"] == "skipped").all() and table["test"].isna().all()
    assert unscored["reason"].str.startswith("the test split holds no patient").all()
    assert (unscored["n_test_nodules"] == 0).all() and np.isfinite(cell(table, "untrained", "sphericity")["val"])
    markdown = format_markdown(table, "untrained", "consensus_diameter", SETTINGS.bootstrap_samples, "radiomics")
    assert "every row: the test split holds no patient." in markdown


def test_a_cell_that_cannot_be_scored_says_why_in_the_csv_and_the_markdown():
    manifest = synthetic_manifest(40)
    test = manifest["split"] == "test"
    manifest.loc[test, "label"] = 1  # one class among the test nodules
    manifest.loc[~test, "margin"] = 5.0  # one value to fit on
    untrained = noise_row("untrained", manifest, 0)
    contrastive = FeatureRow("contrastive", "contrastive", "model", (), untrained.features, unscored="not trained: why")
    table = score_benchmark(manifest, [untrained, contrastive], "untrained", SETTINGS)
    label, margin = cell(table, "untrained", "label"), cell(table, "untrained", "margin")
    assert (label["status"], label["reason"]) == ("skipped", f"the {test.sum()} test nodule(s) hold one class only")
    assert np.isnan(label["test"]) and label["n_test_nodules"] == test.sum()
    assert margin["reason"] == f"the {(~test).sum()} train + val nodule(s) hold one value only: nothing to fit"
    sphericity = cell(table, "untrained", "sphericity")
    assert (sphericity["status"], sphericity["reason"]) == ("scored", "")
    assert (table.loc[table["row"] == "contrastive", "reason"] == "not trained: why").all()
    assert (table.loc[table["row"] == "contrastive+diameter", "reason"].isin(["not trained: why", CONTAINS_TARGET])).all()
    markdown = format_markdown(table, "untrained", "consensus_diameter", SETTINGS.bootstrap_samples, "radiomics")
    one_class = f"- Malignancy (median rule) — untrained; consensus diameter alone: the {test.sum()} test nodule(s)"
    assert one_class in markdown
    # its + diameter row is not scored either (log diameter: that row's features contain it)
    assert " — contrastive; contrastive + consensus diameter: not trained: why." in markdown
    assert "- log diameter — contrastive: not trained: why." in markdown


def test_each_model_row_is_followed_by_itself_plus_diameter():
    """``<row>+diameter`` holds the row's features and ln diameter: where the model's code is noise, it reads
    malignancy as diameter alone does, far above the code alone; it is never scored on log diameter."""
    manifest = synthetic_manifest(200)
    code = row("code", manifest, {f"z{i}": np.random.default_rng(i).normal(size=len(manifest)) for i in range(3)})
    table = score_benchmark(manifest, [noise_row("untrained", manifest, 9), code], "untrained", SETTINGS)
    assert list(dict.fromkeys(table["row"])) == ["untrained", "code", "code+diameter", "consensus_diameter"]
    combined, alone, diameter = (cell(table, name, "label") for name in ("code+diameter", "code", "consensus_diameter"))
    assert combined["title"] == "code + consensus diameter" and combined["kind"] == "model"
    assert alone["test"] < 0.65 and combined["test"] > 0.8
    assert combined["test"] == pytest.approx(diameter["test"], abs=0.03)
    assert cell(table, "code+diameter", "log_diameter")["reason"] == CONTAINS_TARGET


def test_one_test_patient_gives_no_score_and_says_so():
    manifest = synthetic_manifest(40)
    manifest.loc[manifest["split"] == "test", "patient_id"] = "P9999"
    sphericity = cell(score_benchmark(manifest, [noise_row("untrained", manifest, 0)], "untrained", SETTINGS),
                      "untrained", "sphericity")
    assert (sphericity["status"], sphericity["n_test_patients"]) == ("skipped", 1)
    assert sphericity["reason"] == "1 test patient (a patient-bootstrap interval needs 2 or more)"


@pytest.mark.parametrize("value, signed, text", [
    (-0.004, True, "−0.004"), (-0.0032, False, "−0.003"), (0.0026, True, "+0.003"), (-0.0004, True, "0.00"),
    (0.0, True, "0.00"), (-0.126, True, "−0.13"), (0.126, True, "+0.13"), (0.5, False, "0.50"), (0.005, True, "+0.01"),
    (float("nan"), False, "n/a")])
def test_numbers_use_a_true_minus_never_negative_zero_and_show_the_side_of_zero(value, signed, text):
    assert format_number(value, signed) == text


# -- files -------------------------------------------------------------------------------------------------------

def test_a_feature_set_round_trips_through_its_files(tmp_path):
    table = pd.DataFrame({"nodule_id": ["a", "b"], "z0": [0.5, 1.5], "n": pd.array([1, pd.NA], dtype="Int64")})
    path = write_feature_set(tmp_path / "latents.parquet", table, "trained default", ["margin"], "model")
    assert json.loads((tmp_path / "latents.json").read_text()) == {"title": "trained default", "kind": "model",
                                                                   "skip": ["margin"]}
    read = read_feature_set(path)
    assert (read.name, read.title, read.kind, read.skip) == ("latents", "trained default", "model", ("margin",))
    assert read.features.loc["a", "z0"] == 0.5 and np.isnan(read.features.loc["b", "n"]) and read.unscored == ""
    write_feature_set(tmp_path / "untrained.parquet", table, "not trained", [], "model", unscored="1 train nodule")
    assert read_feature_set(tmp_path / "untrained.parquet").unscored == "1 train nodule"


@pytest.mark.parametrize("table, kind, message", [
    (pd.DataFrame({"z0": [1.0]}), "model", "no nodule_id"),
    (pd.DataFrame({"nodule_id": ["a", "a"], "z0": [1.0, 2.0]}), "model", "more than once"),
    (pd.DataFrame({"nodule_id": ["a"], "z0": ["x"]}), "model", "non-numeric"),
    (pd.DataFrame({"nodule_id": ["a"], "z0": [1.0]}), "latent", "not one of"),
])
def test_a_bad_feature_set_is_refused_naming_why(tmp_path, table, kind, message):
    with pytest.raises(ValueError, match=message):
        write_feature_set(tmp_path / "row.parquet", table, "row", [], kind)


def test_the_files_give_both_tables_with_the_annotation_rows(tmp_path):
    manifest = synthetic_manifest(60)
    manifest_path = tmp_path / "manifest.parquet"
    manifest.to_parquet(manifest_path)
    paths = [write_feature_set(tmp_path / f"{name}.parquet", spec["table"], spec["title"], spec["skip"], spec["kind"])
             for name, spec in annotation_feature_sets(manifest).items()]
    control = noise_row("untrained", manifest, 0)
    paths.append(write_feature_set(tmp_path / "untrained.parquet", control.features.reset_index(), "untrained copy",
                                   [], "control"))
    table = score_files(manifest_path, paths, "untrained", SETTINGS, tmp_path / "table.md", tmp_path / "table.csv")
    assert set(table["row"]) == {"consensus_diameter", "readers_diameter", "readers_diameter_shape",
                                 "readers_diameter_density", "untrained"}
    assert cell(table, "readers_diameter_shape", "margin")["status"] == "skipped"
    assert cell(table, "readers_diameter", "margin")["status"] == "scored"
    assert pd.read_csv(tmp_path / "table.csv").shape == table.shape
    assert "### Row − untrained copy" in (tmp_path / "table.md").read_text()


# -- the stage script ------------------------------------------------------------------------------------------

def _files(tmp_path, n_patients=40):
    manifest = synthetic_manifest(n_patients)
    manifest.to_parquet(tmp_path / "manifest.parquet")
    control = noise_row("untrained", manifest, 0)
    path = write_feature_set(tmp_path / "untrained.parquet", control.features.reset_index(), "untrained copy", [],
                             "control")
    return tmp_path / "manifest.parquet", path


def test_the_script_writes_both_tables_from_the_command_line(tmp_path):
    manifest, features = _files(tmp_path)
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--manifest", str(manifest), "--features", str(features), "--control", "untrained",
         "--table-md", str(tmp_path / "t.md"), "--table-csv", str(tmp_path / "t.csv"),
         "--set", "benchmark.bootstrap_samples=20"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert set(pd.read_csv(tmp_path / "t.csv")["row"]) == {"untrained", "consensus_diameter"}
    assert "(20 resamples of the test patients)" in (tmp_path / "t.md").read_text()


def test_the_script_under_a_rule_says_a_missing_control_in_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.syspath_prepend(str(SCRIPT.parent))  # as Snakemake and python pipelines/x.py do
    manifest, features = _files(tmp_path)
    spec = importlib.util.spec_from_file_location("benchmark_score", SCRIPT)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    smk = SimpleNamespace(input=SimpleNamespace(manifest=manifest, features=[features]),
                          params=SimpleNamespace(control="trained"), config={"benchmark": {"bootstrap_samples": 20}},
                          output=SimpleNamespace(table_md=tmp_path / "t.md", table_csv=tmp_path / "t.csv"))
    with pytest.raises(SystemExit) as stopped:
        script.run_from_snakemake(smk)
    assert stopped.value.code == 2
    assert capsys.readouterr().err.strip() == "error: the control row 'trained' is not among the rows (untrained)"
