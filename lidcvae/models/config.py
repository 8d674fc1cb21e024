"""The ``model`` config section as typed objects (keys and meanings: lidcvae/schemas/model.yaml).

One ``model:`` section in a config, keyed by ``name``; ``ModelConfig.from_mapping(section)`` builds the
type registered for that name (``ConvVAE3dConfig`` or ``MLPVAEConfig``), each with only its own keys.
Every optional part of the conv model is one sub-section switched by ``enabled`` (``mask_pooling``,
``histogram_view``, ``bn_vae``); with ``enabled: false`` its other keys are ignored. Requirements between
parts (the consensus mask as input channel 1) are checked here, once, when the section is built.

A checkpoint stores its whole resolved model section; ``model_config_from_stored`` reads it back,
translating the spellings of "off" used before ``enabled`` existed, and refuses one that lacks a key.
"""

from __future__ import annotations

import copy
import dataclasses
import typing
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from lidcvae.config import ConfigError, Section

__all__ = ["ModelConfig", "ConvVAE3dConfig", "MLPVAEConfig", "SigmaConfig", "FixedSigmaConfig", "BnVaeConfig",
           "ReconstructionWeightConfig", "ContextConfig", "MaskPoolingConfig", "HistogramViewConfig",
           "MODEL_CONFIGS", "model_config_from_stored"]


@dataclass(frozen=True)
class SigmaConfig(Section):
    """``model.sigma`` of ``conv_vae3d``: the Gaussian decoder's σ, fixed or calibrated to the batch MSE."""

    SECTION: ClassVar[str] = "model.sigma"
    mode: str
    log_sigma2: float
    momentum: float
    per_channel: bool


@dataclass(frozen=True)
class FixedSigmaConfig(Section):
    """``model.sigma`` of ``mlp_vae``: the fixed log σ² of its Gaussian decoder (unused by Bernoulli)."""

    SECTION: ClassVar[str] = "model.sigma"
    log_sigma2: float


@dataclass(frozen=True)
class BnVaeConfig(Section):
    """``model.bn_vae``: batch-normalised posterior mean with a fixed scale γ."""

    SECTION: ClassVar[str] = "model.bn_vae"
    enabled: bool
    gamma: float


@dataclass(frozen=True)
class ReconstructionWeightConfig(Section):
    """``model.reconstruction_weight``: per-voxel weight w = 1 + (peak − 1)·g of the squared error
    (``lidcvae.models.weighting``); ``kind`` chooses g (uniform / gaussian / mask), there is no "off";
    ``sigma_voxels`` and ``dilate_voxels`` in voxels."""

    SECTION: ClassVar[str] = "model.reconstruction_weight"
    kind: str
    peak: float
    sigma_voxels: float
    dilate_voxels: int


@dataclass(frozen=True)
class ContextConfig(Section):
    """``model.context``: the whole patch (``full``), or only the consensus mask dilated by
    ``dilate_voxels`` voxels with every other voxel at ``fill_hu`` HU (``nodule``); a choice, not a switch."""

    SECTION: ClassVar[str] = "model.context"
    kind: str
    dilate_voxels: int
    fill_hu: float


@dataclass(frozen=True)
class MaskPoolingConfig(Section):
    """``model.mask_pooling``: encoder ``levels`` and a soft histogram of the image (``histogram_bins``,
    0 = levels only) averaged over the consensus mask (and over its edge band when ``edge``) into μ and
    log σ² (``lidcvae.models.pooling``); ``enabled: false`` = MONAI's encoder alone."""

    SECTION: ClassVar[str] = "model.mask_pooling"
    enabled: bool
    levels: tuple[int, ...]
    edge: bool
    histogram_bins: int

    def __post_init__(self) -> None:
        if not self.enabled:
            return
        if not self.levels and not self.histogram_bins:
            raise ConfigError("model.mask_pooling: levels [] with histogram_bins 0 pools nothing; "
                              "to switch mask pooling off say model.mask_pooling.enabled: false")
        if self.histogram_bins == 1:
            raise ConfigError("model.mask_pooling.histogram_bins: expected 0 (no histogram) or at least 2, got 1")


@dataclass(frozen=True)
class HistogramViewConfig(Section):
    """``model.histogram_view``: z also decodes the nodule's density histogram (``bins`` per region, over
    the mask and its edge band), its log-likelihood weighted by ``weight`` (``lidcvae.models.histogram_view``);
    ``enabled: false`` = no second view."""

    SECTION: ClassVar[str] = "model.histogram_view"
    enabled: bool
    bins: int
    weight: float

    def __post_init__(self) -> None:
        if self.enabled and self.bins < 2:
            raise ConfigError(f"model.histogram_view.bins: expected at least 2, got {self.bins} "
                              "(to switch the histogram view off say model.histogram_view.enabled: false)")


@dataclass(frozen=True)
class ModelConfig(Section):
    """The ``model`` section: ``name`` picks the model and with it the typed class of the section
    (``MODEL_CONFIGS``); build with ``ModelConfig.from_mapping(section)``."""

    SECTION: ClassVar[str] = "model"
    name: str
    latent_size: int

    @classmethod
    def class_for(cls, values: Mapping[str, Any]) -> type[ModelConfig]:
        """The typed class of a validated section: the one registered for ``values['name']``."""
        chosen = MODEL_CONFIGS[values["name"]]
        if not issubclass(chosen, cls):
            raise ConfigError(f"model.name: {values['name']!r} is built by {chosen.__name__}, not {cls.__name__}")
        return chosen


