#!/usr/bin/env python
"""Soft histograms over the mask and edge band: computed at the covered voxels against the dense formula.

``masked_soft_histogram`` (lidcvae.models.pooling) evaluates the K Gaussian bin memberships only at the
voxels the consensus mask or its edge band cover; the dense formula, ``masked_mean(soft_histogram(...))``,
builds a (B, K, Z, Y, X) tensor first. Both give the same numbers (tests/test_mask_pooling.py). This
times, side by side in one process, interleaved, best of ``--repeats``: the two histograms alone (mask
and edge band, 16 bins, batch 16), and the default model (the schema defaults, its pooled histogram and
decoded histogram view) encoding a batch of 16 and taking a training step (forward and backward, batch 4)
with each. Inputs: random images with a centred ball mask of radius ``--radius`` voxels in 32³ patches.

    python benchmarks/histogram.py [--radius 4] [--repeats 5] [--threads 2]
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lidcvae.models import ModelConfig, build_model  # noqa: E402
from lidcvae.models import histogram_view, pooling  # noqa: E402
from lidcvae.train.step import loss_terms  # noqa: E402


def dense_histogram(image, centres, widths, regions):
    """The dense formula: (B, K, Z, Y, X) memberships, then each region's mean."""
    memberships = pooling.soft_histogram(image, centres, widths)
    return torch.cat([pooling.masked_mean(memberships, region) for region in regions], dim=1)


@contextmanager
def formula(name: str):
    """Run the model's histograms with ``covered`` (the library's) or ``dense``."""
    chosen = dense_histogram if name == "dense" else pooling.masked_soft_histogram
    saved = pooling.masked_soft_histogram, histogram_view.masked_soft_histogram
    pooling.masked_soft_histogram = histogram_view.masked_soft_histogram = chosen
    try:
        yield
    finally:
        pooling.masked_soft_histogram, histogram_view.masked_soft_histogram = saved


def batch(count: int, size: int, radius: float) -> torch.Tensor:
    """(count, 2, S, S, S): random image, centred ball mask."""
    images = torch.rand(count, 2, size, size, size)
    axes = torch.arange(size, dtype=torch.float32) - (size - 1) / 2
    z, y, x = torch.meshgrid(axes, axes, axes, indexing="ij")
    images[:, 1] = ((z**2 + y**2 + x**2) <= radius**2).float()
    return images


def seconds(run, repeats: int) -> list[float]:
    run()  # warm-up
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return times


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--radius", type=float, default=4.0, help="mask ball radius, voxels (1 mm)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = build_model(ModelConfig.from_mapping({}))
    size = model.event_shape[-1]
    encode_batch, train_batch = batch(16, size, args.radius), batch(4, size, args.radius)
    regions = (encode_batch[:, 1:2], pooling.edge_band(encode_batch[:, 1:2]))
    centres, widths = torch.linspace(0, 1, 16), torch.full((16,), 1 / 15)
    covered = (sum(regions) > 0).float().mean().item()

    def encode():
        model.eval()
        model.encode(encode_batch)

    def train_step():
        model.train()
        terms = loss_terms(model, model, train_batch, 1.0, free_bits=0.0)
        terms.total.backward()
        model.zero_grad(set_to_none=True)

    cases = {
        "histograms alone (mask + edge band, 16 bins, batch 16)": lambda: pooling.masked_soft_histogram(
            encode_batch[:, :1], centres, widths, regions),
        "default model: encode (batch 16)": encode,
        "default model: training step, forward + backward (batch 4)": train_step,
    }
    rows = []
    for case, run in cases.items():
        best = {}
        for _ in range(2):  # interleave the two formulas twice, keep each one's best
            for name in ("dense", "covered"):
                with formula(name), torch.set_grad_enabled("training" in case):
                    best[name] = min(best.get(name, float("inf")), *seconds(run, args.repeats))
        rows.append((case, best["dense"], best["covered"]))
    print(f"{size}³ patches, mask ball radius {args.radius:g} voxels: the mask and edge band cover {covered:.1%} of the voxels. "
          f"Best of {args.repeats} × 2 interleaved rounds, ms (lower is better).\n")
    print("| what | dense (B, K, Z, Y, X) | covered voxels only | dense ÷ covered |")
    print("|---|---|---|---|")
    for case, dense, sparse in rows:
        print(f"| {case} | {dense * 1e3:.1f} | {sparse * 1e3:.1f} | {dense / sparse:.1f}× |")
    print(f"\nMachine: {platform.node()}, torch {torch.__version__}, {args.threads} threads")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
