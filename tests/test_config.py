"""The one config contract: defaults live only in the schemas, one strict constructor for every section."""

from __future__ import annotations

import dataclasses
import inspect
import subprocess
import sys

import pytest
import yaml

import lidcvae.config
from lidcvae.config import ConfigError, config_schema, section_defaults
from lidcvae.run_config import SECTION_TYPES, RunConfig, load_config


@pytest.mark.parametrize("section", sorted(SECTION_TYPES))
def test_typed_section_built_from_nothing_equals_the_schema_defaults(section: str) -> None:
    schema = config_schema()["properties"][section]
    built = SECTION_TYPES[section].from_mapping({})
    assert built.to_dict() == section_defaults(section)
    # every schema key is a field and every field a schema key: no key lives only in code
    properties = schema.get("properties") or schema["else"]["properties"]  # model: name picks the keys, the default's here
    assert {f.name for f in dataclasses.fields(built)} == set(properties)
    for key, subschema in properties.items():
        if "properties" not in subschema:
            assert built.to_dict()[key] == subschema["default"], f"{section}.{key}"


def test_no_section_class_carries_a_default_of_its_own() -> None:
    for section in SECTION_TYPES:
        classes = [SECTION_TYPES[section]]
        while classes:
            cls = classes.pop()
            for field in dataclasses.fields(cls):
                assert field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING, \
                    f"{cls.__name__}.{field.name} has a default outside the schema"
                if dataclasses.is_dataclass(getattr(cls.from_mapping({}), field.name, None)):
                    classes.append(type(getattr(cls.from_mapping({}), field.name)))


@pytest.mark.parametrize("section", sorted(SECTION_TYPES))
def test_an_unknown_key_is_the_same_config_error_naming_section_and_key(section: str) -> None:
    with pytest.raises(ConfigError, match=rf"key '{section}\.no_such_key': unknown key"):
        SECTION_TYPES[section].from_mapping({"no_such_key": 1})
    with pytest.raises(ConfigError, match=rf"key '{section}\.no_such_key': unknown key"):
        RunConfig.from_mapping({section: {"no_such_key": 1}})


@pytest.mark.parametrize("dotted", ["train.grad_clip", "train.augment", "model.sigma", "model.bn_vae", "extract.split",
                                    "evaluate.probe", "mnist.table"])
def test_an_unknown_nested_key_is_named_with_its_full_path(dotted: str) -> None:
    section, nested = dotted.split(".")
    with pytest.raises(ConfigError, match=rf"key '{dotted}\.typo': unknown key"):
        SECTION_TYPES[section].from_mapping({nested: {"typo": 1}})


def test_a_wrong_type_names_the_key_and_a_given_value_wins_over_the_default() -> None:
    with pytest.raises(ConfigError, match=r"key 'train.epochs'"):
        SECTION_TYPES["train"].from_mapping({"epochs": "many"})
    train = SECTION_TYPES["train"].from_mapping({"epochs": 3, "grad_clip": {"mode": "norm"}})
    assert (train.epochs, train.grad_clip.mode, train.grad_clip.max) == (3, "norm", 100000.0)


def test_sections_are_frozen_and_lists_become_tuples() -> None:
    model = SECTION_TYPES["model"].from_mapping({"channels": [4, 8]})
    assert model.channels == (4, 8)
    with pytest.raises(dataclasses.FrozenInstanceError):
        model.latent_size = 3  # type: ignore[misc]


def test_run_config_round_trips_through_yaml(tmp_path) -> None:
    run = load_config(None, {"train.epochs": 2, "model.channels": [4, 8], "patients": ["LIDC-IDRI-0001"]})
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(run.to_dict()))
    again = load_config(path)
    assert again == run
    assert (again.train.epochs, again.model.channels, again.patients) == (2, (4, 8), ("LIDC-IDRI-0001",))


def test_the_config_layer_loads_no_other_lidcvae_module() -> None:
    # config.py is the bottom layer: the stage sections import Section from it, so it may not load them
    # (by name through import_module or otherwise); RunConfig, which holds them all, lives above them.
    probe = "import sys, lidcvae.config; print(sorted(m for m in sys.modules if m.startswith('lidcvae')))"
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert loaded.strip() == "['lidcvae', 'lidcvae.config']"
    assert "import_module" not in inspect.getsource(lidcvae.config)


@pytest.mark.parametrize("section", sorted(SECTION_TYPES))
def test_each_run_section_is_typed_by_the_class_that_names_it(section: str) -> None:
    assert SECTION_TYPES[section].SECTION == section
    assert isinstance(getattr(RunConfig.from_mapping({}), section), SECTION_TYPES[section])  # model: name picks a subclass
