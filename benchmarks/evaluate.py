#!/usr/bin/env python
"""Throughput of embedding (posterior means) and of the IWAE estimate at k importance samples.

Weights do not change the cost, so an untrained model of the configured architecture is timed on
random 64³ inputs. Prints patches/s and the projected time for the whole LIDC set (~2,600 patches).

    python benchmarks/evaluate.py --channels 16 32 64 128 --embed-patches 64 --iwae-patches 4 --k 100
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lidcvae.embed import encode_batches  # noqa: E402
from lidcvae.evaluate.likelihood import iwae_log_likelihood  # noqa: E402
from lidcvae.models import ModelConfig, build_model  # noqa: E402

LIDC_PATCHES = 2600


def patches(count: int, event_shape: tuple[int, ...]) -> torch.Tensor:
    """(count, C, S, S, S) random images; with a mask channel (the default), channel 1 is a centred ball
    of radius S/6, so the mask-pooled head pools a real region."""
    images = torch.rand(count, *event_shape)
    if event_shape[0] > 1:
        size = event_shape[-1]
        axes = torch.arange(size, dtype=torch.float32) - (size - 1) / 2
        z, y, x = torch.meshgrid(axes, axes, axes, indexing="ij")
        images[:, 1] = ((z**2 + y**2 + x**2) <= (size / 6) ** 2).float()
    return images


def _rate(count: int, run) -> float:
    start = time.perf_counter()
    run()
    return count / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--channels", type=int, nargs="+", default=[16, 32, 64, 128])
    parser.add_argument("--input-size", type=int, default=64)
    parser.add_argument("--embed-patches", type=int, default=64)
    parser.add_argument("--embed-batch", type=int, default=16)
    parser.add_argument("--iwae-patches", type=int, default=4)
    parser.add_argument("--iwae-batch", type=int, default=4)
    parser.add_argument("--iwae-chunk", type=int, default=10)
    parser.add_argument("--k", type=int, default=100)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    model_config = ModelConfig.from_mapping({"channels": args.channels, "strides": [2] * len(args.channels),
                                             "input_size": args.input_size})
    model = build_model(model_config).to(args.device).eval()
    size = args.input_size
    images = patches(args.embed_patches, model.event_shape)
    encode_batches(model, images[:2], batch_size=8, device=args.device)  # warm-up
    embed_rate = _rate(len(images), lambda: encode_batches(model, images, args.embed_batch, args.device))
    few = patches(args.iwae_patches, model.event_shape).to(args.device)

    def iwae():
        for batch in few.split(args.iwae_batch):
            iwae_log_likelihood(model, batch, args.k, args.iwae_chunk)

    iwae_rate = _rate(len(few), iwae)
    print(f"device={args.device} threads={torch.get_num_threads()} channels={args.channels} input={size}^3")
    print(f"embed: {embed_rate:.1f} patches/s → {LIDC_PATCHES / embed_rate / 60:.1f} min for {LIDC_PATCHES} patches")
    print(f"IWAE k={args.k}: {iwae_rate:.3f} patches/s → {LIDC_PATCHES / iwae_rate / 3600:.2f} h for {LIDC_PATCHES} patches")


if __name__ == "__main__":
    main()
