"""The training loop: any registered model on any registered dataset, one process or DDP under torchrun.

Run directory layout::

    run_dir/config.yaml            the resolved config (defaults filled)
    run_dir/metrics.csv            one row per epoch (train/val terms, β, lr, σ², active units, speed)
    run_dir/tensorboard/           per-step scalars: reconstruction and KL apart, total, grad norm, β, lr
    run_dir/checkpoints/last.pt    after every epoch;  best.pt  at the lowest val loss
"""

from __future__ import annotations

import logging
import math
import random
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import yaml
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DistributedSampler
from torch.utils.tensorboard import SummaryWriter
from tqdm import tqdm

from lidcvae.data import LabelledImages, data_source, load_split
from lidcvae.data.augment import augment_batch
from lidcvae.data.model_input import ModelInput
from lidcvae.io import atomic_path
from lidcvae.models import VAE, build_model
from lidcvae.train.checkpoint import (
    capture_rng, read_checkpoint, restore_training, save_checkpoint, training_checkpoint,
)
from lidcvae.train.config import TrainConfig
from lidcvae.train.identity import identity_differences, run_identity
from lidcvae.train.distributed import (
    ProcessGroup, all_reduce_sum, gather_objects, setup_process_group, teardown_process_group,
)
from lidcvae.posterior import active_units
from lidcvae.train.metrics import EpochTerms, MetricsTable, TermMeans, log_epoch_scalars, log_step_scalars, metrics_row
from lidcvae.train.step import TERM_LABELS, LossTerms, NonFiniteError, StepValues, backward_and_step, loss_terms

if TYPE_CHECKING:  # annotations only: run_config sits above the stage packages
    from lidcvae.run_config import RunConfig

__all__ = ["train", "Trainer", "lr_schedule"]

log = logging.getLogger(__name__)


def train(run: RunConfig, run_dir: str | Path, resume: bool | str = False, manifest: str | Path | None = None) -> Path:
    """Train the configured model on the configured dataset; returns the best checkpoint's path.

    Args:
        run: the validated, typed config (``RunConfig.from_mapping``); its ``model``, ``train`` and,
            for MNIST, ``mnist`` sections are used, and the whole is recorded in ``config.yaml`` and
            every checkpoint.
        run_dir: output folder (see the module docstring).
        resume: ``True``: continue from ``run_dir/checkpoints/last.pt`` when it exists (model, optimizer,
            scheduler, scaler, RNG states, epoch and step) at this config's lr, betas and weight decay;
            ``"same"``: continue only when the checkpoint was made with the same settings and data
            (``identity.run_identity``), else start afresh (the Snakemake rule); ``False``: start afresh.
        manifest: the extraction manifest (dataset ``lidc``); unused for MNIST.

    Raises:
        NonFiniteError: a loss term, the gradient or the validation loss became NaN/Inf; the last good
            checkpoint is kept.
    """
    model_input = ModelInput.for_training(run.dataset, run.model, run.train.patch_fit, manifest)
    source = data_source(run.dataset, manifest, model_input, run.mnist)
    group = setup_process_group(run.train.resolve_device())
    try:
        return Trainer(run, model_input, source, Path(run_dir), group).fit(resume)
    finally:
        teardown_process_group(group)


def lr_schedule(train_config: TrainConfig, total_steps: int):
    """Multiplier of the peak lr at each step: linear warm-up, then constant or cosine to ``min_lr_ratio``."""

    def multiplier(step: int) -> float:
        if step < train_config.lr_warmup_steps:
            return (step + 1) / train_config.lr_warmup_steps
        if train_config.schedule == "constant":
            return 1.0
        progress = min(1.0, (step - train_config.lr_warmup_steps) / max(1, total_steps - train_config.lr_warmup_steps))
        floor = train_config.min_lr_ratio
        return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))

    return multiplier


