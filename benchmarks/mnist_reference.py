#!/usr/bin/env python
"""MNIST: our stages against the well-known recipe, in one run on the same digits, epochs and seed.

The reference below is written to the pytorch/examples VAE (vae/main.py): 784-400-20 MLP, sigmoid
decoder, binary cross-entropy summed over pixels plus the closed-form KL (Kingma & Welling 2014,
appendix B), Adam 1e-3, batch 128, a shuffled DataLoader, and a test pass after every epoch. Ours is
``configs/mnist.yaml`` through ``lidcvae.train.train`` (the pipeline's trainer: checkpoints, metrics,
TensorBoard, per-epoch validation) and scored with ``lidcvae.experiments.mnist_table.score_model``.

Reports test ELBO of both (they must agree within 1 nat: a correctness check), seconds per epoch of
both and their ratio, and the model-size table (ELBO, IWAE k=1000, MSE) with the best log-likelihood.

    python benchmarks/mnist_reference.py [--epochs 30] [--out results/benchmarks/mnist]
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lidcvae.data import load_split  # noqa: E402
from lidcvae.experiments.mnist_table import build_size_table, score_model  # noqa: E402
from lidcvae.run_config import RunConfig, load_config  # noqa: E402
from lidcvae.train import train  # noqa: E402
from lidcvae.train.checkpoint import load_model  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


class ReferenceVAE(nn.Module):
    """pytorch/examples vae/main.py, as published (784-400-20); other sizes change only the widths."""

    def __init__(self, hidden_size: int = 400, latent_size: int = 20) -> None:
        super().__init__()
        self.fc1 = nn.Linear(784, hidden_size)
        self.fc21 = nn.Linear(hidden_size, latent_size)
        self.fc22 = nn.Linear(hidden_size, latent_size)
        self.fc3 = nn.Linear(latent_size, hidden_size)
        self.fc4 = nn.Linear(hidden_size, 784)

    def encode(self, x):
        h1 = F.relu(self.fc1(x))
        return self.fc21(h1), self.fc22(h1)

    def reparameterize(self, mu, logvar):
        std = torch.exp(0.5 * logvar)
        eps = torch.randn_like(std)
        return mu + eps * std

    def decode(self, z):
        h3 = F.relu(self.fc3(z))
        return torch.sigmoid(self.fc4(h3))

    def forward(self, x):
        mu, logvar = self.encode(x.view(-1, 784))
        z = self.reparameterize(mu, logvar)
        return self.decode(z), mu, logvar


def loss_function(recon_x, x, mu, logvar):
    """Reconstruction + KL divergence summed over all elements and the batch (appendix B of the paper)."""
    bce = F.binary_cross_entropy(recon_x, x.view(-1, 784), reduction="sum")
    kld = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())
    return bce + kld


def reference_test_loss(model: ReferenceVAE, test_loader: DataLoader) -> float:
    """The example's test(): mean negative ELBO per digit (one z draw each)."""
    model.eval()
    total = 0.0
    with torch.no_grad():
        for (data,) in test_loader:
            recon_batch, mu, logvar = model(data)
            total += loss_function(recon_batch, data, mu, logvar).item()
    return total / len(test_loader.dataset)


def run_reference(train_images, test_images, epochs: int, seed: int) -> dict:
    """Train the reference for ``epochs`` (train + test pass each epoch, as the example does)."""
    return train_reference(train_images, test_images, epochs, seed)[1]


def train_reference(train_images, test_images, epochs: int, seed: int, hidden_size: int = 400,
                    latent_size: int = 20) -> tuple[ReferenceVAE, dict]:
    """The example's main loop for ``epochs``: the trained model and its test ELBO and timings."""
    torch.manual_seed(seed)
    model = ReferenceVAE(hidden_size, latent_size)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    train_loader = DataLoader(TensorDataset(train_images), batch_size=128, shuffle=True)
    test_loader = DataLoader(TensorDataset(test_images), batch_size=128, shuffle=False)
    train_seconds, started = [], time.perf_counter()
    for _ in range(epochs):
        model.train()
        epoch_started = time.perf_counter()
        for (data,) in train_loader:
            optimizer.zero_grad()
            recon_batch, mu, logvar = model(data)
            loss_function(recon_batch, data, mu, logvar).backward()
            optimizer.step()
        train_seconds.append(time.perf_counter() - epoch_started)
        test_loss = reference_test_loss(model, test_loader)
    wall = time.perf_counter() - started
    torch.manual_seed(seed + 1)
    return model, {"test_elbo": -reference_test_loss(model, test_loader), "last_epoch_test_elbo": -test_loss,
                   "seconds_per_epoch": wall / epochs, "train_loop_seconds_per_epoch": statistics.median(train_seconds)}


