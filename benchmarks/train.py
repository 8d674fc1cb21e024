#!/usr/bin/env python
"""Training speed: the full loop (data, augmentation, logging, checks) against the bare model step.

Both run the same model on the same batch size; the loop goes through ``lidcvae.train.train`` on an
in-memory synthetic data set (so no extraction is needed), the bare step is forward + loss + backward +
Adam on one resident batch. Prints samples/s, their ratio and peak memory (GPU allocated, or process RSS on CPU) as a Markdown row.

    python benchmarks/train.py --channels 32 64 128 256 --batch-size 16 --patches 512 --epochs 3
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lidcvae.config import validate_config  # noqa: E402
from lidcvae.data import LabelledImages  # noqa: E402
from lidcvae.losses import kl_standard_normal, negative_elbo  # noqa: E402
from lidcvae.models import build_model  # noqa: E402
from lidcvae.train import loop  # noqa: E402


def synthetic_split(n_patches: int, size: int):
    """A load_split stand-in: blobs on noise, (N, 1, S, S, S) in [0, 1]."""

    def load(config: dict, split: str) -> LabelledImages:
        count = n_patches if split == "train" else max(2, n_patches // 8)
        generator = torch.Generator().manual_seed(0 if split == "train" else 1)
        images = (0.1 * torch.rand(count, 1, size, size, size, generator=generator)).clamp(0, 1)
        centre = slice(size // 3, 2 * size // 3)
        images[:, :, centre, centre, centre] += 0.5
        table = pd.DataFrame({"id": [f"{split}{i}" for i in range(count)], "split": split,
                              "label": pd.array([pd.NA] * count, dtype="Int64")})
        return LabelledImages(images, table)

    return load


def bare_step_rate(config: dict, steps: int) -> float:
    """Samples/s of forward + loss + backward + Adam on one resident batch."""
    train_config = config["train"]
    device = torch.device("cuda" if torch.cuda.is_available() and train_config["device"] != "cpu" else "cpu")
    model = build_model(config["model"]).to(device).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    size, batch = config["model"]["input_size"], train_config["batch_size"]
    x = torch.rand(batch, 1, size, size, size, device=device)
    autocast = device.type == "cuda" and train_config["precision"] != "fp32"
    forward = torch.compile(model) if train_config["compile"] else model

    def step() -> None:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
            output = forward(x)
        log_likelihood = model.log_likelihood(x, output.decoded.float())
        total, _, _ = negative_elbo(log_likelihood, kl_standard_normal(output.posterior_mean.float(),
                                                                        output.posterior_logvar.float()))
        optimizer.zero_grad(set_to_none=True)
        total.backward()
        optimizer.step()

    for _ in range(3):
        step()
    _sync(device)
    started = time.perf_counter()
    for _ in range(steps):
        step()
    _sync(device)
    return steps * batch / (time.perf_counter() - started)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def loop_rate(config: dict, n_patches: int) -> tuple[float, float]:
    """Samples/s of the trainer's last epoch (the first warms up), and peak GPU memory in GiB."""
    loop.load_split = synthetic_split(n_patches, config["model"]["input_size"])
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    with tempfile.TemporaryDirectory() as run_dir:
        loop.train(config, run_dir)
        metrics = pd.read_csv(Path(run_dir) / "metrics.csv")
    if torch.cuda.is_available():
        peak = torch.cuda.max_memory_allocated() / 2**30
    else:  # CPU: the process's peak resident memory (data set included)
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    return float(metrics["samples_per_s"].iloc[-1]), peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--channels", type=int, nargs="+", default=[32, 64, 128, 256])
    parser.add_argument("--input-size", type=int, default=64)
    parser.add_argument("--latent-size", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--patches", type=int, default=256, help="synthetic train patches per epoch")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    config = validate_config({
        "model": {"channels": args.channels, "strides": [2] * len(args.channels), "input_size": args.input_size,
                  "latent_size": args.latent_size},
        "train": {"batch_size": args.batch_size, "epochs": args.epochs, "progress": False, "compile": args.compile,
                  "device": args.device, "threads": torch.get_num_threads()},
    })
    loop_samples_per_s, peak_gib = loop_rate(config, args.patches)
    bare_samples_per_s = bare_step_rate(config, steps=max(5, args.patches // args.batch_size))
    device = torch.cuda.get_device_name() if torch.cuda.is_available() and args.device != "cpu" else "CPU"
    print("| device | channels | input | batch | compile | loop samples/s | bare step samples/s | ratio | peak memory GiB |")
    print(f"| {device} | {'-'.join(map(str, args.channels))} | {args.input_size}³ | {args.batch_size} | {args.compile} | "
          f"{loop_samples_per_s:.1f} | {bare_samples_per_s:.1f} | {loop_samples_per_s / bare_samples_per_s:.2f} | {peak_gib:.2f} |")


if __name__ == "__main__":
    main()
