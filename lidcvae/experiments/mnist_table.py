"""The seeds' MNIST model-size table: ELBO, importance-sampled log-likelihood and reconstruction MSE.

Each row is one (hidden, latent) size of the MLP VAE (``mnist.table.hidden_layers`` hidden layers of
that width on each side) trained through the common trainer with the same budget (the config's ``train``
section: epochs, batch size, learning rate, seed) and scored on the test digits: the ELBO (one-sample
reconstruction term, closed-form KL), the IWAE bound with k importance samples (Burda et al. 2016, arXiv
1509.00519) as the log-likelihood estimate, the same bound at smaller k from the first of those draws
(how far it tightens with k), and the per-pixel squared error of the decoder mean at the posterior mean.

The seeds' "MLE" column ("marginal likelihood estimate, by importance sampling") is this IWAE estimate:
log p(x) ≈ log (1/k) Σᵢ p(x|zᵢ) p(zᵢ) / q(zᵢ|x), zᵢ ~ q(z|x), a lower bound in expectation that rises
towards log p(x) as k grows (k = 1 is a one-sample ELBO).
"""

from __future__ import annotations

import html
import logging
import os
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from lidcvae.io import atomic_path
from lidcvae.models.base import VAE
from lidcvae.run_config import RunConfig

__all__ = ["TABLE_COLUMNS", "size_variant_config", "score_model", "train_size_variant", "build_size_table", "table_html"]

logger = logging.getLogger(__name__)

#: Always present; ``log_likelihood_k<k>`` columns follow for each k of ``mnist.table.nested_samples``.
TABLE_COLUMNS = [
    "hidden_size", "latent_size", "hidden_layers", "elbo", "log_likelihood", "mse", "importance_samples",
    "test_digits", "train_seconds", "score_seconds",
]


def size_variant_config(run: RunConfig, hidden_size: int, latent_size: int, hidden_layers: int) -> RunConfig:
    """``run`` with the MLP resized to ``hidden_layers`` (``mnist.table.hidden_layers``) hidden layers of
    ``hidden_size`` (each side) and ``latent_size``."""
    model = replace(run.model, name="mlp_vae", hidden_sizes=(hidden_size,) * hidden_layers, latent_size=latent_size)
    return replace(run, model=model, name=f"{run.name}_h{hidden_size}_z{latent_size}")


@torch.no_grad()
def score_model(
    model: VAE,
    images: torch.Tensor,
    importance_samples: int,
    batch_size: int,
    seed: int,
    nested_samples: Sequence[int],
) -> dict[str, float]:
    """Test-set means of ELBO and IWAE log-likelihood (nats per digit) and reconstruction MSE (per pixel).

    Args:
        model: a trained VAE (put in eval mode here).
        images: (N, *event_shape) test digits in [0, 1].
        importance_samples: k of the IWAE estimate (k = 1000 in the seeds' table).
        batch_size: digits scored together (the table: ``mnist.table.batch_size``); the noise is drawn per
            batch, so the same seed gives the same numbers only at the same batch size.
        seed: seed of the sampling noise, so a rerun gives the same numbers (the table: ``train.seed``).
        nested_samples: smaller k also reported, as ``log_likelihood_k<k>``, from the first k of the
            same draws (free: no extra decoder passes); ``mnist.table.nested_samples``, or () for none.

    Returns:
        ``elbo``, ``log_likelihood`` (IWAE at ``importance_samples``), ``mse`` and ``log_likelihood_k<k>``
        for each nested k; log-likelihoods in nats per digit (higher is better), MSE per pixel in [0, 1]².
    """
    from lidcvae.evaluate.likelihood import elbo_terms, nested_iwae_log_likelihoods

    model.eval()
    generator = torch.Generator().manual_seed(seed)
    counts = sorted({*map(int, nested_samples), importance_samples})
    elbo, mse, log_likelihood = [], [], {k: [] for k in counts}
    for batch in images.split(batch_size):
        noise = torch.randn((len(batch), model.latent_size), generator=generator)
        elbo.append(elbo_terms(model, batch, noise).elbo)
        for k, estimate in nested_iwae_log_likelihoods(model, batch, counts, chunk_size=100, generator=generator).items():
            log_likelihood[k].append(estimate)
        reconstruction = model.mean_image(model.decode(model.encode(batch)[0]))
        mse.append(((reconstruction - batch) ** 2).flatten(1).mean(dim=1))
    scores = {
        "elbo": float(torch.cat(elbo).mean()),
        "log_likelihood": float(torch.cat(log_likelihood[importance_samples]).mean()),
        "mse": float(torch.cat(mse).mean()),
    }
    scores.update({f"log_likelihood_k{k}": float(torch.cat(log_likelihood[k]).mean()) for k in map(int, nested_samples)})
    return scores


