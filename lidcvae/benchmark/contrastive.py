"""The benchmark's contrastive row: a SimCLR encoder on the reference variant's own VAE encoder.

SimCLR (Chen et al. 2020, "A Simple Framework for Contrastive Learning of Visual Representations",
arXiv 2002.05709): two augmented views of each train nodule pass through the encoder and a 2-layer
projection head; the NT-Xent loss pulls a nodule's two views together against every other view of the
batch. The encoder is the reference variant's VAE built from its ``model`` section (same seed, so before
training it is the untrained control's encoder), run up to the posterior mean: the representation is
μ (B, D), D = ``model.latent_size``, the features are μ before the projection head. The VAE's decoder
and histogram view are dropped; its log-variance heads stay in ``encode`` but no gradient reaches them,
so they keep their initial weights and the features never use them.

The views come from the VAE's own augmentation (``train.augment`` flips and axial quarter turns) plus
an intensity jitter of the image channel (``benchmark.contrastive.intensity_jitter``), since a pretext
of flips and turns alone is easy. The data are the VAE's: the same patches, fit and window
(``ModelInput.for_training``), the train split to learn on, val (the selection split) to pick the epoch.
"""

from __future__ import annotations

import logging
import os
import time
from contextlib import nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from lidcvae.benchmark.settings import ContrastiveConfig
from lidcvae.data.augment import augment_batch
from lidcvae.data.model_input import ModelInput
from lidcvae.models import VAE, build_model
from lidcvae.models.config import ModelConfig
from lidcvae.embed.encode import latent_column_names
from lidcvae.train.checkpoint import TrainedModel, read_checkpoint, save_checkpoint
from lidcvae.train.config import Augment

if TYPE_CHECKING:  # annotations only: run_config sits above the stage packages
    from lidcvae.run_config import RunConfig

__all__ = ["FEATURE_PREFIX", "ContrastiveEncoder", "nt_xent_loss", "jitter_intensity", "two_views", "contrastive_input",
           "train_contrastive", "load_contrastive", "embed_contrastive", "contrastive_speed"]

FEATURE_PREFIX = "simclr"
log = logging.getLogger("lidcvae.benchmark.contrastive")


