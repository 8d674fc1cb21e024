"""3D convolutional VAE for single-channel CT nodule patches, built on MONAI's ``VarAutoEncoder``.

The network (strided convolutions down, transposed convolutions up, linear layers to and from the
latent code) is MONAI's; this module adds what the project's ``VAE`` interface needs:

- a Gaussian decoder whose σ is either fixed from config or *calibrated*: σ² is set to the batch mean
  squared error, its maximum-likelihood value (Rybkin et al. 2021, "Simple and Effective VAE Training
  with Calibrated Decoders", arXiv 2006.13202). That removes the hand-tuned σ² of the seeds;
- a clamp on the predicted log-variance, so exp(logvar) can neither overflow nor vanish;
- optionally mask pooling: encoder levels averaged over the consensus mask feed μ and log σ² beside the
  flattened last level, so the codes carry a nodule's density apart from its size (``lidcvae.models.pooling``);
- optionally a second view: z also decodes the nodule's density histogram, whose likelihood joins the
  image's in the training loss (``lidcvae.models.histogram_view``);
- optionally BN-VAE: the posterior mean goes through a batch norm whose scale γ is *fixed*, which keeps
  the expected KL above a positive floor and prevents posterior collapse (Zhu et al. 2020,
  arXiv 2004.12585).

Each optional part is switched by ``enabled`` in its own config section (``ConvVAE3dConfig``).
"""

from __future__ import annotations

import logging
import math
from typing import Any

import torch
from monai.networks.nets import VarAutoEncoder
from torch import nn

from lidcvae.losses import gaussian_log_likelihood
from lidcvae.models.base import VAE
from lidcvae.models.config import ConvVAE3dConfig
from lidcvae.models.histogram_view import HistogramView, NoHistogramView
from lidcvae.models.pooling import MaskPooledHead, NoPooling
from lidcvae.models.weighting import ReconstructionWeight

__all__ = ["ConvVAE3d", "CalibratedSigma", "FixedScaleBatchNorm"]

logger = logging.getLogger(__name__)

# The σ mode was called "learned" until it was renamed for what it does; old configs and checkpoints still load.
DEPRECATED_SIGMA_MODES = {"learned": "calibrated"}

# σ ≥ 1e-3 in [0, 1] intensity units (~1.4 HU): a perfect reconstruction must not send log σ² to −∞.
MIN_LOG_SIGMA2 = math.log(1e-6)


