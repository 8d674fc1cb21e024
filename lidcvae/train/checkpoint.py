"""The one checkpoint format: written atomically, read with ``weights_only=True``.

A checkpoint is a dict::

    {model, optimizer, scheduler, scaler,   # state dicts
     rng,                                   # python / numpy / torch (CPU, CUDA) / augmentation states
     epoch, step, best_val_loss,            # progress: epochs and optimisation steps completed
     config,                                # the resolved full config dict (model section included)
     input,                                 # what the model sees (``ModelInput.to_dict``)
     identity}                              # settings and data digest: is a resumed run the same run

``training_checkpoint`` builds it and ``restore_training`` puts a run back where it stopped.

Everything in it is a tensor, number, string, list or dict, so the safe unpickler reads it.
"""

from __future__ import annotations

import io
import random
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import torch

from lidcvae.data.model_input import ModelInput, cohort_differences
from lidcvae.io import atomic_path, raise_if_environment
from lidcvae.models import VAE, build_model
from lidcvae.models.config import ModelConfig, model_config_from_stored
from lidcvae.train.config import TrainConfig

if TYPE_CHECKING:  # annotations only: run_config sits above the stage packages
    from lidcvae.run_config import RunConfig

__all__ = [
    "CheckpointError", "CheckpointMismatch", "TrainedModel", "save_checkpoint", "read_checkpoint", "check_cohort",
    "load_model", "capture_rng", "restore_rng", "training_checkpoint", "restore_training",
]


class CheckpointError(ValueError):
    """A checkpoint file is truncated, corrupt, unsafe to unpickle or not a lidcvae checkpoint; names the file."""


class CheckpointMismatch(ValueError):
    """A cohort was prepared differently from the data a checkpoint's model was trained on; names what differs."""


def save_checkpoint(path: str | Path, checkpoint: dict[str, Any]) -> Path:
    """Write ``checkpoint`` to ``path`` atomically: a kill mid-write leaves the previous file whole.

    Serialised in memory first: torch's own file writer reports a full disk as "unexpected pos", a
    plain write says ``StorageError: disk full writing <path>``.
    """
    buffer = io.BytesIO()
    torch.save(checkpoint, buffer)
    with atomic_path(path) as tmp:
        tmp.write_bytes(buffer.getbuffer())
    return Path(path)


def read_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint dict safely (``weights_only=True``).

    Raises:
        FileNotFoundError: no file at ``path``.
        CheckpointError: the file is damaged, holds objects the safe unpickler refuses, or lacks the
            ``model`` and ``config`` entries; the message names the file.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:  # noqa: BLE001 - zip, pickle and torch each raise their own types
        raise_if_environment(error, path, "reading")
        reason = (str(error).strip().splitlines() or [""])[0][:200]
        raise CheckpointError(f"{path}: not a readable lidcvae checkpoint, truncated or corrupt "
                              f"({type(error).__name__}: {reason})") from error
    if not isinstance(checkpoint, dict) or not {"model", "config"} <= set(checkpoint):
        raise CheckpointError(f"{path}: not a lidcvae checkpoint (no 'model' and 'config' entries)")
    return checkpoint


@dataclass(frozen=True)
class TrainedModel:
    """A checkpoint's model, typed: what ``load_model`` returns.

    Attributes:
        model: the VAE, weights loaded, in eval mode.
        input: how its input is made (``ModelInput``: patch geometry of the manifest it trained on, fit,
            HU window, channels, context, mask kind).
        model_config, train_config: the typed ``model`` and ``train`` sections it was trained with.
        config: the whole stored config, plain (name, dataset, cohort sections) for reports.
        epoch, step: training progress when it was saved (epochs and optimisation steps completed).
        path: the file it was read from.
    """

    model: VAE
    input: ModelInput
    model_config: ModelConfig
    train_config: TrainConfig
    config: dict[str, Any]
    epoch: int
    step: int
    path: Path


def check_cohort(trained: TrainedModel, cohort: pd.DataFrame, cohort_name: str | Path) -> None:
    """Refuse a cohort whose patches were cut differently from the model's training data.

    Args:
        trained: the loaded checkpoint.
        cohort: the cohort's manifest (its ``patch_size``, ``spacing_mm`` and ``mask_path`` columns are
            compared where present; a hand-made table without them is not checked on them).
        cohort_name: the manifest's path, for the message.

    Raises:
        CheckpointMismatch: naming every difference with both values (dataset, patch size, spacing,
            masks, library version).
    """
    differences = cohort_differences(trained.input, cohort)
    if differences:
        raise CheckpointMismatch(f"checkpoint {trained.path} does not fit the cohort {cohort_name}: " + "; ".join(differences)
                                 + ". Extract the cohort as the checkpoint's training data was (extract.patch_size, "
                                 "extract.spacing_mm, masks) or train a model on it.")


