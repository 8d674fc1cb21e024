#!/usr/bin/env python
"""The seeds' MNIST table on the standard 60,000 / 10,000 split, beside the seed's and the recipe's numbers.

Three columns per metric, one row per hidden/latent size (400/20, 200/20, 400/10):

- *seed*: the published numbers (``shared/seeds/003_07b56efb0f40c06e.txt``, "有关 VAE 的探索", 表 4-1:
  a 784-h-h-z MLP VAE, BCE summed, Adam, 10 epochs; its "MLE" column is a marginal-likelihood estimate by
  importance sampling, k not stated);
- *ours*: ``configs/mnist-table.yaml`` through ``lidcvae.experiments.mnist_table.build_size_table`` (the seed's
  architecture and budget, trained by ``lidcvae.train.train``, scored on all 10,000 test digits with the
  config's IWAE k and the smaller k from the first of the same draws); then the first size's model
  (400/20) is scored again at k = 1, 10, 100, ``--tighten-samples`` (1000): how far the estimate tightens;
- *recipe*: the pytorch/examples VAE (``benchmarks/mnist_reference.py``: one hidden layer each side, its
  own training loop) trained with the same epochs, seed and digits; its weights are copied into
  ``MLPVAE`` so it is scored by the same ``score_model`` with the same k.

Ours and the recipe run side by side in two processes of ``--threads`` torch threads each.
ELBO and log p(x) in nats per digit (higher is better), MSE per pixel on [0, 1] grey levels (lower is
better). Prints Markdown tables and the run time of every part; writes OUT/results.json.

    nice -n 5 python benchmarks/mnist_seed_table.py [--epochs 10] [--tighten-samples 1000] [--threads 1]
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import multiprocessing
import logging
import os
import platform
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from mnist_reference import ReferenceVAE, train_reference  # noqa: E402

from lidcvae.data import load_split  # noqa: E402
from lidcvae.experiments.mnist_table import build_size_table, score_model  # noqa: E402
from lidcvae.models import ModelConfig  # noqa: E402
from lidcvae.models.mlp import MLPVAE  # noqa: E402
from lidcvae.workflow.cli import config_from_args  # noqa: E402

REPO = Path(__file__).resolve().parents[1]

#: 表 4-1 of the seed article: (hidden, latent) → (ELBO, "MLE", MSE). Model 1 = 400/20, Model 2 = hidden
#: reduced to 200, Model 3 = latent reduced to 10.
SEED_TABLE = {
    (400, 20): {"elbo": -104.675, "log_likelihood": -98.331, "mse": 0.0163},
    (200, 20): {"elbo": -118.023, "log_likelihood": -106.975, "mse": 0.0224},
    (400, 10): {"elbo": -113.538, "log_likelihood": -104.684, "mse": 0.0207},
}


def recipe_as_mlp_vae(reference: ReferenceVAE) -> MLPVAE:
    """The same weights in ``MLPVAE`` (decoder returns logits, not sigmoid probabilities) for ``score_model``."""
    hidden, latent = reference.fc1.out_features, reference.fc21.out_features
    model = MLPVAE.from_config(ModelConfig.from_mapping({"name": "mlp_vae", "hidden_sizes": [hidden], "latent_size": latent,
                                                         "likelihood": "bernoulli", "event_shape": [1, 28, 28]}))
    pairs = [(model.encoder[1][0], reference.fc1), (model.to_mean, reference.fc21), (model.to_logvar, reference.fc22),
             (model.decoder[0], reference.fc3), (model.decoder[2], reference.fc4)]
    with torch.no_grad():
        for ours, theirs in pairs:
            ours.weight.copy_(theirs.weight)
            ours.bias.copy_(theirs.bias)
    return model.eval()


def run_recipe(config, threads: int) -> list[dict]:
    """Train the recipe at every size of the table and score it like ours (same k, same seed)."""
    torch.set_num_threads(threads)
    table_settings, seed = config.mnist.table, config.train.seed
    train_images, test_images = load_split(config.mnist, "train").images, load_split(config.mnist, "test").images
    rows = []
    for hidden, latent in table_settings.sizes:
        started = time.perf_counter()
        reference, stats = train_reference(train_images, test_images, config.train.epochs, seed, hidden, latent)
        trained = time.perf_counter()
        scores = score_model(recipe_as_mlp_vae(reference), test_images, table_settings.importance_samples,
                             table_settings.batch_size, seed, table_settings.nested_samples)
        rows.append({"hidden_size": hidden, "latent_size": latent, **scores, "own_test_elbo": stats["test_elbo"],
                     "importance_samples": table_settings.importance_samples, "train_seconds": trained - started,
                     "score_seconds": time.perf_counter() - trained})
    return rows


def run_ours(config, out_dir: Path, threads: int, tighten_samples: int, tighten_digits: int | None) -> dict:
    """The table config through the pipeline's code, then the first size scored up to ``tighten_samples``
    on the first ``tighten_digits`` test digits (None: all)."""
    from lidcvae.train.checkpoint import load_model

    torch.set_num_threads(threads)
    table = build_size_table(config, out_dir, config.mnist.table.sizes).to_dict(orient="records")
    hidden, latent = config.mnist.table.sizes[0]
    model = load_model(out_dir / "runs" / f"h{hidden}_z{latent}" / "checkpoints" / "last.pt").model
    started = time.perf_counter()
    counts = [n for n in (1, 10, 100) if n < tighten_samples]
    test = load_split(config.mnist, "test").images[:tighten_digits]
    scores = score_model(model, test, tighten_samples, config.mnist.table.batch_size, config.train.seed + 1, counts)
    tightening = {"hidden_size": hidden, "latent_size": latent, "importance_samples": tighten_samples, **scores,
                  "test_digits": len(test), "score_seconds": time.perf_counter() - started}
    return {"table": table, "tightening": tightening}


def _fmt(value, digits=2) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def markdown(results: dict) -> str:
    ours = {(r["hidden_size"], r["latent_size"]): r for r in results["ours"]}
    recipe = {(r["hidden_size"], r["latent_size"]): r for r in results["recipe"]}
    k = results["importance_samples"]
    lines = [
        f"{results['train_digits']} train / {results['test_digits']} test digits, {results['epochs']} epochs, "
        f"seed {results['seed']}, ours and the recipe side by side in two processes of {results['threads']} torch "
        f"thread(s); {results['machine']}.",
        "",
        f"| hidden / latent | ELBO seed | ELBO ours | ELBO recipe | log p(x) seed (\"MLE\") | IWAE k={k} ours "
        f"| IWAE k={k} recipe | MSE seed | MSE ours | MSE recipe |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for size, seed in SEED_TABLE.items():
        o, r = ours.get(size, {}), recipe.get(size, {})
        lines.append(
            f"| {size[0]} / {size[1]} | {seed['elbo']:.2f} | {_fmt(o.get('elbo'))} | {_fmt(r.get('elbo'))} "
            f"| {seed['log_likelihood']:.2f} | {_fmt(o.get('log_likelihood'))} | {_fmt(r.get('log_likelihood'))} "
            f"| {seed['mse']:.4f} | {_fmt(o.get('mse'), 4)} | {_fmt(r.get('mse'), 4)} |"
        )
    tight = results["tightening"]
    nested_counts = [int(c[16:]) for row in (*ours.values(), *recipe.values(), tight) for c in row if c.startswith("log_likelihood_k")]
    counts = sorted({*nested_counts, k, tight["importance_samples"]})
    lines += ["", "IWAE estimate by k (first k of the same draws; nats per digit, mean over the test digits):", "",
              "| model | " + " | ".join(f"k={n}" for n in counts) + " | score s |", "| --- |" + " --- |" * (len(counts) + 1)]
    rows = [(f"ours {s[0]}/{s[1]}", r) for s, r in ours.items()] + [(f"recipe {s[0]}/{s[1]}", r) for s, r in recipe.items()]
    rows.append((f"ours {tight['hidden_size']}/{tight['latent_size']} rescored, first {tight['test_digits']} test digits",
                 tight))
    for label, row in rows:
        values = [row["log_likelihood"] if n == row["importance_samples"] else row.get(f"log_likelihood_k{n}")
                  for n in counts]
        lines.append(f"| {label} | " + " | ".join(_fmt(v) for v in values) + f" | {row['score_seconds']:.0f} |")
    lines += ["", "| part | train s | score s |", "| --- | --- | --- |"]
    for label, table in (("ours", ours), ("recipe", recipe)):
        for size, row in table.items():
            lines.append(f"| {label} {size[0]}/{size[1]} | {row['train_seconds']:.0f} | {row['score_seconds']:.0f} |")
    lines += ["", f"Whole run: {results['wall_seconds'] / 60:.1f} min wall (ours {results['ours_seconds'] / 60:.1f}, "
              f"recipe {results['recipe_seconds'] / 60:.1f}, side by side); load average {results['load_before']} "
              f"before, {results['load_after']} after (1/5/15 min)."]
    return "\n".join(lines)


def _timed(function, *args):
    started = time.perf_counter()
    return function(*args), time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path, default=REPO / "configs" / "mnist-table.yaml")
    parser.add_argument("--epochs", type=int, default=None, help="override train.epochs (default: the config's)")
    parser.add_argument("--tighten-samples", type=int, default=1000, help="largest k for the first size's rescoring")
    parser.add_argument("--tighten-digits", type=int, default=None, help="test digits of that rescoring (default: all)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads of each of the two processes")
    parser.add_argument("--set", nargs="+", default=[], metavar="KEY=VALUE", help="further config overrides")
    parser.add_argument("--out", type=Path, default=REPO / "results" / "benchmarks" / "mnist-seed-table")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    overrides = {"train.threads": args.threads, "train.progress": False}
    if args.epochs is not None:
        overrides["train.epochs"] = args.epochs
    config = config_from_args(parser, args.config, args.set, overrides)
    table_settings = config.mnist.table
    load_before, started = [round(v, 1) for v in os.getloadavg()], time.perf_counter()
    spawn = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(max_workers=2, mp_context=spawn) as pool:
        ours_job = pool.submit(_timed, run_ours, config, args.out / "ours", args.threads, args.tighten_samples,
                               args.tighten_digits)
        recipe_job = pool.submit(_timed, run_recipe, config, args.threads)
        (ours, ours_seconds), (recipe, recipe_seconds) = ours_job.result(), recipe_job.result()
    results = {
        "epochs": config.train.epochs, "seed": config.train.seed, "threads": args.threads,
        "train_digits": len(load_split(config.mnist, "train")), "test_digits": int(ours["table"][0]["test_digits"]),
        "importance_samples": table_settings.importance_samples, "nested_samples": table_settings.nested_samples,
        "ours": ours["table"], "tightening": ours["tightening"], "recipe": recipe,
        "ours_seconds": ours_seconds, "recipe_seconds": recipe_seconds, "wall_seconds": time.perf_counter() - started,
        "load_before": load_before, "load_after": [round(v, 1) for v in os.getloadavg()],
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores, torch {torch.__version__}",
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(results, indent=2))
    print(markdown(results))
    # The weight copy must not change the model: the recipe's own single-draw test ELBO and ours agree.
    gaps = [abs(r["elbo"] - r["own_test_elbo"]) for r in recipe]
    return 0 if max(gaps) < 1.0 else 1


if __name__ == "__main__":
    sys.exit(main())
