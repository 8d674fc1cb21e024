"""Stage 2: train a VAE on in-memory patches (one process, or DDP under torchrun).

Public entry points: ``train(config, run_dir, resume=False) -> best checkpoint path`` and
``load_model(checkpoint_path, map_location="cpu") -> (model in eval mode, config)``.
"""

from __future__ import annotations

from lidcvae.train.checkpoint import load_model, read_checkpoint, save_checkpoint
from lidcvae.train.config import TrainConfig
from lidcvae.train.loop import train
from lidcvae.train.step import NonFiniteError

__all__ = ["train", "load_model", "read_checkpoint", "save_checkpoint", "TrainConfig", "NonFiniteError"]
