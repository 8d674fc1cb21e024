"""The ``model`` config section as a typed object (keys and meanings: lidcvae/schemas/model.yaml).

One object for every registered model: ``name`` picks the class, and each class reads the keys it
uses (``hidden_sizes``, ``likelihood`` and ``event_shape`` are the MLP's; the rest the 3D model's).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from lidcvae.config import Section

__all__ = ["ModelConfig", "SigmaConfig", "BnVaeConfig", "ReconstructionWeightConfig", "ContextConfig",
           "MaskPoolingConfig", "HistogramViewConfig"]


@dataclass(frozen=True)
class SigmaConfig(Section):
    """``model.sigma``: the Gaussian decoder's σ, fixed or calibrated to the batch MSE."""

    SECTION: ClassVar[str] = "model.sigma"
    mode: str
    log_sigma2: float
    momentum: float
    per_channel: bool


@dataclass(frozen=True)
class BnVaeConfig(Section):
    """``model.bn_vae``: batch-normalised posterior mean with a fixed scale γ."""

    SECTION: ClassVar[str] = "model.bn_vae"
    enabled: bool
    gamma: float


@dataclass(frozen=True)
class ReconstructionWeightConfig(Section):
    """``model.reconstruction_weight``: per-voxel weight w = 1 + (peak − 1)·g of the squared error
    (``lidcvae.models.weighting``); ``sigma_voxels`` and ``dilate_voxels`` in voxels."""

    SECTION: ClassVar[str] = "model.reconstruction_weight"
    kind: str
    peak: float
    sigma_voxels: float
    dilate_voxels: int


@dataclass(frozen=True)
class ContextConfig(Section):
    """``model.context``: the whole patch (``full``), or only the consensus mask dilated by
    ``dilate_voxels`` voxels with every other voxel at ``fill_hu`` HU (``nodule``)."""

    SECTION: ClassVar[str] = "model.context"
    kind: str
    dilate_voxels: int
    fill_hu: float


@dataclass(frozen=True)
class MaskPoolingConfig(Section):
    """``model.mask_pooling``: encoder ``levels`` and a soft histogram of the image (``histogram_bins``)
    averaged over the consensus mask (and over its edge band when ``edge``) into μ and log σ²
    (``lidcvae.models.pooling``); no levels and no bins = MONAI's encoder alone."""

    SECTION: ClassVar[str] = "model.mask_pooling"
    levels: tuple[int, ...]
    edge: bool
    histogram_bins: int

    @property
    def enabled(self) -> bool:
        """Whether anything is pooled (levels or the histogram), i.e. whether the model has the head."""
        return bool(self.levels or self.histogram_bins)


@dataclass(frozen=True)
class HistogramViewConfig(Section):
    """``model.histogram_view``: z also decodes the nodule's density histogram (``bins`` per region, over
    the mask and its edge band), its log-likelihood weighted by ``weight`` (``lidcvae.models.histogram_view``);
    0 bins = off."""

    SECTION: ClassVar[str] = "model.histogram_view"
    bins: int
    weight: float


@dataclass(frozen=True)
class ModelConfig(Section):
    """The VAE's architecture, decoder and input scale; built by ``ModelConfig.from_mapping(section)``.

    Attributes (units): ``input_size`` voxels per edge; ``mask_channel`` adds the consensus mask as input
    channel 1; ``mask_pooling`` encoder levels and the image's histogram averaged over that mask into the
    posterior; ``histogram_view`` the nodule's density histogram decoded from z; ``hu_window`` (lower,
    upper) HU mapped to [0, 1].
    """

    SECTION: ClassVar[str] = "model"
    name: str
    latent_size: int
    input_size: int
    mask_channel: bool
    mask_pooling: MaskPoolingConfig
    histogram_view: HistogramViewConfig
    reconstruction_weight: ReconstructionWeightConfig
    context: ContextConfig
    hu_window: tuple[float, float]
    channels: tuple[int, ...]
    strides: tuple[int, ...]
    kernel_size: int
    num_res_units: int
    norm: Any
    act: Any
    dropout: float
    decoder_output: str
    logvar_range: tuple[float, float]
    sigma: SigmaConfig
    bn_vae: BnVaeConfig
    hidden_sizes: tuple[int, ...]
    likelihood: str
    event_shape: tuple[int, ...] | None

    @classmethod
    def from_checkpoint(cls, mapping: dict[str, Any] | None, source: str = "checkpoint") -> ModelConfig:
        """The ``model`` section stored in a checkpoint. A key the checkpoint predates takes the value its
        model was trained with, not today's default (``PREDATED``): it saw the whole patch with one σ²,
        flattened its last encoder level only, pooled no histogram and decoded none."""
        mapping = dict(mapping or {})
        nested = {key: {**PREDATED[key], **mapping.get(key, {})} for key in ("sigma", "mask_pooling", "histogram_view")}
        return cls.from_mapping({**PREDATED, **mapping, **nested}, source)


# What a checkpoint written before a model key existed was trained with (see ModelConfig.from_checkpoint).
PREDATED: dict[str, Any] = {"context": {"kind": "full"}, "sigma": {"per_channel": False},
                            "mask_pooling": {"levels": [], "histogram_bins": 0}, "histogram_view": {"bins": 0}}