class ContrastiveEncoder(nn.Module):
    """A VAE's encoder to the posterior mean μ (the representation) and a projection head for the loss.

    Args:
        backbone: the VAE (its decoder is dropped by ``from_config``); ``backbone.encode`` gives (μ, log σ²).
        projection_size: P, the projection head's output: Linear(D, D) → ReLU → Linear(D, P).
    """

    def __init__(self, backbone: VAE, projection_size: int) -> None:
        super().__init__()
        self.backbone = backbone
        self.latent_size = backbone.latent_size
        self.event_shape = backbone.event_shape
        self.projection = nn.Sequential(nn.Linear(self.latent_size, self.latent_size), nn.ReLU(),
                                        nn.Linear(self.latent_size, projection_size))

    @classmethod
    def from_config(cls, model: ModelConfig, projection_size: int) -> ContrastiveEncoder:
        """The VAE of the typed ``model`` section, decoder dropped, under a new projection head (built after
        the VAE, so the same seed draws the same encoder weights as ``build_model`` alone)."""
        backbone = build_model(model)
        _drop_decoder(backbone)
        return cls(backbone, projection_size)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, C, S, S, S) → the VAE's (μ, log σ²), each (B, D); μ is the representation, log σ² is untrained."""
        return self.backbone.encode(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, S, S, S) → projections (B, P) that the NT-Xent loss compares."""
        return self.projection(self.backbone.encode(x)[0])


def _drop_decoder(backbone: nn.Module) -> None:
    """Replace the parts ``encode`` never calls (MONAI's decoder, the histogram view) by empty modules."""
    from lidcvae.models.histogram_view import NoHistogramView

    network = getattr(backbone, "network", None)
    for name in ("decode", "decodeL"):
        if network is not None and hasattr(network, name):
            setattr(network, name, nn.Identity())
    if hasattr(backbone, "histogram_view"):
        backbone.histogram_view = NoHistogramView()


def nt_xent_loss(projections_a: torch.Tensor, projections_b: torch.Tensor, temperature: float) -> torch.Tensor:
    """NT-Xent (arXiv 2002.05709, eq. 1), averaged over all 2N views.

    Args:
        projections_a, projections_b: (N, P), row i of each the two views of nodule i.
        temperature: τ; cosine similarities are divided by it.

    Returns:
        Scalar: mean over the 2N anchors of −log(exp(s_i,pos / τ) / Σ_{k ≠ i} exp(s_ik / τ)).
    """
    views = F.normalize(torch.cat([projections_a, projections_b]).float(), dim=1)
    logits = views @ views.T / temperature
    logits = logits.masked_fill(torch.eye(len(views), dtype=torch.bool, device=views.device), float("-inf"))
    count = len(projections_a)
    positives = torch.cat([torch.arange(count, 2 * count), torch.arange(count)]).to(views.device)
    return F.cross_entropy(logits, positives)


def jitter_intensity(patches: torch.Tensor, generator: torch.Generator, strength: float) -> torch.Tensor:
    """Channel 0 (the image, window units) of each patch × U(1 − s, 1 + s) + U(−s, s), clipped to [0, 1];
    the other channels (the mask) unchanged. (B, C, S, S, S) → a new tensor of the same shape."""
    shape = (len(patches), 1, 1, 1, 1)
    scale = 1.0 + strength * (2.0 * torch.rand(shape, generator=generator) - 1.0)
    shift = strength * (2.0 * torch.rand(shape, generator=generator) - 1.0)
    image = (patches[:, :1] * scale.to(patches.device) + shift.to(patches.device)).clamp(0.0, 1.0)
    return torch.cat([image, patches[:, 1:]], dim=1)


def two_views(patches: torch.Tensor, generator: torch.Generator, augment: Augment,
              intensity_jitter: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Two independent views of each patch: ``augment_batch`` (the VAE's flips and turns), then ``jitter_intensity``.

    Args:
        patches: (B, C, S, S, S) in model input scale.
        generator: CPU generator every random choice comes from.
        augment: the variant's ``train.augment``.
        intensity_jitter: s of ``jitter_intensity``.
    """
    views = [augment_batch(patches, generator, augment.flips, augment.rot90) for _ in range(2)]
    return tuple(jitter_intensity(view.to(patches.device), generator, intensity_jitter) for view in views)


def _batches(count: int, batch_size: int, generator: torch.Generator | None) -> list[torch.Tensor]:
    """Index batches of one epoch, shuffled when a generator is given; a last batch of one nodule is dropped
    (it has no negatives, and BatchNorm needs two)."""
    order = torch.randperm(count, generator=generator) if generator is not None else torch.arange(count)
    batches = list(order.split(batch_size))
    return [batch for batch in batches if len(batch) > 1]


class _Run:
    """One contrastive training: model, optimiser, data and generators; ``epoch`` runs one pass."""

    def __init__(self, variant: RunConfig, settings: ContrastiveConfig, images: dict[str, torch.Tensor]) -> None:
        self.settings, self.augment, self.seed = settings, variant.train.augment, variant.train.seed
        self.device = variant.train.resolve_device()
        self.autocast_dtype = variant.train.autocast_dtype(self.device)
        torch.manual_seed(self.seed)
        self.model = ContrastiveEncoder.from_config(variant.model, settings.projection_size).to(self.device)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=settings.lr)
        self.images = {split: tensor.to(self.device) for split, tensor in images.items()}
        self.generator = torch.Generator().manual_seed(self.seed)

    def loss(self, batch: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """NT-Xent of one batch of patches, both views through the encoder together (one BatchNorm batch)."""
        view_a, view_b = two_views(batch, generator, self.augment, self.settings.intensity_jitter)
        precision = nullcontext() if self.autocast_dtype is None else torch.autocast(self.device.type, self.autocast_dtype)
        with precision:
            projections = self.model(torch.cat([view_a, view_b]))
        return nt_xent_loss(*projections.float().chunk(2), self.settings.temperature)

    def train_epoch(self) -> tuple[float, int]:
        """One shuffled pass over the train nodules; returns (mean loss per nodule, nodules seen)."""
        self.model.train()
        total, seen = 0.0, 0
        for indices in _batches(len(self.images["train"]), self.settings.batch_size, self.generator):
            loss = self.loss(self.images["train"][indices.to(self.device)], self.generator)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            total, seen = total + float(loss.detach()) * len(indices), seen + len(indices)
        return total / max(seen, 1), seen

    @torch.no_grad()
    def val_loss(self) -> float:
        """NT-Xent on the val nodules in eval mode, with the same views every epoch (a fixed generator); NaN
        when val has fewer than two nodules."""
        self.model.eval()
        generator, total, seen = torch.Generator().manual_seed(self.seed + 1), 0.0, 0
        for indices in _batches(len(self.images["val"]), self.settings.batch_size, None):
            total += float(self.loss(self.images["val"][indices.to(self.device)], generator)) * len(indices)
            seen += len(indices)
        return total / seen if seen else float("nan")


def contrastive_input(variant: RunConfig, manifest: str | os.PathLike) -> ModelInput:
    """What the encoder sees: the reference variant's VAE input record on ``manifest``."""
    return ModelInput.for_training("lidc", variant.model, variant.train.patch_fit, manifest)


def train_contrastive(variant: RunConfig, settings: ContrastiveConfig, manifest: str | os.PathLike,
                      checkpoint_path: str | os.PathLike) -> list[dict[str, float]]:
    """Train the SimCLR encoder on ``manifest``'s train split; write the best-on-val epoch's checkpoint.

    Seed (``train.seed``), threads (``train.threads``), device and precision (``train.device``,
    ``train.precision``) and the augmentation (``train.augment``) are the variant's; epochs, batch, Adam lr,
    τ, projection size and jitter are ``settings``. The checkpoint (written atomically whenever the val loss
    improves; every epoch when val has under two nodules) holds ``model``, ``config`` (the variant, plain),
    ``input``, ``contrastive`` (``settings``), ``epoch`` and ``history``. With under two train nodules there is
    no pair to contrast: nothing is trained and the checkpoint holds the initial weights as epoch 0.

    Returns:
        One dict per epoch: ``epoch``, ``train_loss``, ``val_loss`` (NT-Xent, nats), ``samples_per_s``; empty
        when nothing was trained.
    """
    from lidcvae.data import PatchSource, load_split

    torch.set_num_threads(variant.train.threads)
    model_input = contrastive_input(variant, manifest)
    source = PatchSource.for_input(manifest, model_input)
    run = _Run(variant, settings, {split: load_split(source, split).images for split in ("train", "val")})
    if len(run.images["train"]) < 2:
        log.warning("%s: %d train nodule(s); SimCLR needs two, so the encoder is not trained", manifest,
                    len(run.images["train"]))
        save_checkpoint(checkpoint_path, _checkpoint(run, variant, model_input, 0, []))
        return []
    log.info("SimCLR on the %s encoder: %d train / %d val nodules, batch %d, τ %g, jitter %g, device %s",
             variant.model.name, len(run.images["train"]), len(run.images["val"]), settings.batch_size,
             settings.temperature, settings.intensity_jitter, run.device)
    history: list[dict[str, float]] = []
    for epoch in range(1, settings.epochs + 1):
        history.append(_epoch(run, epoch))
        if _is_best(history):
            save_checkpoint(checkpoint_path, _checkpoint(run, variant, model_input, epoch, history))
    return history


def _epoch(run: _Run, epoch: int) -> dict[str, float]:
    """Train one epoch, score val, log the line; the history entry."""
    started = time.perf_counter()
    train_loss, seen = run.train_epoch()
    speed = seen / max(time.perf_counter() - started, 1e-9)
    val_loss = run.val_loss()
    log.info("epoch %d/%d: train NT-Xent %.4f, val %.4f (%.1f samples/s)", epoch, run.settings.epochs, train_loss,
             val_loss, speed)
    return {"epoch": epoch, "train_loss": train_loss, "val_loss": val_loss, "samples_per_s": speed}


def _is_best(history: list[dict[str, float]]) -> bool:
    """The newest epoch's val loss is the lowest so far (or val has no loss: keep the newest)."""
    newest = history[-1]["val_loss"]
    earlier = [entry["val_loss"] for entry in history[:-1]]
    return newest != newest or all(newest < value for value in earlier)


def _checkpoint(run: _Run, variant: RunConfig, model_input: ModelInput, epoch: int,
                history: list[dict[str, float]]) -> dict[str, Any]:
    return {"model": run.model.state_dict(), "config": variant.to_dict(), "input": model_input.to_dict(),
            "contrastive": run.settings.to_dict(), "epoch": epoch, "history": [dict(entry) for entry in history]}


def load_contrastive(checkpoint_path: str | os.PathLike, map_location: str | torch.device) -> TrainedModel:
    """The trained encoder in eval mode with its input record and its variant's sections, typed as a VAE
    checkpoint's are (``TrainedModel``), so it is embedded by the same path (``embed_cohort``).

    Raises:
        FileNotFoundError, CheckpointError: as ``read_checkpoint`` (safe ``weights_only`` loading).
    """
    from lidcvae.run_config import RunConfig

    checkpoint = read_checkpoint(checkpoint_path, map_location)
    variant = RunConfig.from_mapping(checkpoint["config"], source=f"{checkpoint_path} (config)")
    settings = ContrastiveConfig.from_mapping(checkpoint["contrastive"], source=f"{checkpoint_path} (contrastive)")
    model = ContrastiveEncoder.from_config(variant.model, settings.projection_size)
    model.load_state_dict(checkpoint["model"])
    return TrainedModel(model.to(map_location).eval(), ModelInput.from_dict(checkpoint["input"]), variant.model,
                        variant.train, checkpoint["config"], int(checkpoint["epoch"]), 0, Path(checkpoint_path))


def embed_contrastive(checkpoint_path: str | os.PathLike, manifest: str | os.PathLike, batch_size: int,
                      device: str | torch.device, average_orientations: bool) -> pd.DataFrame:
    """Every nodule of ``manifest``: ``nodule_id`` and the representation μ before the projection head.

    Eval mode; with ``average_orientations`` (``benchmark.average_orientations``) each nodule's features are
    the mean over the orientations the training views drew (``train.augment``: 16 with flips and quarter
    turns), as ``lidcvae.embed`` does for the VAE; else each nodule is encoded once.

    Returns:
        One row per manifest row, in its order: ``nodule_id``, ``simclr000`` … (D columns, float32).

    Raises:
        CheckpointMismatch: the manifest's patches were cut otherwise than the training data (names both).
    """
    from lidcvae.embed.cohort import embed_cohort
    from lidcvae.embed.config import EmbedConfig

    trained = load_contrastive(checkpoint_path, "cpu")
    settings = EmbedConfig.from_mapping({"batch_size": batch_size, "device": str(device),
                                         "average_orientations": average_orientations})
    embedded = embed_cohort(trained, manifest, settings, False)
    means = latent_column_names(trained.model.latent_size)
    features = embedded[["nodule_id", *means]].reset_index(drop=True)
    return features.rename(columns=dict(zip(means, latent_column_names(trained.model.latent_size, FEATURE_PREFIX))))


def contrastive_speed(variant: RunConfig, settings: ContrastiveConfig, batches: int) -> float:
    """Training samples (nodules, two views each) per second at the variant's model size on random patches
    in [0, 1] (with a centred ball as mask channel): for sizing ``epochs``. Times ``batches`` steps after one
    warm-up step."""
    torch.set_num_threads(variant.train.threads)
    patches = _synthetic_patches(variant.model, settings.batch_size)
    run = _Run(variant, settings, {"train": patches, "val": patches[:0]})
    run.train_epoch()
    started = time.perf_counter()
    for _ in range(batches):
        run.train_epoch()
    if run.device.type == "cuda":
        torch.cuda.synchronize()
    return batches * len(patches) / (time.perf_counter() - started)


def _synthetic_patches(model: ModelConfig, count: int) -> torch.Tensor:
    """(count, C, S, S, S) random image channel and a ball of radius S/4 as the mask channel."""
    size = model.input_size
    image = torch.rand(count, 1, size, size, size)
    if not model.mask_channel:
        return image
    grid = torch.stack(torch.meshgrid(*[torch.arange(size) - (size - 1) / 2] * 3, indexing="ij")).square().sum(0)
    mask = (grid <= (size / 4) ** 2).float().expand(count, 1, size, size, size)
    return torch.cat([image, mask], dim=1)