class CalibratedSigma(nn.Module):
    """Decoder variance σ², fixed or calibrated to the batch mean squared error.

    In ``calibrated`` mode, training batches set σ² = mean((x − x̂)²) over every element of the batch
    (detached: at this optimum ∂loss/∂σ = 0, so the gradient wrt the network is unchanged), and a
    running estimate is kept in the buffer ``log_sigma2`` (like BatchNorm's running statistics) for
    eval mode. In ``fixed`` mode σ² = exp(``log_sigma2``) always.

    Args:
        mode: ``"fixed"`` or ``"calibrated"`` (``"learned"`` is a deprecated alias of ``"calibrated"``).
        log_sigma2: the fixed log σ², and the starting value of the running estimate.
        momentum: weight of the newest batch in the running estimate.
        channels: 1 for one σ² shared by every element; C for one σ² per channel of (B, C, ...) inputs,
            each calibrated to its own channel's error (the buffer is then (C,)).
    """

    def __init__(self, mode: str, log_sigma2: float, momentum: float, channels: int) -> None:
        super().__init__()
        if mode in DEPRECATED_SIGMA_MODES:
            logger.warning("model.sigma.mode: %r is deprecated, use %r (σ² is calibrated to the batch MSE, not "
                           "learned by gradient descent)", mode, DEPRECATED_SIGMA_MODES[mode])
            mode = DEPRECATED_SIGMA_MODES[mode]
        if mode not in ("fixed", "calibrated"):
            raise ValueError(f"model.sigma.mode: expected 'fixed' or 'calibrated', got {mode!r}")
        self.mode = mode
        self.momentum = momentum
        self.channels = channels
        shape = () if channels == 1 else (channels,)
        self.register_buffer("log_sigma2", torch.full(shape, float(log_sigma2)))

    def forward(self, x: torch.Tensor, mean: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
        """log σ² to use for this batch, a scalar or (1, C, 1, …) per channel; updates the running
        estimate when training.

        With a reconstruction weight w, the calibrated σ² is the weighted mean squared error, the
        optimum of the weighted likelihood (per channel: of that channel's elements).
        """
        if self.mode == "fixed" or not self.training:
            return self._broadcast(self.log_sigma2, x)
        squared_error = (x.detach().float() - mean.detach().float()).pow(2)
        weighted = squared_error if weight is None else squared_error * weight
        batch_mse = weighted.mean() if self.channels == 1 else weighted.transpose(0, 1).flatten(1).mean(dim=1)
        log_sigma2 = batch_mse.log().clamp(min=MIN_LOG_SIGMA2)
        with torch.no_grad():
            self.log_sigma2.lerp_(log_sigma2, self.momentum)
        return self._broadcast(log_sigma2, x)

    def _broadcast(self, log_sigma2: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """(C,) → (1, C, 1, …) against x (B, C, …); a scalar stays a scalar."""
        return log_sigma2 if self.channels == 1 else log_sigma2.reshape(1, -1, *([1] * (x.dim() - 2)))

    def image_sigma2(self) -> float:
        """The running σ² of the image (channel 0 when per channel), for training logs."""
        return float(self.log_sigma2.reshape(-1)[0].exp())


class FixedScaleBatchNorm(nn.Module):
    """BN-VAE posterior mean: μ' = γ·(μ − E_B[μ]) / sd_B[μ] + b, with γ fixed and b learned.

    With every dimension's μ normalised to variance γ², the expected KL per dimension is at least
    γ²/2 (arXiv 2004.12585, eq. 6), so no dimension can collapse onto the prior.

    Args:
        latent_size: D.
        gamma: the fixed scale γ.
    """

    def __init__(self, latent_size: int, gamma: float) -> None:
        super().__init__()
        self.norm = nn.BatchNorm1d(latent_size, affine=False)
        self.gamma = gamma
        self.shift = nn.Parameter(torch.zeros(latent_size))

    def forward(self, posterior_mean: torch.Tensor) -> torch.Tensor:
        """(B, D) → (B, D)."""
        return self.gamma * self.norm(posterior_mean) + self.shift


class ConvVAE3d(VAE):
    """3D convolutional VAE with a Gaussian decoder on windowed intensities in [0, 1].

    Every optional part is a module that is always there, built once by ``from_config``: switched off it
    is one that changes nothing (``nn.Identity``, ``NoPooling``, ``NoHistogramView``), so ``encode`` and the
    likelihoods never test a switch.

    Args:
        input_size: edge S of the cubic input; inputs are (B, C, S, S, S).
        latent_size: D.
        channels: encoder channels per level, e.g. (32, 64, 128, 256); the decoder mirrors them.
        strides: stride per level; 2 halves the edge.
        kernel_size: convolution kernel edge.
        num_res_units: MONAI residual units per level (0 = plain convolutions).
        norm: MONAI norm name or (name, kwargs), e.g. ``"batch"``.
        act: MONAI activation name or (name, kwargs), e.g. ``("leakyrelu", {"negative_slope": 0.2})``.
        dropout: dropout probability inside the conv blocks.
        decoder_output: ``"linear"`` or ``"sigmoid"`` on the decoder mean.
        sigma: the decoder σ (see ``CalibratedSigma``).
        logvar_range: (low, high) clamp of the posterior log-variance.
        hu_window: (lower, upper) HU mapped to [0, 1]; stored so a checkpoint alone says how to map HU.
        in_channels: C, 1 (HU image) or 2 (image and consensus mask, encoded and reconstructed together).
        reconstruction_weight: per-voxel weights of the squared error (see ``ReconstructionWeight``).
        posterior_norm: (B, D) → (B, D) on the posterior mean: ``FixedScaleBatchNorm`` (BN-VAE) or identity.
        mask_pooling: encoder levels and the image's soft histogram averaged over the mask channel into
            the posterior (``MaskPooledHead``), or ``NoPooling`` for MONAI's flatten alone.
        histogram_view: the density histogram decoded from z (``HistogramView``), or ``NoHistogramView``.

    Example::

        model = ConvVAE3d.from_config(ConvVAE3dConfig.from_mapping({"channels": [32, 64, 128, 256]}))
        out = model(torch.rand(2, 2, 32, 32, 32))  # out.decoded: (2, 2, 32, 32, 32), out.z: (2, 256)
    """

    def __init__(
        self,
        *,
        input_size: int,
        latent_size: int,
        channels: tuple[int, ...],
        strides: tuple[int, ...],
        kernel_size: int,
        num_res_units: int,
        norm: Any,
        act: Any,
        dropout: float,
        decoder_output: str,
        sigma: CalibratedSigma,
        logvar_range: tuple[float, float],
        hu_window: tuple[float, float],
        in_channels: int,
        reconstruction_weight: ReconstructionWeight,
        posterior_norm: nn.Module,
        mask_pooling: nn.Module,
        histogram_view: nn.Module,
    ) -> None:
        super().__init__()
        self.latent_size = latent_size
        self.event_shape = (in_channels, input_size, input_size, input_size)
        self.network = VarAutoEncoder(
            spatial_dims=3,
            in_shape=self.event_shape,
            out_channels=in_channels,
            latent_size=latent_size,
            channels=tuple(channels),
            strides=tuple(strides),
            kernel_size=kernel_size,
            up_kernel_size=kernel_size,
            num_res_units=num_res_units,
            act=_monai_layer_spec(act),
            norm=_monai_layer_spec(norm),
            dropout=dropout or None,
            use_sigmoid=decoder_output == "sigmoid",
            use_mean_at_inference=True,  # never used by encode/decode below; set for anyone calling network(x)
        )
        self.sigma = sigma
        self.logvar_range = tuple(logvar_range)
        self.posterior_norm = posterior_norm
        self.hu_window = tuple(float(v) for v in hu_window)
        self.reconstruction_weight = reconstruction_weight
        self.mask_pooling = mask_pooling
        self.histogram_view = histogram_view

    @classmethod
    def from_config(cls, model: ConvVAE3dConfig) -> ConvVAE3d:
        """Build from the typed ``model`` section (lidcvae/schemas/model.yaml); the section has already
        checked that the parts fit together (the mask channel)."""
        # The heads are built before the network, as they always were: the same seed draws the same weights.
        head, view = _mask_pooling(model), _histogram_view(model)
        built = cls(
            input_size=model.input_size,
            latent_size=model.latent_size,
            channels=model.channels,
            strides=model.strides,
            kernel_size=model.kernel_size,
            num_res_units=model.num_res_units,
            norm=model.norm,
            act=model.act,
            dropout=model.dropout,
            decoder_output=model.decoder_output,
            sigma=CalibratedSigma(model.sigma.mode, model.sigma.log_sigma2, model.sigma.momentum,
                                  channels=model.in_channels if model.sigma.per_channel else 1),
            logvar_range=model.logvar_range,
            hu_window=model.hu_window,
            in_channels=model.in_channels,
            reconstruction_weight=ReconstructionWeight.from_config(model.reconstruction_weight),
            posterior_norm=(FixedScaleBatchNorm(model.latent_size, model.bn_vae.gamma) if model.bn_vae.enabled
                            else nn.Identity()),
            mask_pooling=head,
            histogram_view=view,
        )
        if model.histogram_view.enabled:
            built.auxiliary_term = (f"−{model.histogram_view.weight:g}·log p(h|z) of the decoded density histogram "
                                    "(model.histogram_view)")
        return built

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, C, S, S, S) in [0, 1] → posterior mean and clamped log-variance, each (B, D).

        MONAI's ``encode_forward`` with every level's output kept for the mask-pooled head, whose terms
        are added to μ and log σ² (zero without one).
        """
        network, level_features, features = self.network, [], x
        for level in network.encode:
            features = level(features)
            level_features.append(features)
        flat = network.intermediate(features).flatten(1)
        mean_term, logvar_term = self.mask_pooling(level_features, x[:, :1], x[:, 1:2])
        posterior_mean = self.posterior_norm(network.mu(flat) + mean_term)
        return posterior_mean, (network.logvar(flat) + logvar_term).clamp(*self.logvar_range)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """(B, D) → decoder mean (B, C, S, S, S) in intensity units."""
        return self.network.decode_forward(z, self.network.use_sigmoid)

    def log_sigma2(self, x: torch.Tensor, decoded: torch.Tensor) -> torch.Tensor:
        """The decoder log σ² for this batch (scalar); in calibrated mode while training, log of the batch MSE."""
        return self.sigma(x, decoded, self.reconstruction_weight(x))

    def log_likelihood(self, x: torch.Tensor, decoded: torch.Tensor) -> torch.Tensor:
        """log N(x; x̂, σ²I) summed over voxels (weighted by w(x) ≥ 1 when configured), nats, (B,); float32."""
        decoded = decoded.float()
        weight = self.reconstruction_weight(x)
        return gaussian_log_likelihood(x.float(), decoded, self.sigma(x, decoded, weight), weight)

    def auxiliary_log_likelihood(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """λ·log p(h(x)|z) of the density histogram (0 without ``histogram_view``); nats, (B,)."""
        return self.histogram_view.log_likelihood(x, z)


def _mask_pooling(model: ConvVAE3dConfig) -> nn.Module:
    """``MaskPooledHead`` of ``model.mask_pooling``, or ``NoPooling`` when it is not enabled."""
    pooling = model.mask_pooling
    if not pooling.enabled:
        return NoPooling()
    return MaskPooledHead(pooling.levels, model.channels, model.latent_size, edge=pooling.edge,
                          histogram_bins=pooling.histogram_bins)


def _histogram_view(model: ConvVAE3dConfig) -> nn.Module:
    """``HistogramView`` of ``model.histogram_view`` with its own calibrated σ², or ``NoHistogramView``."""
    view = model.histogram_view
    if not view.enabled:
        return NoHistogramView()
    return HistogramView(model.latent_size, view.bins, view.weight,
                         CalibratedSigma("calibrated", 0.0, model.sigma.momentum, channels=1))


def _monai_layer_spec(spec: Any) -> Any:
    """YAML lists → the (name, kwargs) tuples MONAI's layer factories expect."""
    if isinstance(spec, (list, tuple)):
        return tuple(spec)
    return spec
