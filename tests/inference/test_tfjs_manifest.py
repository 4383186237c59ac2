"""A TFJS manifest (NanoDet's nanodet.json) names its weight shards: only regular files inside the model folder, of
the size its weights declare, are read; anything else is a one-line WeightsError before a byte is read."""

import json
import os

import numpy as np
import pytest

from jetcam_app.errors import WeightsError
from jetcam_app.inference.adapters.tfjs_graph import TfjsGraph


def write_model(folder, paths, weights=None):
    folder.mkdir(exist_ok=True)
    weights = weights or [{"name": "w", "shape": [2, 2], "dtype": "float32"}]
    model = {"modelTopology": {"node": []}, "weightsManifest": [{"paths": paths, "weights": weights}]}
    (folder / "model.json").write_text(json.dumps(model))
    return str(folder / "model.json")


def test_shard_inside_the_folder_with_the_declared_size_loads(tmp_path):
    (tmp_path / "m").mkdir()
    np.arange(4, dtype="<f4").tofile(str(tmp_path / "m" / "w.bin"))
    graph = TfjsGraph(write_model(tmp_path / "m", ["w.bin"]))
    assert graph.weights["w"].tolist() == [[0, 1], [2, 3]]


def outside_relative(tmp_path):
    np.zeros(4, "<f4").tofile(str(tmp_path / "secret.bin"))
    return ["../secret.bin"], "outside its folder"


def outside_absolute(tmp_path):
    np.zeros(4, "<f4").tofile(str(tmp_path / "secret.bin"))
    return [str(tmp_path / "secret.bin")], "outside its folder"


def symlink_out(tmp_path):
    np.zeros(4, "<f4").tofile(str(tmp_path / "secret.bin"))
    (tmp_path / "m").mkdir()
    os.symlink(str(tmp_path / "secret.bin"), str(tmp_path / "m" / "link.bin"))
    return ["link.bin"], "outside its folder"


def device(tmp_path):
    return ["/dev/zero"], "outside its folder"


def device_via_symlink(tmp_path):
    (tmp_path / "m").mkdir()
    os.symlink("/dev/zero", str(tmp_path / "m" / "zero.bin"))
    return ["zero.bin"], "outside its folder"


def wrong_size(tmp_path):
    (tmp_path / "m").mkdir()
    np.zeros(1000, "<f4").tofile(str(tmp_path / "m" / "w.bin"))
    return ["w.bin"], "hold 4000 bytes, the manifest declares 16"


def a_folder(tmp_path):
    (tmp_path / "m" / "sub").mkdir(parents=True)
    return ["sub"], "not a regular file"


@pytest.mark.parametrize("make", [outside_relative, outside_absolute, symlink_out, device, device_via_symlink,
                                  wrong_size, a_folder])
def test_shards_outside_the_folder_or_of_another_size_are_refused(tmp_path, make):
    paths, message = make(tmp_path)
    with pytest.raises(WeightsError, match=message):
        TfjsGraph(write_model(tmp_path / "m", paths))


@pytest.mark.parametrize("weights", [[{"name": "w"}], [{"name": "w", "shape": "x", "dtype": "float32"}], [7]])
def test_malformed_manifest_is_a_weights_error(tmp_path, weights):
    (tmp_path / "m").mkdir()
    with pytest.raises(WeightsError, match="malformed"):
        TfjsGraph(write_model(tmp_path / "m", [], weights))
