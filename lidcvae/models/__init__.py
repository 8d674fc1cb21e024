"""Model registry: a config's ``model.name`` picks the class, no if/elif chains.

Entries are import paths, resolved on first use, so importing the registry stays cheap.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

from lidcvae.models.base import VAE, VAEOutput, reparameterize

__all__ = ["MODELS", "build_model", "VAE", "VAEOutput", "reparameterize"]

MODELS: dict[str, str] = {
    "conv_vae3d": "lidcvae.models.conv3d:ConvVAE3d",
    "mlp_vae": "lidcvae.models.mlp:MLPVAE",
}


def build_model(model_config: dict[str, Any]) -> VAE:
    """Instantiate the model named by ``model_config['name']`` from the rest of its keys."""
    name = model_config.get("name")
    if name not in MODELS:
        raise KeyError(f"model.name: unknown model {name!r}; known: {sorted(MODELS)}")
    module_name, class_name = MODELS[name].split(":")
    model_class = getattr(import_module(module_name), class_name)
    return model_class.from_config(model_config)