def load_model(checkpoint_path: str | Path, map_location: str | torch.device = "cpu") -> TrainedModel:
    """The trained model in eval mode with its input record and typed sections (``TrainedModel``).

    Raises:
        FileNotFoundError, CheckpointError: see ``read_checkpoint``; also a checkpoint written before
            checkpoints held their model's input record (lidcvae < 0.2).
    """
    checkpoint = read_checkpoint(checkpoint_path, map_location)
    if "input" not in checkpoint:
        raise CheckpointError(f"{checkpoint_path}: written by lidcvae < 0.2, before checkpoints recorded their "
                              "model's input (no 'input' entry); train the model again with this lidcvae")
    stored = checkpoint["config"]
    model_input = ModelInput.from_dict(checkpoint["input"])
    train_config = TrainConfig.from_mapping(stored["train"], f"{checkpoint_path} (train section)")
    model_config = model_config_from_stored(stored["model"], source=f"{checkpoint_path} (model section)")
    model = build_model(model_config)
    model.load_state_dict(checkpoint["model"])
    return TrainedModel(model.to(map_location).eval(), model_input, model_config, train_config, stored,
                        int(checkpoint.get("epoch", 0)), int(checkpoint.get("step", 0)), Path(checkpoint_path))


def training_checkpoint(run: RunConfig, model_input: ModelInput, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                        scheduler: Any, scaler: Any, rng: list[dict[str, Any]], epoch: int, step: int, best_val_loss: float,
                        identity: dict[str, Any]) -> dict[str, Any]:
    """The checkpoint dict of a run after ``epoch`` epochs and ``step`` optimisation steps.

    ``model_input`` is the record of what the model sees (``ModelInput.for_training``); ``rng`` holds
    every rank's ``capture_rng`` state, in rank order; ``identity`` is
    ``lidcvae.train.identity.run_identity`` (what makes a resumed run the same run).
    """
    return {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
            "scaler": scaler.state_dict(), "rng": rng, "epoch": epoch, "step": step, "best_val_loss": best_val_loss,
            "config": run.to_dict(), "input": model_input.to_dict(), "identity": identity}


def restore_training(checkpoint: dict[str, Any], run: RunConfig, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                     scheduler: Any, scaler: Any, rank: int, augment_generator: torch.Generator) -> tuple[int, int, float]:
    """Load a checkpoint's states into a run's objects (this rank's random state); returns (epoch, step, best_val_loss).

    Raises:
        ValueError: the run's model section differs from the checkpoint's.
    """
    if checkpoint["config"]["model"] != run.model.to_dict():
        raise ValueError("--resume: the model section differs from the checkpoint's; start a new run_dir")
    model.load_state_dict(checkpoint["model"])
    optimizer.load_state_dict(checkpoint["optimizer"])
    scheduler.load_state_dict(checkpoint["scheduler"])
    scaler.load_state_dict(checkpoint["scaler"])
    if rank < len(checkpoint["rng"]):
        restore_rng(checkpoint["rng"][rank], augment_generator)
    return checkpoint["epoch"], checkpoint["step"], checkpoint["best_val_loss"]


def capture_rng(augment_generator: torch.Generator) -> dict[str, Any]:
    """Every random state a resumed run needs, in types the safe unpickler accepts."""
    version, mt_state, gauss = random.getstate()
    _, keys, position, has_gauss, cached_gauss = np.random.get_state()
    state = {
        "python": [version, list(mt_state), gauss],
        "numpy": {"keys": torch.from_numpy(keys.astype(np.int64)), "position": int(position),
                  "has_gauss": int(has_gauss), "cached_gauss": float(cached_gauss)},
        "torch": torch.get_rng_state(),
        "augment": augment_generator.get_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any], augment_generator: torch.Generator) -> None:
    """Inverse of ``capture_rng``."""
    version, mt_state, gauss = state["python"]
    random.setstate((version, tuple(mt_state), gauss))
    numpy_state = state["numpy"]
    np.random.set_state(("MT19937", numpy_state["keys"].cpu().numpy().astype(np.uint32), numpy_state["position"],
                         numpy_state["has_gauss"], numpy_state["cached_gauss"]))
    torch.set_rng_state(state["torch"].cpu())
    augment_generator.set_state(state["augment"].cpu())
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])