class Trainer:
    """State of one run: model, optimiser, data, progress; ``fit`` runs it to the last epoch."""

    def __init__(self, run: RunConfig, model_input: ModelInput, source: Any, run_dir: Path, group: ProcessGroup) -> None:
        train_config = run.train
        self.run, self.model_input, self.train_config, self.run_dir, self.group = run, model_input, train_config, run_dir, group
        self.checkpoint_dir = run_dir / "checkpoints"
        _seed_everything(train_config.seed + group.rank, train_config.deterministic)
        torch.set_num_threads(train_config.threads)
        self.augment_generator = torch.Generator().manual_seed(train_config.seed + group.rank)
        self.train_data = _to_device(load_split(source, "train"), group.device)
        self.val_data = _to_device(load_split(source, "val"), group.device)
        if len(self.train_data) == 0:
            raise ValueError("the train split is empty: nothing to train on")
        self.model: VAE = build_model(run.model).to(group.device)
        self.forward = self._wrap_model()
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=train_config.lr, betas=train_config.betas,
                                          weight_decay=train_config.weight_decay)
        self.steps_per_epoch = len(self._batches(0))
        total_steps = self.steps_per_epoch * train_config.epochs
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lr_schedule(train_config, total_steps))
        self.scaler = torch.amp.GradScaler(group.device.type, enabled=False)  # bf16 needs no loss scaling
        self.autocast_dtype = train_config.autocast_dtype(group.device)
        self.epoch, self.step, self.best_val_loss = 0, 0, math.inf
        self.identity = run_identity(run.to_dict(), getattr(source, "manifest", None))

    def _wrap_model(self):
        forward = self.model
        if self.group.distributed:
            device_ids = [self.group.device.index] if self.group.device.type == "cuda" else None
            forward = DistributedDataParallel(self.model, device_ids=device_ids)
        if self.train_config.compile:
            forward = torch.compile(forward)
        return forward

    def fit(self, resume: bool | str = False) -> Path:
        """Train from the start or from ``last.pt`` to ``train.epochs``; returns ``best.pt``."""
        last = self.checkpoint_dir / "last.pt"
        if resume and last.is_file():
            # Read on the CPU: RNG states must stay there; load_state_dict moves weights and optimizer state.
            checkpoint = read_checkpoint(last, "cpu")
            differences = identity_differences(checkpoint.get("identity"), self.identity)
            if resume == "same" and differences:
                log.info("%s was made with other settings or data (%s): training from scratch", last, ", ".join(differences))
            else:
                self._restore(checkpoint)
        elif resume == "same":  # the Snakemake rule's every first training
            log.info("starting a new run (no checkpoint at %s to continue)", last)
        elif resume:
            log.warning("--resume: no checkpoint at %s; starting a new run", last)
        if self.group.is_main:
            self._start_outputs(resumed=self.epoch > 0)
        while self.epoch < self.train_config.epochs:
            self._run_epoch()
        if self.group.is_main:
            self.writer.close()
        return self.checkpoint_dir / "best.pt"

    def _start_outputs(self, resumed: bool) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        for partial in self.checkpoint_dir.glob(".tmp-*"):  # left by a kill mid-write; never a real checkpoint
            partial.unlink(missing_ok=True)
        if not resumed:
            for stale in (self.checkpoint_dir / "best.pt", self.checkpoint_dir / "last.pt"):
                stale.unlink(missing_ok=True)
        with atomic_path(self.run_dir / "config.yaml") as tmp:
            tmp.write_text(yaml.safe_dump(self.run.to_dict(), sort_keys=False))
        self.metrics = MetricsTable(self.run_dir / "metrics.csv", resume_epoch=self.epoch)
        self.writer = SummaryWriter(str(self.run_dir / "tensorboard"), purge_step=self.step if resumed else None)
        log.info("training %s on %s: %d train / %d val samples, %d steps per epoch, device %s x%d, precision %s",
                 self.run.model.name, self.run.dataset, len(self.train_data), len(self.val_data),
                 self.steps_per_epoch, self.group.device, self.group.world_size, self.autocast_dtype or "fp32")
        if self.model.auxiliary_term:
            log.info("rec below is −log p(x|z); aux is %s; total = rec + β·kl + aux", self.model.auxiliary_term)

    def _batches(self, epoch: int) -> list[torch.Tensor]:
        """This rank's shuffled index batches of ``epoch``; a last batch of one patch is dropped (BatchNorm)."""
        sampler = DistributedSampler(range(len(self.train_data)), num_replicas=self.group.world_size,
                                     rank=self.group.rank, shuffle=True, seed=self.train_config.seed)
        sampler.set_epoch(epoch)
        indices = torch.tensor(list(sampler), dtype=torch.long)
        batches = list(indices.split(self.train_config.batch_size))
        if len(batches) > 1 and len(batches[-1]) == 1 < self.train_config.batch_size:
            batches.pop()
        return batches

    def _run_epoch(self) -> None:
        self.model.train()
        started = time.perf_counter()
        sums = EpochTerms()
        bar = tqdm(self._batches(self.epoch), desc=f"epoch {self.epoch + 1}/{self.train_config.epochs}",
                   disable=not (self.group.is_main and self.train_config.progress), leave=False, dynamic_ncols=True)
        for batch_indices in bar:
            values = self._train_step(batch_indices)
            sums.add(values, len(batch_indices))
            bar.set_postfix(rec=f"{values.reconstruction:.4g}", kl=f"{values.kl:.4g}", gnorm=f"{values.grad_norm:.3g}",
                            refresh=False)
        seconds = time.perf_counter() - started
        sums = EpochTerms.from_tensor(all_reduce_sum(sums.to_tensor().to(self.group.device), self.group).cpu())
        self.epoch += 1
        val_terms, n_active = self._validate()
        self._check_validation(val_terms)
        self._end_epoch(sums.mean(), val_terms, n_active, int(sums.n) / seconds, seconds)

    def _train_step(self, batch_indices: torch.Tensor) -> StepValues:
        x = self.train_data.images[batch_indices.to(self.train_data.images.device)]
        augment = self.train_config.augment
        if x.dim() == 5 and (augment.flips or augment.rot90):
            x = augment_batch(x, self.augment_generator, augment.flips, augment.rot90)
        beta = self.train_config.kl_weight(self.step)
        terms = loss_terms(self.forward, self.model, x, beta, self.autocast_dtype, free_bits=self.train_config.free_bits)
        try:
            values = backward_and_step(terms, self.forward, self.optimizer, self.train_config.grad_clip, self.step)
        except NonFiniteError as error:
            advice = "lower train.lr (or enable train.grad_clip, KL warm-up)"
            raise NonFiniteError(f"{error} {self._what_is_kept(advice)}") from None
        self.scheduler.step()
        if self.group.is_main:
            self._log_step(values, beta)
        self.step += 1
        return values

    def _log_step(self, values: StepValues, beta: float) -> None:
        log_step_scalars(self.writer, self.step, values, beta, self.optimizer.param_groups[0]["lr"])

    @torch.no_grad()
    def _validate(self) -> tuple[TermMeans, int]:
        """The loss terms at the target β over val (train when val is empty), and active units."""
        data = self.val_data if len(self.val_data) else self.train_data
        self.model.eval()
        sums, means = EpochTerms(), []
        for batch in data.images.split(2 * self.train_config.batch_size):
            # the plain negative ELBO: free bits shape the training objective, not what val reports
            terms: LossTerms = loss_terms(self.model, self.model, batch, self.train_config.beta, self.autocast_dtype,
                                          free_bits=0.0)
            sums.add(terms, len(batch))
            means.append(terms.posterior_mean.float().cpu())
        self.model.train()
        return sums.mean(), active_units(torch.cat(means).numpy(), self.run.evaluate.active_unit_threshold)

    def _check_validation(self, val_terms: TermMeans) -> None:
        """Stop before this epoch is saved when a validation term is NaN/Inf (weights that fit the
        train batches can still blow up on unseen patches)."""
        for field, value in val_terms.items():
            name = TERM_LABELS[field]
            if not math.isfinite(value):
                raise NonFiniteError(f"epoch {self.epoch}: validation {name} is {value}; stopping before this epoch is "
                                     f"saved. {self._what_is_kept('lower train.lr')}")

    def _what_is_kept(self, advice: str) -> str:
        """The end of a NaN/Inf message: the checkpoint kept and how to go on, or that none was written yet."""
        last = self.checkpoint_dir / "last.pt"
        if last.is_file():
            return (f"The last good checkpoint {last} is kept; {advice} and continue with --resume, which trains "
                    "at the new settings.")
        return f"No checkpoint was written yet (none before the first epoch ends); {advice} and start again."

    def _end_epoch(self, train_terms: TermMeans, val_terms: TermMeans, n_active: int,
                   samples_per_s: float, seconds: float) -> None:
        """Log, write metrics and checkpoints (best before last: last.pt is the commit point of an epoch)."""
        rng = gather_objects(capture_rng(self.augment_generator), self.group)
        improved = val_terms.total < self.best_val_loss
        self.best_val_loss = min(self.best_val_loss, val_terms.total)
        if not self.group.is_main:
            return
        row = self._metrics_row(train_terms, val_terms, n_active, samples_per_s, seconds)
        self.metrics.append(row)
        log_epoch_scalars(self.writer, row)
        checkpoint = training_checkpoint(self.run, self.model_input, self.model, self.optimizer, self.scheduler, self.scaler, rng,
                                         self.epoch, self.step, self.best_val_loss, self.identity)
        if improved:
            save_checkpoint(self.checkpoint_dir / "best.pt", checkpoint)
        save_checkpoint(self.checkpoint_dir / "last.pt", checkpoint)
        log.info("epoch %d/%d step %d | train %s | val %s%s | AU %d/%d | β %.3g lr %.3g | %.1f samples/s",
                 self.epoch, self.train_config.epochs, self.step, self._terms_text(train_terms),
                 self._terms_text(val_terms), " *" if improved else "", n_active, self.model.latent_size,
                 row["beta"], row["lr"], samples_per_s)

    def _terms_text(self, terms: TermMeans) -> str:
        """'rec … kl … [aux …] total …' (aux only for models with an auxiliary term)."""
        aux = f" aux {terms.auxiliary:.2f}" if self.model.auxiliary_term else ""
        return f"rec {terms.reconstruction:.2f} kl {terms.kl:.2f}{aux} total {terms.total:.2f}"

    def _metrics_row(self, train_terms: TermMeans, val_terms: TermMeans, n_active: int, samples_per_s: float,
                     seconds: float) -> dict[str, Any]:
        sigma = getattr(self.model, "sigma", None)
        sigma2 = sigma.image_sigma2() if sigma is not None else float("nan")
        return metrics_row(self.epoch, self.step, train_terms, val_terms, self.train_config.kl_weight(self.step - 1),
                           self.optimizer.param_groups[0]["lr"], sigma2, n_active, samples_per_s, seconds)

    def _restore(self, checkpoint: dict[str, Any]) -> None:
        self.epoch, self.step, self.best_val_loss = restore_training(
            checkpoint, self.run, self.model, self.optimizer, self.scheduler, self.scaler, self.group.rank,
            self.augment_generator)
        self._apply_optimizer_settings(checkpoint["config"]["train"])
        log.info("resumed from epoch %d, step %d (best val loss %.2f)", self.epoch, self.step, self.best_val_loss)


    def _apply_optimizer_settings(self, saved: dict[str, Any]) -> None:
        """Train on at this config's lr, betas and weight decay, not the checkpoint's (restored above).

        The schedule's multiplier at the current step (warm-up, cosine over this config's epochs) is
        applied to the new peak lr, as if the run had had it from the start.
        """
        config = self.train_config
        for group in self.optimizer.param_groups:
            group.update(initial_lr=config.lr, betas=config.betas, weight_decay=config.weight_decay)
            group["lr"] = config.lr * self.scheduler.lr_lambdas[0](self.scheduler.last_epoch)
        self.scheduler.base_lrs = [config.lr] * len(self.optimizer.param_groups)
        self.scheduler._last_lr = [group["lr"] for group in self.optimizer.param_groups]
        for key in ("lr", "betas", "weight_decay", "schedule", "lr_warmup_steps", "min_lr_ratio", "epochs"):
            old, new = saved.get(key), self.train_config.to_dict()[key]
            if old is not None and old != new:
                log.warning("--resume: train.%s changed from %s to %s; training continues with %s (lr now %.3g)",
                            key, old, new, new, self.optimizer.param_groups[0]["lr"])


def _seed_everything(seed: int, deterministic: bool) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.benchmark = not deterministic  # fixed 64³ shapes: let cuDNN pick its fastest kernels


def _to_device(data: LabelledImages, device: torch.device) -> LabelledImages:
    return LabelledImages(data.images.to(device), data.table)
