"""The packaged configs/default.yaml is the one home of every default: the dataclasses, `run.py bench` and the
bench scripts read theirs from it."""

import dataclasses
import importlib.util
import os
import shutil
import subprocess
import sys
import zipfile

import pytest
import yaml

import jetcam_app
from jetcam_app import config as config_module
from jetcam_app.config import DEFAULT_CONFIG, Config, load_config

# the sections (dataclasses); `sources` is a list of source sections, empty by default
SECTIONS = {f.name: f.default_factory for f in dataclasses.fields(Config) if f.name != "sources"}


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
        if isinstance(expected, list):  # list-valued keys (lines, zones, webhooks) are kept as tuples
            expected = tuple(expected)
        if f.type is tuple and expected is None:  # a structured key that is off (output.mqtt: null) is ()
            expected = ()
        assert f.default == expected, "%s.%s" % (section, name)
        if expected is not None:  # coerced to the annotated type: fps: 30 becomes 30.0
            assert type(f.default).__name__ in str(f.type), "%s.%s" % (section, name)


def test_the_yaml_has_no_section_without_a_dataclass():
    assert set(_packaged()) == set(SECTIONS) | {"sources"}
    assert _packaged()["sources"] == [] and Config().sources == ()


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


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("wheel") is None
                    and importlib.util.find_spec("setuptools.command.bdist_wheel") is None,
                    reason="pip wheel --no-build-isolation needs the wheel package with this setuptools (< 70.1)")
def test_a_built_wheel_carries_the_yaml_and_its_config_loads_from_it(tmp_path):
    """Build the wheel from a copy of the sources, unpack it elsewhere and import the config from there."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(jetcam_app.__file__)))
    src = tmp_path / "src"
    shutil.copytree(os.path.join(root, "jetcam_app"), str(src / "jetcam_app"),
                    ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("setup.cfg", "pyproject.toml", "README.md"):
        if os.path.exists(os.path.join(root, name)):
            shutil.copy(os.path.join(root, name), str(src / name))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                    str(tmp_path / "dist"), str(src)], check=True, cwd=str(tmp_path))
    (wheel,) = (tmp_path / "dist").glob("jetcam_app-*.whl")
    with zipfile.ZipFile(str(wheel)) as z:
        assert "jetcam_app/configs/default.yaml" in z.namelist()
        z.extractall(str(tmp_path / "site"))
    code = ("import jetcam_app.config as c, sys; assert c.DEFAULT_CONFIG.startswith(sys.argv[1]), c.DEFAULT_CONFIG; "
            "print(c.Config().model.name)")
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path / "site")], cwd=str(tmp_path), check=True,
                         env=dict(os.environ, PYTHONPATH=str(tmp_path / "site")), stdout=subprocess.PIPE,
                         universal_newlines=True).stdout
    assert out.strip() == _packaged()["model"]["name"]
