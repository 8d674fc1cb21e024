"""The trainer: metrics and checkpoints on disk, exact resume, NaN guard, and a generic model/dataset path."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml
from test_train_data import make_tiny_config, sample_manifest  # noqa: F401  (fixture)

import lidcvae
from lidcvae.models.conv3d import ConvVAE3d
from lidcvae.posterior import active_units
from lidcvae.run_config import RunConfig
from lidcvae.train import NonFiniteError, TrainConfig, load_model, read_checkpoint, train
from lidcvae.train.config import GradClip
from lidcvae.train.loop import Trainer, lr_schedule
from lidcvae.train.metrics import METRIC_COLUMNS


def _weights(checkpoint_path: Path) -> dict[str, torch.Tensor]:
    return read_checkpoint(checkpoint_path)["model"]


def test_run_dir_holds_config_metrics_tensorboard_and_checkpoints(sample_manifest: Path, tmp_path: Path) -> None:
    config = make_tiny_config(epochs=3)
    best = train(config, tmp_path, manifest=sample_manifest)
    assert best == tmp_path / "checkpoints" / "best.pt" and best.is_file()
    metrics = pd.read_csv(tmp_path / "metrics.csv")
    assert list(metrics.columns) == METRIC_COLUMNS
    assert metrics["epoch"].tolist() == [1, 2, 3]
    assert metrics["step"].tolist() == [3, 6, 9]  # 6 train patches, batch 2
    assert (metrics["train_total"] - metrics["train_reconstruction"] - metrics["train_kl"]).abs().max() < 1e-2
    assert (metrics[["train_auxiliary", "val_auxiliary"]] == 0).all().all()  # the tiny config decodes no histogram
    assert list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))
    checkpoint = read_checkpoint(tmp_path / "checkpoints" / "last.pt")
    assert {"model", "optimizer", "scheduler", "scaler", "rng", "epoch", "step", "best_val_loss", "config"} <= set(checkpoint)
    assert checkpoint["epoch"] == 3 and checkpoint["step"] == 9
    assert checkpoint["input"] == {"lidcvae_version": lidcvae.__version__, "dataset": "lidc", "event_shape": [1, 16, 16, 16],
                                   "patch_size": 64, "spacing_mm": 1.0, "mask_kind": "consensus", "input_size": 16,
                                   "patch_fit": "crop", "hu_window": [-1000.0, 400.0], "mask_channel": False,
                                   "context_voxels": None, "fill_hu": -860.0}
    assert checkpoint["best_val_loss"] == pytest.approx(metrics["val_total"].min(), rel=1e-6)
    trained = load_model(best)
    assert isinstance(trained.model, ConvVAE3d) and not trained.model.training
    assert trained.input.hu_window == (-1000.0, 400.0) and trained.input.event_shape == (1, 16, 16, 16)
    assert trained.model_config.hu_window == (-1000, 400) and trained.train_config.epochs == 3
    assert trained.epoch == int(metrics.loc[metrics["val_total"].idxmin(), "epoch"]) and trained.path == best
    saved_config = trained.config
    saved_yaml = yaml.safe_load((tmp_path / "config.yaml").read_text())
    assert saved_yaml["train"]["epochs"] == 3 and saved_yaml["model"] == saved_config["model"]


@pytest.mark.parametrize("schedule", ["constant", "cosine"])
def test_two_epochs_plus_resume_equals_four_straight(sample_manifest: Path, tmp_path: Path, monkeypatch, schedule) -> None:
    config = make_tiny_config(epochs=4, deterministic=True, schedule=schedule,
                              kl_warmup_steps=5, lr_warmup_steps=2)
    train(config, tmp_path / "straight", manifest=sample_manifest)

    original_end_epoch = Trainer._end_epoch

    def stop_after_two(self, *args, **kwargs):
        original_end_epoch(self, *args, **kwargs)
        if self.epoch == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(Trainer, "_end_epoch", stop_after_two)
    with pytest.raises(KeyboardInterrupt):
        train(config, tmp_path / "resumed", manifest=sample_manifest)
    monkeypatch.setattr(Trainer, "_end_epoch", original_end_epoch)
    assert read_checkpoint(tmp_path / "resumed" / "checkpoints" / "last.pt")["epoch"] == 2
    train(config, tmp_path / "resumed", resume=True, manifest=sample_manifest)

    straight, resumed = _weights(tmp_path / "straight/checkpoints/last.pt"), _weights(tmp_path / "resumed/checkpoints/last.pt")
    assert straight.keys() == resumed.keys()
    for name in straight:
        assert torch.equal(straight[name], resumed[name]), name
    pd.testing.assert_frame_equal(
        pd.read_csv(tmp_path / "straight/metrics.csv").drop(columns=["samples_per_s", "epoch_seconds"]),
        pd.read_csv(tmp_path / "resumed/metrics.csv").drop(columns=["samples_per_s", "epoch_seconds"]))


def test_absurd_learning_rate_stops_with_step_and_term(sample_manifest: Path, tmp_path: Path) -> None:
    config = make_tiny_config(epochs=5, lr=1e12, schedule="constant", grad_clip={"mode": "none"})
    with pytest.raises(NonFiniteError, match=r"step \d+: (reconstruction term|KL term|total loss|gradient norm) is (nan|inf)"):
        train(config, tmp_path, manifest=sample_manifest)
    last = tmp_path / "checkpoints" / "last.pt"
    if last.is_file():  # any checkpoint written before the blow-up holds finite weights
        assert all(torch.isfinite(w).all() for w in _weights(last).values() if w.is_floating_point())


def test_nan_loss_keeps_the_last_good_checkpoint(sample_manifest: Path, tmp_path: Path, monkeypatch) -> None:
    config = make_tiny_config(epochs=2)
    train(config, tmp_path, manifest=sample_manifest)
    good = _weights(tmp_path / "checkpoints/last.pt")

    def nan_likelihood(self, x, decoded):
        return torch.full((x.shape[0],), math.nan) + 0 * decoded.sum()

    monkeypatch.setattr(ConvVAE3d, "log_likelihood", nan_likelihood)
    with pytest.raises(NonFiniteError, match=r"step 6: reconstruction term is nan"):
        train(replace(config, train=replace(config.train, epochs=3)), tmp_path, resume=True, manifest=sample_manifest)
    checkpoint = read_checkpoint(tmp_path / "checkpoints/last.pt")
    assert checkpoint["epoch"] == 2
    assert all(torch.equal(good[name], checkpoint["model"][name]) for name in good)


def test_resume_refuses_a_different_model(sample_manifest: Path, tmp_path: Path) -> None:
    config = make_tiny_config(epochs=1)
    train(config, tmp_path, manifest=sample_manifest)
    changed = replace(config, model=replace(config.model, latent_size=4))
    with pytest.raises(ValueError, match="model section differs"):
        train(changed, tmp_path, resume=True, manifest=sample_manifest)


def test_mnist_mlp_goes_through_the_same_trainer(mnist_dir: Path, tmp_path: Path) -> None:
    config = {"dataset": "mnist", "mnist": {"data_dir": str(mnist_dir), "download": False, "limit": 64},
              "model": {"name": "mlp_vae", "hidden_sizes": [32], "latent_size": 4, "likelihood": "bernoulli",
                        "event_shape": [1, 28, 28]},
              "train": {"epochs": 2, "batch_size": 16, "device": "cpu", "progress": False, "threads": 1,
                        "augment": {"flips": False, "rot90": False}}}
    train(RunConfig.from_mapping(config), tmp_path)
    metrics = pd.read_csv(tmp_path / "metrics.csv")
    assert metrics["train_total"].iloc[-1] < metrics["train_total"].iloc[0]
    assert metrics["train_reconstruction"].iloc[0] < 784 * math.log(2) * 1.5  # Bernoulli nats, not MSE


def test_kl_warmup_and_lr_schedule() -> None:
    config = TrainConfig.from_mapping({"beta": 2.0, "kl_warmup_steps": 4, "lr_warmup_steps": 2, "schedule": "cosine",
                                       "min_lr_ratio": 0.1})
    assert [config.kl_weight(s) for s in range(5)] == [0.5, 1.0, 1.5, 2.0, 2.0]
    multiplier = lr_schedule(config, total_steps=12)
    assert [multiplier(0), multiplier(1), multiplier(2)] == [0.5, 1.0, 1.0]
    assert multiplier(12) == pytest.approx(0.1)
    assert TrainConfig.from_mapping(config.to_dict()) == config


def test_active_units_counts_dimensions_that_vary() -> None:
    means = torch.zeros(100, 3)
    means[:, 0] = torch.linspace(-1, 1, 100)
    means[:, 1] = torch.linspace(-0.05, 0.05, 100)
    assert active_units(means, 0.01) == 1


@pytest.mark.parametrize("grad_clip, expected_max", [({"mode": "value", "max": 0.01}, 0.01), ({"mode": "none"}, None)])
def test_clipping_by_value_bounds_each_gradient(grad_clip: dict, expected_max) -> None:
    from lidcvae.models import ModelConfig, build_model
    from lidcvae.train.step import backward_and_step, loss_terms

    torch.manual_seed(0)
    model = build_model(ModelConfig.from_mapping({"name": "conv_vae3d", "input_size": 16, "latent_size": 8, "channels": [4, 8],
                                                  "strides": [2, 2], "mask_channel": False, "mask_pooling": {"enabled": False}, "histogram_view": {"enabled": False}, "reconstruction_weight": {"kind": "uniform"}}))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)
    terms = loss_terms(model, model, torch.rand(2, 1, 16, 16, 16), beta=1.0, free_bits=0.0)
    reconstruction, kl, auxiliary, total, grad_norm = backward_and_step(terms, model, optimizer, GradClip.from_mapping(grad_clip), step=0)
    largest = max(p.grad.abs().max().item() for p in model.parameters() if p.grad is not None)
    assert auxiliary == 0.0  # no histogram view
    assert total == pytest.approx(reconstruction + kl, rel=1e-6) and grad_norm > 1.0
    if expected_max is None:
        assert largest > 1.0
    else:
        assert largest == pytest.approx(expected_max)


def test_clipping_by_norm_rescales_the_total_norm() -> None:
    from lidcvae.models import ModelConfig, build_model
    from lidcvae.train.step import backward_and_step, loss_terms

    model = build_model(ModelConfig.from_mapping({"name": "conv_vae3d", "input_size": 16, "latent_size": 8, "channels": [4, 8],
                                                  "strides": [2, 2], "mask_channel": False, "mask_pooling": {"enabled": False}, "histogram_view": {"enabled": False}, "reconstruction_weight": {"kind": "uniform"}}))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)
    terms = loss_terms(model, model, torch.rand(2, 1, 16, 16, 16), beta=1.0, free_bits=0.0)
    *_, grad_norm_before = backward_and_step(terms, model, optimizer, GradClip.from_mapping({"mode": "norm", "max": 2.0}), step=0)
    after = torch.nn.utils.get_total_norm([p.grad for p in model.parameters() if p.grad is not None])
    assert grad_norm_before > 2.0 and after.item() == pytest.approx(2.0, rel=1e-4)
