"""The one checkpoint format: written atomically, read with ``weights_only=True``.

A checkpoint is a dict::

    {model, optimizer, scheduler, scaler,   # state dicts
     rng,                                   # python / numpy / torch (CPU, CUDA) / augmentation states
     epoch, step, best_val_loss,            # progress: epochs and optimisation steps completed
     config,                                # the resolved full config dict (model section included)
     describes,                             # what the model expects of its input (``describe_model``)
     identity}                              # settings and data digest: is a resumed run the same run

``training_checkpoint`` builds it and ``restore_training`` puts a run back where it stopped.

Everything in it is a tensor, number, string, list or dict, so the safe unpickler reads it.
"""

from __future__ import annotations

import io
import random
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from lidcvae.io import atomic_path, raise_if_environment
from lidcvae.models import VAE, ModelConfig, build_model

if TYPE_CHECKING:  # annotations only: run_config sits above the stage packages
    from lidcvae.run_config import RunConfig

__all__ = [
    "CheckpointError", "CheckpointMismatch", "save_checkpoint", "read_checkpoint", "describe_model", "checkpoint_description",
    "check_cohort_fits", "model_from_checkpoint", "load_model", "capture_rng", "restore_rng", "training_checkpoint",
    "restore_training",
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


def checkpoint_description(checkpoint: dict[str, Any], path: str | Path = "checkpoint") -> dict[str, Any]:
    """The checkpoint's ``describes`` block (``describe_model``).

    Raises:
        CheckpointError: the checkpoint predates the block, so nothing says how its input was prepared.
    """
    if "describes" not in checkpoint:
        raise CheckpointError(f"{path}: written before checkpoints described their model's input "
                              "(no 'describes' entry); train the model again with this lidcvae")
    return checkpoint["describes"]


def _minor_version(version: str) -> tuple[str, ...]:
    return tuple(version.split(".")[:2])


def check_cohort_fits(description: dict[str, Any], patch_size: set[int], spacing_mm: set[float], checkpoint: str | Path,
                      cohort: str | Path) -> None:
    """Refuse a cohort whose patches were cut differently from the model's training data.

    Args:
        description: ``checkpoint_description`` of the model.
        patch_size, spacing_mm: the distinct values in the cohort's manifest; empty when the manifest does
            not record them (a hand-made table), and then not checked.
        checkpoint, cohort: names for the message.

    Raises:
        CheckpointMismatch: naming every difference (dataset, patch size, spacing, library version).
    """
    import lidcvae

    differences = []
    if description["dataset"] != "lidc":
        differences.append(f"the model was trained on dataset {description['dataset']!r}, not CT nodule patches")
    elif patch_size and patch_size != {description["patch_size"]}:
        differences.append(f"patch_size: checkpoint {description['patch_size']} voxels, cohort {sorted(patch_size)}")
    if description["dataset"] == "lidc" and any(abs(s - description["spacing_mm"]) > 1e-6 for s in spacing_mm):
        differences.append(f"spacing_mm: checkpoint {description['spacing_mm']} mm, cohort {sorted(spacing_mm)}")
    if _minor_version(description["lidcvae_version"]) != _minor_version(lidcvae.__version__):
        differences.append(f"lidcvae version: checkpoint {description['lidcvae_version']}, installed {lidcvae.__version__}")
    if differences:
        raise CheckpointMismatch(f"checkpoint {checkpoint} does not fit the cohort {cohort}: " + "; ".join(differences)
                                 + ". Extract the cohort with the checkpoint's settings (extract.patch_size, "
                                 "extract.spacing_mm) or train a model on it.")


def model_from_checkpoint(checkpoint: dict[str, Any], map_location: str | torch.device = "cpu",
                          path: str | Path = "checkpoint") -> VAE:
    """The model of a checkpoint dict, weights loaded, in eval mode."""
    model = build_model(ModelConfig.from_checkpoint(checkpoint["config"]["model"], source=f"{path} (model section)"))
    model.load_state_dict(checkpoint["model"])
    return model.to(map_location).eval()


def load_model(checkpoint_path: str | Path, map_location: str | torch.device = "cpu") -> tuple[VAE, dict[str, Any]]:
    """The trained model in eval mode and the full config it was trained with.

    ``config['model']['hu_window']`` says how HU map to the model's input scale.
    """
    checkpoint = read_checkpoint(checkpoint_path, map_location)
    return model_from_checkpoint(checkpoint, map_location, checkpoint_path), checkpoint["config"]


def describe_model(run: RunConfig) -> dict[str, Any]:
    """What a checkpoint alone must say to prepare new data for its model, in plain types.

    Keys: ``lidcvae_version``; ``dataset`` (lidc / mnist); ``event_shape`` (one input without the batch
    axis); for CT also ``hu_window`` ([lower, upper] HU mapped to [0, 1]), ``input_size`` (S, voxels per
    edge), ``mask_channel`` (the consensus mask is input channel 1), ``context`` (the whole patch, or
    only the dilated consensus mask: ``model.context``), ``patch_fit`` (crop / resample from
    the patch to S³), ``patch_size`` (voxels per edge of the extracted patch) and ``spacing_mm`` (its
    isotropic voxel spacing, mm).
    """
    import lidcvae

    if run.dataset == "mnist":
        shape = list(run.model.event_shape) if run.model.event_shape else None
        return {"lidcvae_version": lidcvae.__version__, "dataset": "mnist", "event_shape": shape}
    size = run.model.input_size
    channels = 2 if run.model.mask_channel else 1
    return {"lidcvae_version": lidcvae.__version__, "dataset": run.dataset, "event_shape": [channels, size, size, size],
            "hu_window": [float(v) for v in run.model.hu_window], "input_size": size,
            "mask_channel": run.model.mask_channel, "context": run.model.context.to_dict(), "patch_fit": run.train.patch_fit,
            "patch_size": run.extract.patch_size, "spacing_mm": run.extract.spacing_mm}


def training_checkpoint(run: RunConfig, model: torch.nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any,
                        scaler: Any, rng: list[dict[str, Any]], epoch: int, step: int, best_val_loss: float,
                        identity: dict[str, Any]) -> dict[str, Any]:
    """The checkpoint dict of a run after ``epoch`` epochs and ``step`` optimisation steps.

    ``rng`` holds every rank's ``capture_rng`` state, in rank order; ``identity`` is
    ``lidcvae.train.identity.run_identity`` (what makes a resumed run the same run).
    """
    return {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
            "scaler": scaler.state_dict(), "rng": rng, "epoch": epoch, "step": step, "best_val_loss": best_val_loss,
            "config": run.to_dict(), "describes": describe_model(run), "identity": identity}


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
