"""Model registry: a config's ``model.name`` picks the class, no if/elif chains.

Entries are import paths, resolved on first use, so importing the registry stays cheap.
"""

from __future__ import annotations

from importlib import import_module
from lidcvae.models.base import VAE, VAEOutput, reparameterize
from lidcvae.models.config import ModelConfig

__all__ = ["MODELS", "ModelConfig", "build_model", "VAE", "VAEOutput", "reparameterize"]

MODELS: dict[str, str] = {
    "conv_vae3d": "lidcvae.models.conv3d:ConvVAE3d",
    "mlp_vae": "lidcvae.models.mlp:MLPVAE",
}


def build_model(model: ModelConfig) -> VAE:
    """Instantiate the model named by ``model.name`` from the typed ``model`` section."""
    if not isinstance(model, ModelConfig):
        raise TypeError(f"build_model takes a ModelConfig (ModelConfig.from_mapping(section)), got {type(model).__name__}")
    if model.name not in MODELS:
        raise KeyError(f"model.name: unknown model {model.name!r}; known: {sorted(MODELS)}")
    module_name, class_name = MODELS[model.name].split(":")
    model_class = getattr(import_module(module_name), class_name)
    return model_class.from_config(model)