def run_ours(config: RunConfig, test_images, run_dir: Path) -> dict:
    """Train through the pipeline's trainer and score with the pipeline's evaluation code."""
    started = time.perf_counter()
    train(config, run_dir)
    wall = time.perf_counter() - started
    import pandas as pd

    metrics = pd.read_csv(run_dir / "metrics.csv")
    model = load_model(run_dir / "checkpoints" / "last.pt").model
    scores = score_model(model, test_images, 1, config.mnist.table.batch_size, config.train.seed + 1, ())
    return {"test_elbo": scores["elbo"], "seconds_per_epoch": wall / config.train.epochs,
            "train_loop_seconds_per_epoch": float(metrics["epoch_seconds"].median())}


def markdown(results: dict) -> str:
    ours, reference, table = results["ours"], results["reference"], results["table"]
    lines = [
        f"Same {results['train_digits']} train / {results['test_digits']} test digits, {results['epochs']} epochs, "
        f"seed {results['seed']}, {results['threads']} CPU threads.",
        "",
        "| | test ELBO (nats) | s / epoch (wall, mean) | s / epoch (train loop only, median) |",
        "| --- | --- | --- | --- |",
        f"| ours (lidcvae.train, configs/mnist.yaml) | {ours['test_elbo']:.2f} | {ours['seconds_per_epoch']:.2f} "
        f"| {ours['train_loop_seconds_per_epoch']:.2f} |",
        f"| reference (pytorch/examples recipe) | {reference['test_elbo']:.2f} | {reference['seconds_per_epoch']:.2f} "
        f"| {reference['train_loop_seconds_per_epoch']:.2f} |",
        f"| ours / reference | Δ = {ours['test_elbo'] - reference['test_elbo']:+.2f} nats | "
        f"{ours['seconds_per_epoch'] / reference['seconds_per_epoch']:.2f}× "
        f"| {ours['train_loop_seconds_per_epoch'] / reference['train_loop_seconds_per_epoch']:.2f}× |",
        "",
        "| hidden / latent | ELBO | log p(x), IWAE k=1000 | MSE |",
        "| --- | --- | --- | --- |",
    ]
    lines += [f"| {r['hidden_size']} / {r['latent_size']} | {r['elbo']:.2f} | {r['log_likelihood']:.2f} | {r['mse']:.4f} |"
              for r in table]
    best = max(table, key=lambda r: r["log_likelihood"])
    lines += ["", f"Best log-likelihood: {best['log_likelihood']:.2f} nats ({best['hidden_size']}/{best['latent_size']})."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path, default=REPO / "configs" / "mnist.yaml")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=REPO / "results" / "benchmarks" / "mnist")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(args.threads)
    config = load_config(args.config, {"train.epochs": args.epochs, "train.seed": args.seed,
                                       "train.threads": args.threads, "train.progress": False,
                                       "mnist.table.test_limit": None})
    train_images, test_images = load_split(config.mnist, "train").images, load_split(config.mnist, "test").images
    results = {"epochs": args.epochs, "seed": args.seed, "threads": args.threads,
               "train_digits": len(train_images), "test_digits": len(test_images)}
    results["reference"] = run_reference(train_images, test_images, args.epochs, args.seed)
    results["ours"] = run_ours(config, test_images, args.out / "ours")
    results["table"] = build_size_table(config, args.out / "table", config.mnist.table.sizes).to_dict(orient="records")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(results, indent=2))
    print(markdown(results))
    gap = abs(results["ours"]["test_elbo"] - results["reference"]["test_elbo"])
    return 0 if gap <= 1.0 else 1


if __name__ == "__main__":
    sys.exit(main())
