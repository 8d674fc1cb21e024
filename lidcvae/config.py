"""One schema for every config, one strict constructor for the typed section objects.

The schema is written as YAML in ``lidcvae/schemas/``: ``config.yaml`` holds the top-level keys and
each stage section (``extract``, ``train`` ...) lives in its own file of the same name, so a stage's
keys sit beside each other. Every key has a ``description`` and a ``default``, and the schema is the
only place a default lives: each section becomes a frozen dataclass (``TrainConfig``, ``ModelConfig``
...) built by ``from_section``, which fills what is left out from the schema and rejects an unknown
key or a wrong type with a ``ConfigError`` naming ``section.key``. The classes declare fields only.

This is the bottom layer: it imports no other lidcvae module. A run's whole config, ``RunConfig`` with
``load_config``, lives above the stage packages in ``lidcvae.run_config``.
"""

from __future__ import annotations

import copy
import dataclasses
import re
import typing
from collections.abc import Mapping
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import jsonschema
import yaml

__all__ = [
    "ConfigError", "Section", "config_schema", "section_schema", "section_defaults", "from_section", "build_section",
    "to_plain", "validate_config", "set_dotted", "yaml_load",
]

SECTIONS = ("phantom", "extract", "render", "model", "train", "embed", "evaluate", "benchmark", "mnist", "cluster")

# Keys that left a section, and where they live now: an old config naming one is told where to look.
MOVED_KEYS: dict[str, str] = {
    "train.manifest": "the manifest is a path argument now (train_vae.py --manifest; the rules pass it)",
    "train.active_unit_threshold": "use evaluate.active_unit_threshold (one threshold for training and evaluation)",
}

S = TypeVar("S")


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


def section_schema(section: str) -> dict[str, Any]:
    """The schema of a (dotted) section, e.g. ``train`` or ``train.grad_clip``."""
    schema = config_schema()
    for part in section.split("."):
        properties = _properties(schema)
        if part not in properties:
            raise KeyError(f"no config section {section!r} in the schema")
        schema = properties[part]
    return schema


def _properties(schema: dict[str, Any]) -> dict[str, Any]:
    """The keys a schema's objects may hold: its ``properties`` and, where one value picks the keys
    (``model.name``, by if/then/else), each branch's; on a clash the default branch (``else``) wins."""
    branches = [schema.get(branch, {}).get("properties", {}) for branch in ("then", "else")]
    return {**branches[0], **branches[1], **schema.get("properties", {})}


def section_defaults(section: str) -> dict[str, Any]:
    """Every key of a section at its schema default (nested sections filled too)."""
    return _validated({}, section_schema(section), section)


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


def _error_lines(error: jsonschema.ValidationError, prefix: str) -> list[str]:
    """``key 'a.b': message`` lines; an unknown key is named itself (``a.b.typo``), not its parent."""
    path = [prefix] if prefix else []
    path += [str(p) for p in error.path]
    if error.validator == "additionalProperties" and isinstance(error.instance, dict):
        known = set(error.schema.get("properties", {}))
        lines = []
        for key in sorted(map(str, set(error.instance) - known)):
            dotted = ".".join(path + [key])
            hint = MOVED_KEYS.get(dotted, f"known: {', '.join(sorted(known))}")
            lines.append(f"  key '{dotted}': unknown key ({hint})")
        return lines
    return [f"  key '{'.'.join(path) or '<top level>'}': {error.message}"]


def _validated(config: Mapping[str, Any], schema: dict[str, Any], prefix: str = "", source: str = "config",
               parse_text: bool = False) -> dict[str, Any]:
    if not isinstance(config, Mapping):
        raise ConfigError(f"{source}: '{prefix or '<top level>'}' must be a mapping of keys, got {type(config).__name__}")
    resolved = copy.deepcopy(dict(config))
    errors = sorted(_VALIDATORS[parse_text](schema).iter_errors(resolved), key=lambda e: [str(p) for p in e.path])
    if errors:
        lines = [f"{source}: invalid config"]
        for error in errors:
            lines += _error_lines(error, prefix)
        raise ConfigError("\n".join(lines))
    return resolved


