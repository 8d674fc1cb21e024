"""The seeds' MNIST model-size table: ELBO, importance-sampled log-likelihood and reconstruction MSE.

Each row is one (hidden, latent) size of the MLP VAE trained through the common trainer with the same
budget (the config's ``train`` section: epochs, batch size, learning rate, seed) and scored on the test
digits: the ELBO (one-sample reconstruction term, closed-form KL), the IWAE bound with k importance
samples (Burda et al. 2016, arXiv 1509.00519) as the log-likelihood estimate, and the per-pixel squared
error of the decoder mean at the posterior mean.
"""

from __future__ import annotations

import copy
import html
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from lidcvae.io import atomic_path
from lidcvae.models.base import VAE

__all__ = ["TABLE_COLUMNS", "size_variant_config", "score_model", "train_size_variant", "build_size_table", "table_html"]

logger = logging.getLogger(__name__)

TABLE_COLUMNS = ["hidden_size", "latent_size", "elbo", "log_likelihood", "mse", "importance_samples", "test_digits"]


def size_variant_config(config: Mapping[str, Any], hidden_size: int, latent_size: int) -> dict[str, Any]:
    """A copy of ``config`` with the MLP resized to one hidden layer of ``hidden_size`` and ``latent_size``."""
    variant = copy.deepcopy(dict(config))
    variant["model"] = {**variant.get("model", {}), "name": "mlp_vae", "hidden_sizes": [hidden_size], "latent_size": latent_size}
    variant["name"] = f"{config.get('name', 'mnist')}_h{hidden_size}_z{latent_size}"
    return variant


@torch.no_grad()
def score_model(
    model: VAE, images: torch.Tensor, importance_samples: int = 1000, batch_size: int = 100, seed: int = 0
) -> dict[str, float]:
    """Test-set means of ELBO and IWAE log-likelihood (nats per digit) and reconstruction MSE (per pixel).

    Args:
        model: a trained VAE (put in eval mode here).
        images: (N, *event_shape) test digits in [0, 1].
        importance_samples: k of the IWAE estimate (k = 1000 in the seeds' table).
        batch_size: digits scored together.
        seed: seed of the sampling noise, so a rerun gives the same numbers.
    """
    from lidcvae.evaluate.likelihood import elbo_terms, iwae_log_likelihood

    model.eval()
    generator = torch.Generator().manual_seed(seed)
    elbo, log_likelihood, mse = [], [], []
    for batch in images.split(batch_size):
        noise = torch.randn((len(batch), model.latent_size), generator=generator)
        elbo.append(elbo_terms(model, batch, noise).elbo)
        log_likelihood.append(iwae_log_likelihood(model, batch, importance_samples, chunk_size=100, generator=generator))
        reconstruction = model.mean_image(model.decode(model.encode(batch)[0]))
        mse.append(((reconstruction - batch) ** 2).flatten(1).mean(dim=1))
    return {
        "elbo": float(torch.cat(elbo).mean()),
        "log_likelihood": float(torch.cat(log_likelihood).mean()),
        "mse": float(torch.cat(mse).mean()),
    }


def train_size_variant(config: Mapping[str, Any], run_dir: str | os.PathLike) -> VAE:
    """Train one size variant with the common trainer into ``run_dir``; return its last-epoch model."""
    from lidcvae.train import train
    from lidcvae.train.checkpoint import load_model

    run_dir = Path(run_dir)
    train(dict(config), run_dir)
    model, _ = load_model(run_dir / "checkpoints" / "last.pt")
    return model


def build_size_table(
    config: Mapping[str, Any],
    out_dir: str | os.PathLike,
    sizes: Sequence[Sequence[int]] | None = None,
) -> pd.DataFrame:
    """Train and score every size in ``sizes`` (default ``config['mnist']['table']['sizes']``).

    Writes ``out_dir/table.csv`` and ``out_dir/table.html`` (a fragment for the report), each
    atomically; each size's training run lives in ``out_dir/runs/h<hidden>_z<latent>/``.

    Returns:
        One row per size with ``TABLE_COLUMNS``.
    """
    from lidcvae.data import load_split

    table_settings = config["mnist"]["table"]
    out_dir = Path(out_dir)
    test = load_split(dict(config), "test").images
    if table_settings.get("test_limit"):
        test = test[: table_settings["test_limit"]]
    rows = []
    for hidden_size, latent_size in sizes or table_settings["sizes"]:
        variant = size_variant_config(config, hidden_size, latent_size)
        model = train_size_variant(variant, out_dir / "runs" / f"h{hidden_size}_z{latent_size}")
        scores = score_model(model, test, table_settings["importance_samples"], seed=config["train"].get("seed", 0))
        logger.info("MNIST %d/%d: %s", hidden_size, latent_size, scores)
        rows.append({"hidden_size": hidden_size, "latent_size": latent_size, **scores,
                     "importance_samples": table_settings["importance_samples"], "test_digits": len(test)})
    table = pd.DataFrame(rows, columns=TABLE_COLUMNS)
    _write_table(table, config, out_dir)
    return table


def table_html(table: pd.DataFrame, epochs: int | None = None) -> str:
    """An HTML fragment (heading, note, table) for the report; values rounded as in the seeds."""
    header = "".join(f"<th>{name}</th>" for name in ("hidden / latent", "ELBO", f"log p(x), IWAE k={_k(table)}", "MSE"))
    body = "".join(
        f"<tr><td>{row.hidden_size} / {row.latent_size}</td><td>{row.elbo:.3f}</td>"
        f"<td>{row.log_likelihood:.3f}</td><td>{row.mse:.4f}</td></tr>"
        for row in table.itertuples()
    )
    budget = f"{epochs} epochs each, " if epochs else ""
    note = (
        f"MLP VAE sizes trained with the same budget ({budget}same seed and optimiser), scored on "
        f"{_digits(table)} test digits: nats per digit (higher is better) and per-pixel squared error."
    )
    return f"<h2>MNIST model sizes</h2><p>{html.escape(note)}</p><table><tr>{header}</tr>{body}</table>"


def _k(table: pd.DataFrame) -> str:
    return str(int(table["importance_samples"].iloc[0])) if len(table) else "?"


def _digits(table: pd.DataFrame) -> str:
    return str(int(table["test_digits"].iloc[0])) if len(table) else "0"


def _write_table(table: pd.DataFrame, config: Mapping[str, Any], out_dir: Path) -> None:
    with atomic_path(out_dir / "table.csv") as tmp:
        table.to_csv(tmp, index=False, float_format=lambda v: np.format_float_positional(v, precision=6))
    with atomic_path(out_dir / "table.html") as tmp:
        tmp.write_text(table_html(table, config["train"].get("epochs")), encoding="utf-8")