@dataclass(frozen=True)
class ConvVAE3dConfig(ModelConfig):
    """``model`` with ``name: conv_vae3d``: the 3D convolutional VAE, its input and its optional parts.

    Attributes (units): ``input_size`` voxels per edge; ``mask_channel`` adds the consensus mask as input
    channel 1; ``mask_pooling`` encoder levels and the image's histogram averaged over that mask into the
    posterior; ``histogram_view`` the nodule's density histogram decoded from z; ``hu_window`` (lower,
    upper) HU mapped to [0, 1].
    """

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

    def __post_init__(self) -> None:
        if not self.mask_channel:
            needing = [key for key, needs in self._mask_channel_users() if needs]
            if needing:
                one = len(needing) == 1
                raise ConfigError(f"{' and '.join(needing)} need{'s' if one else ''} model.mask_channel: true ("
                                  f"{'it reads' if one else 'they read'} the consensus mask, input channel 1); "
                                  f"turn {'it' if one else 'them'} off or model.mask_channel on")

    def _mask_channel_users(self) -> tuple[tuple[str, bool], ...]:
        """(key, whether it is on) of each option that reads the consensus-mask channel."""
        return (("model.mask_pooling.enabled", self.mask_pooling.enabled),
                ("model.histogram_view.enabled", self.histogram_view.enabled),
                ("model.reconstruction_weight.kind 'mask'", self.reconstruction_weight.kind == "mask"))

    @property
    def in_channels(self) -> int:
        """Input channels: the windowed image, and the consensus mask with ``mask_channel``."""
        return 2 if self.mask_channel else 1


@dataclass(frozen=True)
class MLPVAEConfig(ModelConfig):
    """``model`` with ``name: mlp_vae``: the MNIST multilayer perceptron (``lidcvae.models.mlp``).

    Attributes:
        hidden_sizes: encoder hidden layer widths, input side first; the decoder mirrors them.
        likelihood: "bernoulli" (decoded = logits) or "gaussian" (decoded = mean, σ² fixed by ``sigma``).
        event_shape: one input sample without the batch axis; None = one MNIST digit, (1, 28, 28).
        sigma: the Gaussian decoder's fixed log σ² (ignored for Bernoulli).
    """

    hidden_sizes: tuple[int, ...]
    likelihood: str
    event_shape: tuple[int, ...] | None
    sigma: FixedSigmaConfig


MODEL_CONFIGS: dict[str, type[ModelConfig]] = {"conv_vae3d": ConvVAE3dConfig, "mlp_vae": MLPVAEConfig}


def model_config_from_stored(mapping: Mapping[str, Any] | None, source: str = "checkpoint") -> ModelConfig:
    """The typed model section a checkpoint stored (``to_dict()`` of the run's section).

    The stored record is the whole resolved section, so no default is filled in: only the spellings of
    "off" from before ``enabled`` existed are translated (``mask_pooling: {levels: [], histogram_bins: 0}``
    and ``histogram_view: {bins: 0}`` become ``enabled: false``, any other stored values ``enabled: true``),
    and the other model's keys of the old single section (``hidden_sizes`` in a conv model ...) dropped.

    Raises:
        ConfigError: the record is not a mapping, or lacks a key (written by an older lidcvae), naming it.
    """
    if not isinstance(mapping, Mapping) or mapping.get("name") not in MODEL_CONFIGS:
        raise ConfigError(f"{source}: no stored model section with a known model.name ({sorted(MODEL_CONFIGS)})")
    stored = _translated(copy.deepcopy(dict(mapping)))
    missing = sorted(_missing_keys(MODEL_CONFIGS[stored["name"]], stored, "model"))
    if missing:
        raise ConfigError(f"{source}: the stored model section lacks {', '.join(missing)}; it was written by an older "
                          "lidcvae, whose checkpoints this version does not read (train the model again)")
    return ModelConfig.from_mapping(stored, source)


def _translated(stored: dict[str, Any]) -> dict[str, Any]:
    """Old spellings in a stored section → today's (see ``model_config_from_stored``)."""
    own = {field.name for field in dataclasses.fields(MODEL_CONFIGS[stored["name"]])}
    stored = {key: value for key, value in stored.items() if key in own}
    if stored["name"] == "mlp_vae" and isinstance(stored.get("sigma"), Mapping):
        stored["sigma"] = {key: value for key, value in stored["sigma"].items() if key == "log_sigma2"}
    pooling, view = stored.get("mask_pooling"), stored.get("histogram_view")
    if isinstance(pooling, dict) and "enabled" not in pooling and {"levels", "histogram_bins"} <= set(pooling):
        pooling["enabled"] = bool(pooling["levels"] or pooling["histogram_bins"])
    if isinstance(view, dict) and "enabled" not in view and "bins" in view:
        view["enabled"] = bool(view["bins"])
    return stored


def _missing_keys(cls: type, stored: Mapping[str, Any], prefix: str) -> Iterator[str]:
    """Dotted keys of ``cls``'s fields (nested sections too) that ``stored`` lacks."""
    hints = typing.get_type_hints(cls)
    for field in dataclasses.fields(cls):
        key = f"{prefix}.{field.name}"
        if field.name not in stored:
            yield key
        elif dataclasses.is_dataclass(hints[field.name]) and isinstance(stored[field.name], Mapping):
            yield from _missing_keys(hints[field.name], stored[field.name], key)
