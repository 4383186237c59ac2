"""Caches trusted only when verified: the ONNX sidecar, a private fallback folder, ownership rules, tensors-only torch2trt state."""

import io
import json
import logging
import os
import tempfile

import pytest
import torch

from jetcam_app.errors import EngineBuildError
from jetcam_app.inference.engines.cache import EngineCache
from jetcam_app.inference.engines.cache_safety import private_fallback_dir, untrusted_reason
from jetcam_app.inference.engines.onnx_export import export_onnx
from jetcam_app.inference.engines.torch2trt_engine import pack_state, unpack_state

pytest.importorskip("onnx")


def tiny(seed):
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU())


EXAMPLE = torch.zeros(1, 3, 16, 16)


def damage_truncate(path, other_dir):
    data = open(path, "rb").read()
    open(path, "wb").write(data[:len(data) // 2])


def damage_random(path, other_dir):
    open(path, "wb").write(os.urandom(os.path.getsize(path)))


def damage_foreign_file(path, other_dir):
    """Another model with the same input and output shapes, copied over the file (its sidecar left as it was)."""
    other = export_onnx(tiny(1), EXAMPLE, other_dir, "tiny")
    open(path, "wb").write(open(other.path, "rb").read())


def damage_foreign_pair(path, other_dir):
    """Another model's file and sidecar both copied in under this name."""
    other = export_onnx(tiny(1), EXAMPLE, other_dir, "tiny")
    for suffix in ("", ".json"):
        open(path + suffix, "wb").write(open(other.path + suffix, "rb").read())


def damage_no_sidecar(path, other_dir):
    os.remove(path + ".json")


def damage_world_writable(path, other_dir):
    os.chmod(path, 0o666)


@pytest.mark.parametrize("damage", [damage_truncate, damage_random, damage_foreign_file, damage_foreign_pair,
                                    damage_no_sidecar, damage_world_writable])
def test_damaged_or_foreign_onnx_cache_is_exported_again_with_a_warning(tmp_path, damage, caplog):
    cache = str(tmp_path / "cache")
    first = export_onnx(tiny(0), EXAMPLE, cache, "tiny")
    assert first.exported and json.load(open(first.path + ".json"))["onnx_sha256"] == first.sha256
    again = export_onnx(tiny(0), EXAMPLE, cache, "tiny")
    assert not again.exported and again.sha256 == first.sha256
    damage(first.path, str(tmp_path / "other"))
    with caplog.at_level(logging.WARNING):
        rebuilt = export_onnx(tiny(0), EXAMPLE, cache, "tiny")
    assert rebuilt.exported and rebuilt.path == first.path
    assert rebuilt.sha256 == first.sha256  # the same network exports to the same bytes
    assert "not reusing" in caplog.text
    assert not [n for n in os.listdir(cache) if n.endswith(".tmp")]


@pytest.fixture
def private_tmp(tmp_path, monkeypatch):
    base = tmp_path / "systmp"
    base.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(base))
    return base


def test_unwritable_cache_falls_back_to_a_private_folder(tmp_path, private_tmp, caplog):
    (tmp_path / "file").write_text("not a folder")
    with caplog.at_level(logging.WARNING):
        model = export_onnx(tiny(0), EXAMPLE, str(tmp_path / "file" / "cache"), "tiny")
    folder = os.path.dirname(os.path.dirname(model.path))
    assert folder == str(private_tmp / ("jetcam-cache-%d" % os.getuid()))
    assert os.stat(folder).st_mode & 0o777 == 0o700
    assert "using the private folder" in caplog.text


@pytest.mark.parametrize("plant", ["shared_mode", "other_owner", "symlink"])
def test_planted_fallback_folder_is_refused(private_tmp, plant):
    base = private_tmp / ("jetcam-cache-%d" % os.getuid())
    if plant == "symlink":
        (private_tmp / "elsewhere").mkdir()
        os.symlink(str(private_tmp / "elsewhere"), str(base))
    else:
        base.mkdir()
        os.chmod(str(base), 0o777)
        if plant == "other_owner":
            if os.getuid() != 0:
                pytest.skip("chown to another user needs root")
            os.chmod(str(base), 0o700)
            os.chown(str(base), 12345, 12345)
    with pytest.raises(EngineBuildError, match="not a private folder of yours"):
        private_fallback_dir("onnx")


def test_engine_cache_refuses_engines_writable_by_everyone(tmp_path, caplog):
    cache = EngineCache(str(tmp_path))
    cache.store("m", b"engine-bytes", {"k": 1})
    assert cache.lookup("m", {"k": 1}) == b"engine-bytes"
    os.chmod(cache.engine_path("m"), 0o666)
    assert untrusted_reason(cache.engine_path("m")).startswith("writable by every user")
    with caplog.at_level(logging.WARNING):
        assert cache.lookup("m", {"k": 1}) is None
    assert "not loading" in caplog.text


class Boom:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def test_torch2trt_state_round_trips_as_plain_data_and_pickles_are_refused(caplog):
    state = {"engine": bytearray(os.urandom(4096)), "input_names": ["input"], "output_names": ["a", "b"],
             "input_flattener": None}
    buffer = io.BytesIO()
    torch.save(pack_state(state), buffer)
    assert unpack_state(buffer.getvalue()) == state
    evil = io.BytesIO()
    torch.save({"engine": Boom(), "jetcam_bytes_keys": []}, evil)
    with caplog.at_level(logging.WARNING):
        assert unpack_state(evil.getvalue()) is None
    assert "converting again" in caplog.text
