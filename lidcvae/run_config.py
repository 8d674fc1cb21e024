"""A run's whole config: the top-level keys and one typed object per stage section.

This module sits above the stage packages: it imports each section's dataclass from the module that
defines it (``lidcvae.train.config``, ``lidcvae.evaluate.settings`` ...), and those import only the
bottom-layer machinery of ``lidcvae.config``, so nothing imports upward. A ``RunConfig`` is validated
once, where a script or the workflow starts, and the library receives the typed sections it needs.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from lidcvae.config import ConfigError, Section, build_section, set_dotted, to_plain, validate_config, yaml_load
from lidcvae.benchmark.settings import BenchmarkConfig
from lidcvae.data.mnist import MnistConfig
from lidcvae.embed.config import EmbedConfig
from lidcvae.evaluate.settings import EvaluateSettings
from lidcvae.extract.settings import ExtractSettings
from lidcvae.models.config import ModelConfig
from lidcvae.phantom.settings import PhantomConfig
from lidcvae.render.settings import RenderConfig
from lidcvae.train.config import TrainConfig

__all__ = ["RunConfig", "SECTION_TYPES", "load_config"]

# The typed object of each stage section; ``cluster`` stays a plain mapping.
SECTION_TYPES: dict[str, type[Section]] = {
    "phantom": PhantomConfig,
    "extract": ExtractSettings,
    "render": RenderConfig,
    "model": ModelConfig,
    "train": TrainConfig,
    "embed": EmbedConfig,
    "evaluate": EvaluateSettings,
    "benchmark": BenchmarkConfig,
    "mnist": MnistConfig,
}


@dataclass(frozen=True)
class RunConfig:
    """A whole validated config: the top-level keys and one typed object per stage section."""

    name: str
    results_dir: str
    dataset: str
    dicom_root: str | None
    patients: tuple[str, ...] | None
    candidates: str | None
    images_root: str | None
    phantom: PhantomConfig
    extract: ExtractSettings
    render: RenderConfig
    model: ModelConfig
    train: TrainConfig
    embed: EmbedConfig
    evaluate: EvaluateSettings
    benchmark: BenchmarkConfig
    mnist: MnistConfig
    cluster: dict[str, Any]

    @classmethod
    def from_mapping(cls, config: Mapping[str, Any] | None = None, source: str = "config",
                     parse_text: bool = False) -> RunConfig:
        """Validate a whole config once (defaults filled) and type every section."""
        values = validate_config(config or {}, source, parse_text)
        for section, section_class in SECTION_TYPES.items():
            values[section] = build_section(section_class, values[section], section)
        if values["patients"] is not None:
            values["patients"] = tuple(values["patients"])
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        """Plain data, as a config file would hold it (every key, defaults included)."""
        return to_plain(self)


def load_config(path: str | os.PathLike | None = None, overrides: Mapping[str, Any] | None = None) -> RunConfig:
    """Load a YAML config (or start empty), apply ``{'dotted.key': value}`` overrides, validate and type it.

    Raises:
        ConfigError: the file is missing, not a mapping, or fails the schema.
    """
    config: dict[str, Any] = {}
    source = "config"
    if path is not None:
        path = Path(path)
        source = str(path)
        if not path.is_file():
            raise ConfigError(f"config file not found: {path}")
        try:
            loaded = yaml_load(path.read_text()) or {}
        except yaml.YAMLError as error:
            raise ConfigError(f"{path}: not valid YAML ({error})") from error
        if not isinstance(loaded, dict):
            raise ConfigError(f"{path}: a config must be a mapping of keys, got {type(loaded).__name__}")
        config = loaded
    for key, value in (overrides or {}).items():
        set_dotted(config, key, value)
    return RunConfig.from_mapping(config, source)
