"""evaluate_model end to end on a stand-in VAE: metrics.json, every figure, a report with warnings."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import torch
from matplotlib.image import imread
from test_evaluate_standins import InputIgnoringVAE, TinyLinearVAE, synthetic_table

from lidcvae.embed import embed_images
from lidcvae.evaluate import EvaluateSettings, SplitData, evaluate_model
from lidcvae.intensity import HUWindow

FIGURES = {"reconstruction_montage", "prior_samples", "interpolation", "loss_curves", "kl_per_dimension", "latent_pca"}


def _run(model, tmp_path, event_shape=(1, 8, 8, 8), count=30, patients=10):
    table = synthetic_table(count, patients)
    images = torch.rand(count, *event_shape, generator=torch.Generator().manual_seed(0))
    splits = {name: SplitData(images[torch.tensor((table["split"] == name).to_numpy())], table[table["split"] == name].reset_index(drop=True))
              for name in ("train", "val", "test")}
    embeddings = pd.concat([embed_images(model, s.images, s.table) for s in splits.values()], ignore_index=True)
    history = pd.DataFrame({"epoch": [1, 2, 3], "train_reconstruction": [9.0, 5, 4], "train_kl": [1.0, 2, 1.5]})
    settings = EvaluateSettings.from_mapping({"batch_size": 4, "iwae_samples": 8, "iwae_chunk_size": 3, "montage_samples": 4,
                                              "prior_samples": 3, "interpolation_steps": 4,
                                              "probe": {"bootstrap_samples": 20, "n_splits": 3}})
    metrics = evaluate_model(model, splits, embeddings, tmp_path, settings, HUWindow(-1000, 400), history,
                             sections=[("extra table", "<p id='extra'>x</p>")])
    return metrics, (tmp_path / "report.html").read_text()


def test_evaluation_writes_metrics_figures_and_a_report(tmp_path):
    metrics, page = _run(TinyLinearVAE((1, 8, 8, 8), latent_size=4), tmp_path)
    assert json.loads((tmp_path / "metrics.json").read_text()) == metrics
    for split in ("test", "val"):
        assert metrics["splits"][split]["samples"] == 10
        assert metrics["splits"][split]["iwae_log_likelihood_nats"] >= metrics["splits"][split]["elbo_nats"] - 50
        assert metrics["splits"][split]["mse_hu2"] == pytest.approx(metrics["splits"][split]["mse_normalised"] * 1400**2)
    assert len(metrics["collapse"]["kl_per_dimension_nats"]) == 4
    assert set(metrics["probe"]["results"]) >= {"latent_means", "consensus_diameter_mm"}
    assert {p.stem for p in (tmp_path / "figures").glob("*.png")} == FIGURES
    assert page.count("data:image/png;base64,") == len(FIGURES) and "id='extra'" in page
    assert any("window [-1000, 400] HU" in note for note in metrics["notes"]) and "window [-1000, 400] HU" in page
    assert imread(tmp_path / "figures" / "reconstruction_montage.png").shape[:2] == (2 * (2 * 8 + 2), 2 * (4 * 28 + 3 * 6))


def test_a_collapsed_model_gets_a_loud_warning_in_log_and_report(tmp_path, caplog):
    metrics, page = _run(InputIgnoringVAE((1, 8, 8, 8), latent_size=4), tmp_path)
    assert metrics["collapse"]["active_units"] == 0 and metrics["collapse"]["pca_dims_for_variance"] == 0
    assert any("POSTERIOR COLLAPSE" in w for w in metrics["warnings"])
    assert "POSTERIOR COLLAPSE" in caplog.text
    assert page.index('class="warnings"') < page.index("<table>")


def test_two_dimensional_images_without_hu_window_are_evaluated_too(tmp_path):
    model = TinyLinearVAE((1, 6, 6), latent_size=2)
    table = synthetic_table(12, 12)
    splits = {"test": SplitData(torch.rand(12, 1, 6, 6), table)}
    settings = EvaluateSettings.from_mapping({"splits": ["test"], "iwae_samples": 4, "montage_samples": 2, "probe": {"enabled": False}})
    metrics = evaluate_model(model, splits, embed_images(model, splits["test"].images, table), tmp_path, settings)
    assert "mse_hu2" not in metrics["splits"]["test"] and "probe" not in metrics
    assert any("loss curves not drawn" in note for note in metrics["notes"])
    assert not any("HU²" in note for note in metrics["notes"])
