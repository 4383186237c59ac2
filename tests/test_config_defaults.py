"""The packaged configs/default.yaml is the one home of every default: the dataclasses, `run.py bench` and the
bench scripts read theirs from it."""
from __future__ import annotations

import dataclasses
import os

import pytest
import yaml

import jetcam_app
from jetcam_app import config as config_module
from jetcam_app.config import DEFAULT_CONFIG, Config, load_config

SECTIONS = {f.name: f.default_factory for f in dataclasses.fields(Config)}


def _packaged():
    with open(DEFAULT_CONFIG) as f:
        return yaml.safe_load(f)


def test_the_yaml_ships_inside_the_package():
    package_dir = os.path.dirname(os.path.abspath(jetcam_app.__file__))
    assert os.path.dirname(os.path.dirname(DEFAULT_CONFIG)) == package_dir
    assert os.path.isfile(DEFAULT_CONFIG)
    setup_cfg = os.path.join(os.path.dirname(package_dir), "setup.cfg")
    with open(setup_cfg) as f:
        assert "jetcam_app = configs/*.yaml" in f.read()  # package_data: a wheel carries it


@pytest.mark.parametrize("section", sorted(SECTIONS))
def test_every_field_has_a_yaml_default_and_every_yaml_key_a_field(section):
    yaml_section = _packaged()[section]
    fields = {f.name: f for f in dataclasses.fields(SECTIONS[section])}
    assert set(fields) == set(yaml_section)
    for name, f in fields.items():
        expected = yaml_section[name]
        assert f.default == expected, "%s.%s" % (section, name)
        if expected is not None:  # coerced to the annotated type: fps: 30 becomes 30.0
            assert type(f.default).__name__ in str(f.type), "%s.%s" % (section, name)


def test_the_yaml_has_no_section_without_a_dataclass():
    assert set(_packaged()) == set(SECTIONS)


def test_load_config_without_files_equals_the_dataclass_defaults():
    assert load_config() == Config()


@pytest.mark.parametrize("yaml_text, message", [
    ("model:\n  name: nanodet\n", "missing"),
    ("model:\n  name: nanodet\n  colour: red\n", "unknown ['colour']"),
    ("source: {}\n", "no 'model' section"),
])
def test_a_default_missing_from_the_yaml_fails_loudly(monkeypatch, yaml_text, message):
    monkeypatch.setattr(config_module, "_PACKAGED", yaml.safe_load(yaml_text))
    with pytest.raises(config_module.ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        @config_module._yaml_defaults("model")
        class Model:
            name: str
            topk: int
