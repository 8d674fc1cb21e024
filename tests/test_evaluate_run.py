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

FIGURES = {"reconstruction_train", "reconstruction_val", "reconstruction_test", "prior_samples", "interpolation", "loss_curves",
           "kl_per_dimension", "latent_pca", "roc", "retrieval", "attribute_traversals"}


def _run(model, tmp_path, event_shape=(1, 8, 8, 8), count=30, patients=10):
    table = synthetic_table(count, patients)
    images = torch.rand(count, *event_shape, generator=torch.Generator().manual_seed(0))
    masks = torch.zeros(count, *event_shape, dtype=torch.bool)
    masks[..., 3:5, 3:5, 3:5] = True  # a 2×2×2 "nodule" at the centre of each 8³ patch
    splits = {}
    for name in ("train", "val", "test"):
        chosen = torch.tensor((table["split"] == name).to_numpy())
        splits[name] = SplitData(images[chosen], table[table["split"] == name].reset_index(drop=True), masks[chosen])
    embeddings = pd.concat([embed_images(model, s.images, s.table, batch_size=8, device="cpu") for s in splits.values()], ignore_index=True)
    history = pd.DataFrame({"epoch": [1, 2, 3], "train_reconstruction": [9.0, 5, 4], "train_kl": [1.0, 2, 1.5],
                            "epoch_seconds": [1.0, 1.0, 1.5]})
    settings = EvaluateSettings.from_mapping({"batch_size": 4, "iwae_samples": 8, "iwae_chunk_size": 3, "montage_samples": 4,
                                              "prior_samples": 3, "interpolation_steps": 4,
                                              "probe": {"bootstrap_samples": 20, "n_splits": 3}})
    metrics = evaluate_model(model, splits, embeddings, tmp_path, settings, HUWindow(-1000, 400), history,
                             sections_html=[("extra table", "<p id='extra'>x</p>")])
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
    # 4 nodules per split, 4 columns: one row of blocks, each 2 rows × 3 views of 8² voxels; zoom raised from 2 to 12
    # so that a view spans ≥ 96 pixels; 2-voxel gaps inside a block, 6 between blocks, zoomed alike
    z = 12
    assert imread(tmp_path / "figures" / "reconstruction_test.png").shape[:3] == (2 * 8 * z + 2 * z, 4 * (3 * 8 * z + 2 * 2 * z) + 3 * 6 * z, 4)
    for split in ("train", "val", "test"):
        error = metrics["nodule_error"][split]
        assert error["nodules"] == 10 and error["mask_fraction"] == pytest.approx(8 / 512)
        assert error["rmse_inside_hu"] > 0 and error["rmse_outside_hu"] > 0
    assert metrics["training"]["training_seconds"] == 3.5 and "3 epochs" in page
    for section in ("headline", "reconstruction", "latent-space", "probe", "retrieval", "generative", "training", "all-numbers"):
        assert f'id="{section}"' in page


def test_a_collapsed_model_gets_a_loud_warning_in_log_and_report(tmp_path, caplog):
    metrics, page = _run(InputIgnoringVAE((1, 8, 8, 8), latent_size=4), tmp_path)
    assert metrics["collapse"]["active_units"] == 0 and metrics["collapse"]["pca_dims_for_variance"] == 0
    assert any("POSTERIOR COLLAPSE" in w for w in metrics["warnings"])
    assert "POSTERIOR COLLAPSE" in caplog.text
    assert page.index('class="warnings"') < page.index('<section id="reconstruction">')


def test_two_dimensional_images_without_hu_window_are_evaluated_too(tmp_path):
    model = TinyLinearVAE((1, 6, 6), latent_size=2)
    table = synthetic_table(12, 12)
    splits = {"test": SplitData(torch.rand(12, 1, 6, 6), table)}
    settings = EvaluateSettings.from_mapping({"splits": ["test"], "iwae_samples": 4, "montage_samples": 2, "probe": {"enabled": False}})
    metrics = evaluate_model(model, splits, embed_images(model, splits["test"].images, table, batch_size=8, device="cpu"), tmp_path, settings,
                             hu_window=None)  # digits, not CT
    assert "mse_hu2" not in metrics["splits"]["test"] and metrics["probe"] == {"results": {}}
    assert metrics["nodule_error"] == {} and metrics["training"] == {"health": [], "checks": [], "healthy": False}
    page = (tmp_path / "report.html").read_text()
    assert "No training history (metrics.csv) found" in page and "The probe is disabled" in page
    assert not any("HU²" in note for note in metrics["notes"])


def test_a_two_channel_input_gives_its_masks_from_channel_1_and_its_errors_from_channel_0(tmp_path):
    model = TinyLinearVAE((2, 8, 8, 8), latent_size=3)
    table = synthetic_table(12, 6)
    images = torch.rand(12, 2, 8, 8, 8, generator=torch.Generator().manual_seed(1))
    images[:, 1] = 0.0
    images[:, 1, 3:5, 3:5, 3:5] = 1.0  # the consensus mask channel: 8 of 512 voxels
    settings = EvaluateSettings.from_mapping({"splits": ["test"], "iwae_samples": 2, "montage_samples": 2, "projector": False,
                                              "probe": {"enabled": False}})
    metrics = evaluate_model(model, {"test": SplitData(images, table)}, embed_images(model, images, table, batch_size=8, device="cpu"), tmp_path,
                             settings, HUWindow(-1000, 400))
    with torch.no_grad():
        decoded = model.decode(model.encode(images)[0])
    squared = ((images[:, 0] - decoded[:, 0]) ** 2).double()  # the image channel only
    inside = squared[:, 3:5, 3:5, 3:5].reshape(12, -1).mean(dim=1).mean().item()
    error = metrics["nodule_error"]["test"]
    assert error["mask_fraction"] == pytest.approx(8 / 512)
    # the split's MSE (HU²) is the image channel's too: the mask channel's error is no HU
    assert metrics["splits"]["test"]["mse_normalised"] == pytest.approx(squared.mean().item(), rel=1e-5)
    assert metrics["splits"]["test"]["mse_hu2"] == pytest.approx(squared.mean().item() * 1400**2, rel=1e-5)
    assert error["rmse_inside_hu"] == pytest.approx(inside**0.5 * 1400, rel=1e-5)


def test_an_evaluation_that_fails_late_writes_nothing(tmp_path, monkeypatch):
    """Figures are drawn in memory and written with metrics.json and the page at the end: a failure in the
    last part (the generative pictures) leaves no half set of figures beside an old report."""
    import lidcvae.evaluate.run as run

    def fails(*args, **kwargs):
        raise RuntimeError("decoder failed")

    monkeypatch.setattr(run, "generative_pictures", fails)
    with pytest.raises(RuntimeError, match="decoder failed"):
        _run(TinyLinearVAE((1, 8, 8, 8), latent_size=4), tmp_path)
    assert list(tmp_path.iterdir()) == []
