"""One optimisation step of the negative ELBO, and the guard that stops a run on NaN/Inf."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import nn

from lidcvae.losses import free_bits_kl, kl_standard_normal, negative_elbo
from lidcvae.models import VAE, VAEOutput
from lidcvae.train.config import GradClip

__all__ = ["NonFiniteError", "TERM_LABELS", "LossTerms", "StepValues", "loss_terms", "backward_and_step", "check_finite"]


class NonFiniteError(RuntimeError):
    """A loss term or the gradient became NaN/Inf; the message names the step and the term."""


# How a NaN/Inf message names each value, checked in this order.
TERM_LABELS = {"reconstruction": "reconstruction term", "kl": "KL term", "auxiliary": "auxiliary term",
               "total": "total loss", "grad_norm": "gradient norm"}


@dataclass
class LossTerms:
    """Batch means in nats per sample: ``total`` = ``reconstruction`` + β·``kl`` + ``auxiliary`` (see
    ``loss_terms``); (B, D) posterior means."""

    total: torch.Tensor
    reconstruction: torch.Tensor
    kl: torch.Tensor
    auxiliary: torch.Tensor
    posterior_mean: torch.Tensor


class StepValues(NamedTuple):
    """One optimisation step's loss terms (nats per sample, batch means) and gradient norm, as floats."""

    reconstruction: float
    kl: float
    auxiliary: float
    total: float
    grad_norm: float


def loss_terms(
    forward: Callable[[torch.Tensor], VAEOutput],
    model: VAE,
    x: torch.Tensor,
    beta: float,
    autocast_dtype: torch.dtype | None = None,
    *,
    free_bits: float,
) -> LossTerms:
    """Negative ELBO of a batch: −log p(x|z) (Gaussian or Bernoulli, via the model) + β·KL(q(z|x) ‖ N(0, I)),
    plus ``auxiliary`` = −``auxiliary_log_likelihood`` of whatever summary of x the model also decodes
    (the density histogram, ``model.histogram_view``; 0 for models without one). ``reconstruction``
    stays the image's, as in the evaluation's ELBO, so the logged values compare across models.

    The network runs under autocast when ``autocast_dtype`` is set; the likelihood and KL are summed
    in float32, since a sum over 64³ voxels loses too much in bf16.

    Args:
        forward: the callable running the network (the model, or its DDP / compiled wrapper).
        model: the bare model, for ``log_likelihood``.
        x: (B, *event_shape) batch in model input scale.
        beta: KL weight for this step.
        autocast_dtype: e.g. torch.bfloat16, or None for full precision.
        free_bits: ``train.free_bits``; λ > 0 optimises Σ_d max(λ, batch-mean KL_d) in place of the KL
            (``total`` only; ``kl`` stays the true KL), 0 the plain KL.
    """
    with torch.autocast(x.device.type, dtype=autocast_dtype or torch.float32, enabled=autocast_dtype is not None):
        output = forward(x)
    log_likelihood = model.log_likelihood(x, output.decoded.float())
    kl = kl_standard_normal(output.posterior_mean.float(), output.posterior_logvar.float())
    total, reconstruction, kl_mean = negative_elbo(log_likelihood, kl, beta)
    if free_bits > 0:
        kl_floored = free_bits_kl(output.posterior_mean.float(), output.posterior_logvar.float(), free_bits)
        total = reconstruction + beta * kl_floored
    auxiliary = -model.auxiliary_log_likelihood(x, output.z.float()).mean()
    return LossTerms(total + auxiliary, reconstruction, kl_mean, auxiliary, output.posterior_mean.detach())


def backward_and_step(
    terms: LossTerms,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    grad_clip: GradClip,
    step: int,
) -> StepValues:
    """Backpropagate, check every term and the gradient norm, clip, and step the optimizer.

    Returns:
        the step's terms and gradient norm as floats (one device sync per step).

    Raises:
        NonFiniteError: before the optimizer step, so the weights stay as they were.
    """
    optimizer.zero_grad(set_to_none=True)
    terms.total.backward()
    parameters = [p for p in model.parameters() if p.grad is not None]
    grad_norm = torch.nn.utils.get_total_norm([p.grad for p in parameters])
    values = StepValues(*torch.stack([terms.reconstruction.detach(), terms.kl.detach(), terms.auxiliary.detach(),
                                      terms.total.detach(), grad_norm]).tolist())
    check_finite(values, step, model)
    if grad_clip.mode == "norm":
        torch.nn.utils.clip_grads_with_norm_(parameters, grad_clip.max, grad_norm)
    elif grad_clip.mode == "value":
        torch.nn.utils.clip_grad_value_(parameters, grad_clip.max)
    optimizer.step()
    return values


def check_finite(values: StepValues, step: int, model: nn.Module) -> None:
    """Raise ``NonFiniteError`` naming the first bad value of a step (terms, then the gradient norm).

    The message says what stopped; the trainer adds which checkpoint is kept (it knows whether one exists).
    """
    for field, value in values._asdict().items():
        if not math.isfinite(value):
            name = TERM_LABELS[field]
            where = f" ({_nonfinite_gradient_source(model)})" if field == "grad_norm" else ""
            raise NonFiniteError(f"step {step}: {name} is {value}{where}; stopping without taking this step.")


def _nonfinite_gradient_source(model: nn.Module) -> str:
    """The first parameter whose gradient is NaN/Inf, or, when each is finite and only their norm overflowed,
    the parameter with the largest gradient."""
    largest, largest_name = -1.0, "no parameter"
    for name, parameter in model.named_parameters():
        if parameter.grad is None:
            continue
        if not torch.isfinite(parameter.grad).all():
            return f"first in the grad of {name}"
        peak = parameter.grad.detach().abs().max().item()
        if peak > largest:
            largest, largest_name = peak, name
    return (f"every gradient is finite, their norm overflowed: the largest is in the grad of {largest_name}, "
            f"|g| up to {largest:.3g}")
