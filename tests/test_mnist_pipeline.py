"""MNIST through the shared stages: configs/mnist.yaml, the common trainer, and the model-size table."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import torch

from lidcvae.experiments.mnist_table import TABLE_COLUMNS, build_size_table, score_model, size_variant_config
from lidcvae.run_config import RunConfig, load_config

REPO_ROOT = Path(__file__).resolve().parents[1]


def _mnist_config(mnist_dir: Path, tmp_path: Path, **overrides) -> RunConfig:
    return load_config(
        REPO_ROOT / "configs" / "mnist.yaml",
        {"mnist.data_dir": str(mnist_dir), "results_dir": str(tmp_path), "train.progress": False, **overrides},
    )


def test_mnist_config_is_the_reference_recipe(mnist_dir, tmp_path):
    config = _mnist_config(mnist_dir, tmp_path)
    model, train = config.model, config.train
    assert (config.dataset, model.name, model.likelihood) == ("mnist", "mlp_vae", "bernoulli")
    assert (model.hidden_sizes, model.latent_size) == ((400,), 20)
    assert (train.batch_size, train.lr, train.schedule) == (128, 0.001, "constant")
    assert config.mnist.table.importance_samples == 1000


def test_common_trainer_lowers_test_loss_on_real_digits(mnist_dir, tmp_path):
    from lidcvae.data import load_split
    from lidcvae.models import build_model
    from lidcvae.train import train
    from lidcvae.train.checkpoint import load_model

    config = _mnist_config(mnist_dir, tmp_path, **{"train.epochs": 4})  # 4 × 62 = 248 steps
    test = load_split(config.mnist, "test").images
    torch.manual_seed(0)
    start = score_model(build_model(config.model), test, 1, config.evaluate.batch_size, config.train.seed, ())["elbo"]
    train(config, tmp_path / "run")
    trained = load_model(tmp_path / "run" / "checkpoints" / "last.pt").model
    end = score_model(trained, test, 1, config.evaluate.batch_size, config.train.seed, ())["elbo"]
    assert start < -500, start  # untrained: ≈ −784·log 2 nats per digit
    assert end > -170, f"test ELBO {start:.1f} → {end:.1f} nats after 248 steps"
    history = pd.read_csv(tmp_path / "run" / "metrics.csv")
    assert history["train_total"].iloc[-1] < 0.8 * history["train_total"].iloc[0]

    # The MNIST report opens on the same headline as the CT one.
    from dataclasses import replace

    from lidcvae.embed import embed_dataset
    from lidcvae.evaluate import evaluate_run, read_data
    from lidcvae.evaluate.headline import RunInfo
    from lidcvae.train.checkpoint import load_model

    digits = replace(config.mnist, limit=3000)  # the report's pieces on fewer digits; the headline counts what was embedded
    checkpoint = tmp_path / "run" / "checkpoints" / "last.pt"
    embedded = len(embed_dataset(checkpoint, digits, tmp_path / "embeddings.parquet", config.embed))
    settings = replace(config.evaluate, iwae_samples=2, projector=False, probe=replace(config.evaluate.probe, bootstrap_samples=5))
    trained = load_model(checkpoint)
    data = read_data(trained.input, tmp_path / "embeddings.parquet", tmp_path / "run" / "metrics.csv", mnist=digits)
    metrics = evaluate_run(trained, data, tmp_path / "evaluate", settings, RunInfo.for_run(config))
    page = (tmp_path / "evaluate" / "report.html").read_text()
    headline = page[page.index('id="headline"'): page.index('<section id="reconstruction"')]
    assert "MNIST digits from" in headline and "MLP VAE, hidden layers [400], latent size 20" in headline
    assert "Bernoulli decoder" in headline and "4 epochs" in headline and f"<td>all</td><td>{embedded}</td>" in headline
    assert metrics["splits"]["test"]["elbo_nats"] > -170 and "IWAE log-likelihood, test (k = 2)" in page
    assert metrics["retrieval"]["label_agreement"] > 2 * metrics["retrieval"]["label_agreement_by_chance"]
    assert metrics["attributes"] == {} and metrics["nodule_error"] == {}


def test_size_variant_resizes_only_the_mlp():
    config = load_config(None, {"name": "mnist", "dataset": "mnist", "model.name": "mlp_vae", "model.hidden_sizes": [400],
                                "model.latent_size": 20, "model.likelihood": "bernoulli"})
    variant = size_variant_config(config, 200, 10, config.mnist.table.hidden_layers)
    assert variant.model.to_dict() == {**config.model.to_dict(), "hidden_sizes": [200], "latent_size": 10}
    assert variant.name == "mnist_h200_z10" and config.model.hidden_sizes == (400,)
    assert variant.train == config.train and variant.mnist == config.mnist


def test_size_table_scores_every_size_and_writes_csv_and_html(mnist_dir, tmp_path):
    overrides = {"train.epochs": 1, "mnist.limit": 512, "mnist.table.test_limit": 64, "mnist.table.importance_samples": 20}
    config = _mnist_config(mnist_dir, tmp_path, **overrides)
    table = build_size_table(config, tmp_path / "table", sizes=[[32, 4], [16, 2]])
    assert list(table.columns) == TABLE_COLUMNS and len(table) == 2
    assert table[["hidden_size", "latent_size"]].values.tolist() == [[32, 4], [16, 2]]
    assert (table["elbo"] < 0).all() and (table["log_likelihood"] < 0).all()
    assert (table["log_likelihood"] >= table["elbo"]).all()  # IWAE_k ≥ ELBO on average over 64 digits
    assert table["mse"].between(0.0, 0.25).all()
    assert pd.read_csv(tmp_path / "table" / "table.csv").shape == (2, len(TABLE_COLUMNS))
    html = (tmp_path / "table" / "table.html").read_text()
    assert "IWAE k=20" in html and "32 / 4" in html and "1 epochs each" in html
    assert "MLE" in html and "lower bound on log p(x)" in html  # the seeds' column, mapped to ours


def test_size_table_with_the_seeds_two_hidden_layers_reports_smaller_k_too(mnist_dir, tmp_path):
    from lidcvae.train.checkpoint import load_model

    overrides = {"train.epochs": 1, "mnist.limit": 512, "mnist.table.test_limit": 64, "mnist.table.importance_samples": 20,
                 "mnist.table.hidden_layers": 2, "mnist.table.nested_samples": [1, 5]}
    table = build_size_table(_mnist_config(mnist_dir, tmp_path, **overrides), tmp_path / "table", sizes=[[32, 4]])
    assert list(table.columns) == TABLE_COLUMNS + ["log_likelihood_k1", "log_likelihood_k5"]
    row = table.iloc[0]
    assert row["hidden_layers"] == 2 and row["train_seconds"] > 0 and row["score_seconds"] > 0
    assert row["log_likelihood_k1"] < row["log_likelihood_k5"] < row["log_likelihood"]  # tightens with k
    model = load_model(tmp_path / "table" / "runs" / "h32_z4" / "checkpoints" / "last.pt").model
    assert [m.out_features for m in model.decoder if isinstance(m, torch.nn.Linear)] == [32, 32, 784]
    assert "IWAE k=5" in (tmp_path / "table" / "table.html").read_text()


def test_table_config_is_the_seeds_model_on_the_standard_split(mnist_dir, tmp_path):
    config = load_config(REPO_ROOT / "configs" / "mnist-table.yaml", {"mnist.data_dir": str(mnist_dir)})
    table = config.mnist.table
    assert config.model.hidden_sizes == (400, 400) and table.hidden_layers == 2
    assert sorted(map(tuple, table.sizes)) == [(200, 20), (400, 10), (400, 20)]
    assert (table.importance_samples, table.nested_samples, table.test_limit) == (100, (1, 10), None)
    assert config.mnist.require_train_files and config.mnist.train_limit is None
    assert (config.train.epochs, config.train.batch_size, config.train.lr) == (10, 128, 0.001)


@pytest.mark.slow
def test_iwae_bound_tightens_with_more_samples(mnist_dir, tmp_path):
    from lidcvae.data import load_split
    from lidcvae.train import train
    from lidcvae.train.checkpoint import load_model

    config = _mnist_config(mnist_dir, tmp_path, **{"train.epochs": 2})
    train(config, tmp_path / "run")
    model = load_model(tmp_path / "run" / "checkpoints" / "last.pt").model
    test = load_split(config.mnist, "test").images[:200]
    scores = score_model(model, test, 100, config.evaluate.batch_size, config.train.seed, [1, 10])
    assert scores["log_likelihood_k1"] < scores["log_likelihood_k10"] < scores["log_likelihood"]
