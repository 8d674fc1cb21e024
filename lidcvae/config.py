"""One schema for every config: load YAML, fill defaults, reject wrong keys and types by name.

The schema is written as YAML in ``lidcvae/schemas/``: ``config.yaml`` holds the top-level keys and
each stage section (``extract``, ``train`` ...) lives in its own file of the same name, so a stage's
keys sit beside each other. Every key has a ``description`` and a ``default``.
"""

from __future__ import annotations

import copy
import os
import re
from collections.abc import Mapping
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import yaml

__all__ = ["ConfigError", "config_schema", "load_config", "validate_config", "set_dotted", "yaml_load"]

SECTIONS = ("phantom", "extract", "model", "train", "embed", "evaluate", "mnist", "cluster")


class ConfigError(ValueError):
    """A config key is unknown, mistyped or out of range; the message names the key."""


class _Yaml12Loader(yaml.SafeLoader):
    """PyYAML's safe loader with YAML 1.2 floats: ``1e-3`` is a number, not the string YAML 1.1 makes it."""


_Yaml12Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
                  |[-+]?[0-9][0-9_]*[eE][-+]?[0-9]+
                  |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
                  |[-+]?\.(?:inf|Inf|INF)
                  |\.(?:nan|NaN|NAN))$""", re.X),
    list("-+0123456789."),
)


def yaml_load(text: str) -> Any:
    """Parse YAML text as every config reader here does (safe, YAML 1.2 floats)."""
    return yaml.load(text, Loader=_Yaml12Loader)  # noqa: S506 - a SafeLoader subclass


@cache
def config_schema() -> dict[str, Any]:
    """The full JSON schema: top-level keys with each stage section spliced in."""
    schemas = resources.files("lidcvae") / "schemas"
    # libyaml's parser when PyYAML has it: the same documents, ~15x faster than the pure-Python one
    # (which took ~0.25 s per process, a tenth of a one-scan extraction job).
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    schema = yaml.load((schemas / "config.yaml").read_text(), Loader=loader)
    for section in SECTIONS:
        schema["properties"][section] = yaml.load((schemas / f"{section}.yaml").read_text(), Loader=loader)
    return schema


def _parse_text(value: Any, subschema: dict[str, Any]) -> Any:
    """YAML-parse a string where the schema wants another type (Snakemake's ``--config a='{b: 2}'``
    passes nested values as text)."""
    allowed = subschema.get("type", [])
    allowed = [allowed] if isinstance(allowed, str) else allowed
    if not isinstance(value, str) or not allowed or "string" in allowed:
        return value
    try:
        return yaml_load(value)
    except yaml.YAMLError:
        return value


def _with_defaults(validator_class: type, parse_text: bool) -> type:
    """Extend a jsonschema validator so that ``properties`` fills in missing ``default`` values
    (and, with ``parse_text``, parses command-line text into the type the schema asks for)."""
    validate_properties = validator_class.VALIDATORS["properties"]

    def fill_then_validate(validator, properties, instance, schema):
        if isinstance(instance, dict):
            for key, subschema in properties.items():
                if "default" in subschema and key not in instance:
                    instance[key] = copy.deepcopy(subschema["default"])
                elif parse_text and key in instance:
                    instance[key] = _parse_text(instance[key], subschema)
        yield from validate_properties(validator, properties, instance, schema)

    return jsonschema.validators.extend(validator_class, {"properties": fill_then_validate})


_VALIDATORS = {parse: _with_defaults(jsonschema.Draft202012Validator, parse) for parse in (False, True)}


def validate_config(config: Mapping[str, Any], source: str = "config", parse_text: bool = False) -> dict[str, Any]:
    """Return a deep copy of ``config`` with defaults filled, or raise ``ConfigError``.

    Args:
        config: the parsed config mapping.
        source: where it came from (a file name), quoted in error messages.
        parse_text: YAML-parse string values where the schema wants a number, list, mapping ...
            (for values typed on a command line).
    """
    resolved = copy.deepcopy(dict(config))
    errors = sorted(_VALIDATORS[parse_text](config_schema()).iter_errors(resolved), key=lambda e: list(e.path))
    if errors:
        lines = [f"{source}: invalid config"]
        for error in errors:
            key = ".".join(str(p) for p in error.path) or "<top level>"
            lines.append(f"  key '{key}': {error.message}")
        raise ConfigError("\n".join(lines))
    return resolved


def set_dotted(config: dict[str, Any], dotted_key: str, value: Any) -> None:
    """Set ``config['a']['b'] = value`` for ``dotted_key='a.b'``, creating sections as needed.

    Raises:
        ConfigError: a part of the key before the last names a value, not a section (``train.epochs.x``).
    """
    *parents, leaf = dotted_key.split(".")
    node = config
    for depth, part in enumerate(parents, start=1):
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            section = ".".join(parents[:depth])
            raise ConfigError(f"key '{dotted_key}': '{section}' is a value ({node!r}), not a section with keys")
    node[leaf] = value


def load_config(path: str | os.PathLike | None = None, overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Load a YAML config (or start empty), apply ``{'dotted.key': value}`` overrides, validate.

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
    return validate_config(config, source)