def train_size_variant(run: RunConfig, run_dir: str | os.PathLike) -> VAE:
    """Train one size variant with the common trainer into ``run_dir``; return its last-epoch model."""
    from lidcvae.train import train
    from lidcvae.train.checkpoint import load_model

    run_dir = Path(run_dir)
    train(run, run_dir)
    model = load_model(run_dir / "checkpoints" / "last.pt").model
    return model


def build_size_table(
    run: RunConfig,
    out_dir: str | os.PathLike,
    sizes: Sequence[Sequence[int]],
) -> pd.DataFrame:
    """Train and score every size in ``sizes`` (``mnist.table.sizes``) on ``run``'s MNIST digits.

    Writes ``out_dir/table.csv`` and ``out_dir/table.html`` (a fragment for the report), each
    atomically; each size's training run lives in ``out_dir/runs/h<hidden>_z<latent>/``.

    Returns:
        One row per size with ``TABLE_COLUMNS``.
    """
    from lidcvae.data import load_split

    table_settings = run.mnist.table
    out_dir = Path(out_dir)
    test = load_split(run.mnist, "test").images
    if table_settings.test_limit:
        test = test[: table_settings.test_limit]
    layers, nested = table_settings.hidden_layers, table_settings.nested_samples
    rows = []
    for hidden_size, latent_size in sizes:
        variant = size_variant_config(run, hidden_size, latent_size, layers)
        started = time.perf_counter()
        model = train_size_variant(variant, out_dir / "runs" / f"h{hidden_size}_z{latent_size}")
        trained = time.perf_counter()
        scores = score_model(model, test, table_settings.importance_samples, table_settings.batch_size, run.train.seed, nested)
        logger.info("MNIST %d/%d: %s", hidden_size, latent_size, scores)
        rows.append({"hidden_size": hidden_size, "latent_size": latent_size, "hidden_layers": layers, **scores,
                     "importance_samples": table_settings.importance_samples, "test_digits": len(test),
                     "train_seconds": trained - started, "score_seconds": time.perf_counter() - trained})
    table = pd.DataFrame(rows, columns=TABLE_COLUMNS + [f"log_likelihood_k{k}" for k in nested])
    _write_table(table, run.train.epochs, out_dir)
    return table


def table_html(table: pd.DataFrame, epochs: int | None) -> str:
    """An HTML fragment (heading, note, table) for the report; values rounded as in the seeds. ``epochs``
    (``train.epochs``) is named in the note; None leaves it out."""
    nested = [c for c in table.columns if c.startswith("log_likelihood_k")]
    names = ["hidden / latent", "ELBO", f"log p(x), IWAE k={_k(table)}", "MSE"] + [f"IWAE k={c[16:]}" for c in nested]
    header = "".join(f"<th>{html.escape(name)}</th>" for name in names)
    body = "".join(
        f"<tr><td>{row['hidden_size']} / {row['latent_size']}</td><td>{row['elbo']:.3f}</td>"
        f"<td>{row['log_likelihood']:.3f}</td><td>{row['mse']:.4f}</td>"
        + "".join(f"<td>{row[c]:.3f}</td>" for c in nested) + "</tr>"
        for row in table.to_dict(orient="records")
    )
    budget = f"{epochs} epochs each, " if epochs else ""
    layers = int(table["hidden_layers"].iloc[0]) if len(table) else 1
    note = (
        f"MLP VAE sizes ({layers} hidden layer{'s' if layers > 1 else ''} each side) trained with the same budget"
        f" ({budget}same seed and optimiser), scored on {_digits(table)} test digits: ELBO and log p(x) in nats per"
        " digit (higher is better; the IWAE estimate at smaller k uses the first k of the same draws) and the"
        " per-pixel squared error of the decoder mean (lower is better). The seeds' \"MLE\" column is this"
        " importance-sampled estimate: log p(x) ≈ log (1/k) Σ p(x|zᵢ)p(zᵢ)/q(zᵢ|x), a lower bound on log p(x)"
        " in expectation that rises towards it as k grows (k = 1 is a one-sample ELBO); compare it with the"
        " IWAE column, not with the ELBO."
    )
    return f"<h2>MNIST model sizes</h2><p>{html.escape(note)}</p><table><tr>{header}</tr>{body}</table>"


def _k(table: pd.DataFrame) -> str:
    return str(int(table["importance_samples"].iloc[0])) if len(table) else "?"


def _digits(table: pd.DataFrame) -> str:
    return str(int(table["test_digits"].iloc[0])) if len(table) else "0"


def _write_table(table: pd.DataFrame, epochs: int, out_dir: Path) -> None:
    with atomic_path(out_dir / "table.csv") as tmp:
        table.to_csv(tmp, index=False, float_format=lambda v: np.format_float_positional(v, precision=6))
    with atomic_path(out_dir / "table.html") as tmp:
        tmp.write_text(table_html(table, epochs), encoding="utf-8")
