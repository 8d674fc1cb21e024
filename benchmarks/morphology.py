#!/usr/bin/env python
"""Cubic dilation as three 1D max pools (lidcvae.morphology) against one cubic max_pool3d, side by side.

Times the operation alone on a batch of masks, then embedding with the default model (mask pooling with
its edge band), once with each dilation. Prints a table; lower ms is better, ratio = cubic / separable.

    python benchmarks/morphology.py --batch 16 --input-size 32 --repeats 20
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import lidcvae.models.pooling as pooling  # noqa: E402
import lidcvae.models.weighting as weighting  # noqa: E402
from evaluate import patches  # noqa: E402
from lidcvae.embed import encode_batches  # noqa: E402
from lidcvae.models import ModelConfig, build_model  # noqa: E402
from lidcvae.morphology import dilate_cube, erode_cube  # noqa: E402


def cubic_dilate(mask: torch.Tensor, radius: int) -> torch.Tensor:
    """The reference: one max_pool3d with a cubic kernel (what the code did before lidcvae.morphology)."""
    return F.max_pool3d(mask, 2 * radius + 1, stride=1, padding=radius) if radius else mask


def best_ms(run, repeats: int) -> float:
    """Best of ``repeats`` wall times of ``run()``, ms (the best is the least disturbed by other load)."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return 1e3 * min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--input-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    torch.manual_seed(0)
    model = build_model(ModelConfig.from_mapping({"input_size": args.input_size})).eval()
    images = patches(args.batch, model.event_shape)
    masks = images[:, 1:2].contiguous()
    rows = []
    for radius in (1, 2, 3):
        assert torch.equal(dilate_cube(masks, radius), cubic_dilate(masks, radius))
        rows.append((f"dilate, radius {radius}", best_ms(lambda: cubic_dilate(masks, radius), args.repeats),
                     best_ms(lambda: dilate_cube(masks, radius), args.repeats)))
    train_batch = images[:4]

    def train_step() -> None:
        posterior_mean, _ = model.encode(train_batch)
        (-model.log_likelihood(train_batch, model.decode(posterior_mean)).sum()).backward()

    def embed() -> None:
        encode_batches(model, images, args.batch, device="cpu")

    timed = {}
    for name, dilate in (("separable", dilate_cube), ("cubic", cubic_dilate)):
        pooling.dilate_cube, weighting.dilate_cube = dilate, dilate
        pooling.erode_cube = lambda mask, radius, dilate=dilate: -dilate(-mask, radius)
        model.eval()
        timed[name, "embed"] = best_ms(embed, args.repeats)
        model.train()
        timed[name, "train"] = best_ms(train_step, args.repeats)
    pooling.dilate_cube, pooling.erode_cube, weighting.dilate_cube = dilate_cube, erode_cube, dilate_cube
    rows.append((f"embed {args.batch} patches, default model (edge band: dilate 2, erode 1)",
                 timed["cubic", "embed"], timed["separable", "embed"]))
    rows.append(("one training step, batch 4 (+ mask weight: dilate 3)", timed["cubic", "train"], timed["separable", "train"]))
    print(f"batch {args.batch} × {tuple(model.event_shape)}, {torch.get_num_threads()} threads, best of {args.repeats}")
    print("| what | cubic max_pool3d (ms) | three 1D max pools (ms) | cubic / separable |")
    print("|---|---|---|---|")
    for what, before, after in rows:
        print(f"| {what} | {before:.1f} | {after:.1f} | {before / after:.1f}× |")


if __name__ == "__main__":
    main()
