#!/usr/bin/env python
"""Training speed: the trainer's step (data, augmentation, loss checks, clipping, logging) against the bare step.

Both run the same model and batch size. The loop step is ``Trainer._train_step`` on an in-memory synthetic
data set (no extraction needed): batch gather, flips/rotations, forward, ELBO, NaN/Inf checks, grad norm,
clipping, Adam, schedule, TensorBoard scalars. The bare step is forward + ELBO + backward + Adam on one
resident batch. They are timed in alternating rounds and the best round of each is kept, so load from
other processes on a shared machine hits both alike. Prints a Markdown row with samples/s, their
ratio and peak memory (GPU allocated, or the process's peak RSS on CPU).

    python benchmarks/train.py --channels 32 64 128 256 --batch-size 8 --rounds 5 --steps 3
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

from lidcvae.data import LabelledImages  # noqa: E402
from lidcvae.losses import kl_standard_normal, negative_elbo  # noqa: E402
from lidcvae.models import build_model  # noqa: E402
from lidcvae.run_config import RunConfig  # noqa: E402
from lidcvae.train import loop  # noqa: E402
from lidcvae.train.distributed import setup_process_group  # noqa: E402


def synthetic_split(n_patches: int, size: int):
    """A load_split stand-in: a bright cube on noise, (N, 1, S, S, S) in [0, 1]."""

    def load(source, split: str) -> LabelledImages:
        count = n_patches if split == "train" else 2
        generator = torch.Generator().manual_seed(0 if split == "train" else 1)
        images = 0.1 * torch.rand(count, 1, size, size, size, generator=generator)
        centre = slice(size // 3, 2 * size // 3)
        images[:, :, centre, centre, centre] += 0.5
        table = pd.DataFrame({"id": [f"{split}{i}" for i in range(count)], "split": split,
                              "label": pd.array([pd.NA] * count, dtype="Int64")})
        return LabelledImages(images, table)

    return load


def bare_step(config: RunConfig, device: torch.device):
    """A closure running forward + ELBO + backward + Adam on one resident batch."""
    model = build_model(config.model).to(device).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    size, batch = config.model.input_size, config.train.batch_size
    x = torch.rand(batch, 1, size, size, size, device=device)
    autocast_dtype = config.train.autocast_dtype(device)
    forward = torch.compile(model) if config.train.compile else model

    def step() -> None:
        with torch.autocast(device.type, dtype=autocast_dtype or torch.float32, enabled=autocast_dtype is not None):
            output = forward(x)
        log_likelihood = model.log_likelihood(x, output.decoded.float())
        total, _, _ = negative_elbo(log_likelihood, kl_standard_normal(output.posterior_mean.float(),
                                                                        output.posterior_logvar.float()),
                                    config.train.beta)
        optimizer.zero_grad(set_to_none=True)
        total.backward()
        optimizer.step()

    return step


def loop_step(config: RunConfig, device: torch.device, run_dir: Path, n_patches: int):
    """A closure running the trainer's own step on successive batches of a synthetic data set."""
    loop.load_split = synthetic_split(n_patches, config.model.input_size)
    trainer = loop.Trainer(config, None, run_dir, setup_process_group(device))
    trainer._start_outputs(resumed=False)
    batches = trainer._batches(0)
    position = iter(range(10**9))
    return lambda: trainer._train_step(batches[next(position) % len(batches)])


def best_rate(step, steps: int, batch: int, device: torch.device) -> float:
    """Samples/s of ``steps`` calls of ``step``."""
    _sync(device)
    started = time.perf_counter()
    for _ in range(steps):
        step()
    _sync(device)
    return steps * batch / (time.perf_counter() - started)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def peak_memory_gib(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated() / 2**30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # Linux: KiB


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--channels", type=int, nargs="+", default=[32, 64, 128, 256])
    parser.add_argument("--input-size", type=int, default=64)
    parser.add_argument("--latent-size", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--patches", type=int, default=64, help="synthetic train patches held in memory")
    parser.add_argument("--rounds", type=int, default=5, help="alternating timing rounds; the best of each is kept")
    parser.add_argument("--steps", type=int, default=3, help="steps per round")
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    args = parser.parse_args()
    config = RunConfig.from_mapping({
        "model": {"channels": args.channels, "strides": [2] * len(args.channels), "input_size": args.input_size,
                  "latent_size": args.latent_size},
        "train": {"batch_size": args.batch_size, "progress": False, "compile": args.compile, "device": args.device,
                  "threads": torch.get_num_threads()},
    })
    device = config.train.resolve_device()
    with tempfile.TemporaryDirectory() as run_dir:
        steps = {"loop": loop_step(config, device, Path(run_dir), args.patches), "bare": bare_step(config, device)}
        for step in steps.values():  # warm-up (and compilation)
            best_rate(step, 2, args.batch_size, device)
        rates = {name: 0.0 for name in steps}
        for _ in range(args.rounds):
            for name, step in steps.items():
                rates[name] = max(rates[name], best_rate(step, args.steps, args.batch_size, device))
    name = torch.cuda.get_device_name() if device.type == "cuda" else "CPU (2 cores, shared)"
    print("| device | channels | input | batch | compile | loop samples/s | bare step samples/s | loop/bare | peak memory GiB |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    print(f"| {name} | {'-'.join(map(str, args.channels))} | {args.input_size}³ | {args.batch_size} | {args.compile} | "
          f"{rates['loop']:.1f} | {rates['bare']:.1f} | {rates['loop'] / rates['bare']:.2f} | {peak_memory_gib(device):.2f} |")


if __name__ == "__main__":
    main()
