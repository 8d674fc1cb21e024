"""Stage 2: train a VAE on in-memory patches (one process, or DDP under torchrun).

Public entry points: ``train(run, run_dir, resume=False, manifest=None) -> best checkpoint path`` (``run``
a typed ``lidcvae.run_config.RunConfig``) and
``load_model(checkpoint_path, map_location="cpu") -> (model in eval mode, config)``.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

__all__ = ["train", "load_model", "read_checkpoint", "save_checkpoint", "TrainConfig", "NonFiniteError"]

# Resolved on first use, so that embed/evaluate loading a checkpoint don't import the training loop
# (and TensorBoard with it).
_HOMES = {
    "train": "loop", "load_model": "checkpoint", "read_checkpoint": "checkpoint", "save_checkpoint": "checkpoint",
    "TrainConfig": "config", "NonFiniteError": "step",
}


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module 'lidcvae.train' has no attribute {name!r}")
    return getattr(import_module(f"lidcvae.train.{_HOMES[name]}"), name)