def validate_config(config: Mapping[str, Any], source: str = "config", parse_text: bool = False) -> dict[str, Any]:
    """Return a deep copy of ``config`` with defaults filled, or raise ``ConfigError``.

    Args:
        config: the parsed config mapping.
        source: where it came from (a file name), quoted in error messages.
        parse_text: YAML-parse string values where the schema wants a number, list, mapping ...
            (for values typed on a command line).
    """
    return _validated(config, config_schema(), "", source, parse_text)


def _freeze(value: Any) -> Any:
    """Lists become tuples (recursively), so a frozen section cannot be changed through a list."""
    if isinstance(value, list):
        return tuple(_freeze(v) for v in value)
    if isinstance(value, dict):
        return {k: _freeze(v) for k, v in value.items()}
    return value


def build_section(cls: type[S], values: dict[str, Any], section: str) -> S:
    """``cls(**values)`` for a section's already validated ``values``, nested dataclass fields built from
    their sub-mappings and lists frozen to tuples."""
    if hasattr(cls, "class_for"):  # a section whose keys depend on one of its values: model.name picks the class
        cls = cls.class_for(values)
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls) if f.init]
    if set(names) != set(values):
        raise ConfigError(f"{cls.__name__} and the schema of '{section}' disagree: fields only in the class "
                          f"{sorted(set(names) - set(values))}, keys only in the schema {sorted(set(values) - set(names))}")
    kwargs = {}
    for name in names:
        kind = hints[name]
        if dataclasses.is_dataclass(kind):
            kwargs[name] = build_section(kind, values[name], f"{section}.{name}")
        else:
            kwargs[name] = _freeze(values[name])
    return cls(**kwargs)


def from_section(cls: type[S], mapping: Mapping[str, Any] | None, section: str, source: str = "config") -> S:
    """The one strict constructor: a section mapping → its frozen dataclass ``cls``.

    Keys left out take the schema's default; an unknown key, a wrong type or an out-of-range value
    raises ``ConfigError`` naming ``section.key``. Lists become tuples.
    """
    values = _validated(mapping if mapping is not None else {}, section_schema(section), section, source)
    return build_section(cls, values, section)


def to_plain(value: Any) -> Any:
    """A section object (or anything holding them) as plain YAML/JSON data: dicts, lists, scalars."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, (list, tuple)):
        return [to_plain(v) for v in value]
    if isinstance(value, Mapping):
        return {k: to_plain(v) for k, v in value.items()}
    if isinstance(value, Path):
        return str(value)
    return value


class Section:
    """Mixin of the typed section dataclasses: ``SECTION`` names their place in the schema."""

    SECTION: ClassVar[str]

    @classmethod
    def from_mapping(cls: type[S], mapping: Mapping[str, Any] | None = None, source: str = "config") -> S:
        """Strictly from a section mapping; keys left out take the schema's default."""
        return from_section(cls, mapping, cls.SECTION, source)  # type: ignore[attr-defined]

    def to_dict(self) -> dict[str, Any]:
        """Plain data (lists, not tuples) that round-trips through YAML and ``from_mapping``."""
        return to_plain(self)


def set_dotted(config: dict[str, Any], dotted_key: str, value: Any) -> None:
    """Set ``config['a']['b'] = value`` for ``dotted_key='a.b'``, creating sections as needed.

    A mapping merges into the section already there, key by key and at every depth, as Snakemake's
    ``--config`` does: ``set_dotted(c, 'train', {'lr': 1e-3})`` changes ``train.lr`` and keeps the rest.

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
    node[leaf] = _merged(node.get(leaf), value)


def _merged(current: Any, value: Any) -> Any:
    """``value`` merged into ``current`` when both are mappings (a copy; Snakemake's update_config), else ``value``."""
    if not (isinstance(current, dict) and isinstance(value, Mapping)):
        return copy.deepcopy(value)
    merged = dict(current)
    for key, item in value.items():
        merged[key] = _merged(current.get(key), item)
    return merged
