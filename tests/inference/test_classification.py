"""Classifier adapters: EfficientNet-Lite0's real weights on real photos; the torchvision classifiers' mechanics."""

import os

import numpy as np
import pytest
import torch

from jetcam_app.inference.adapters import weights as weights_mod
from jetcam_app.inference.adapters.classification import (AlexNetAdapter, EfficientNetLite0Adapter, MobileNetV2Adapter,
                                                ResNet18Adapter, centre_crop)
from jetcam_app.config import ModelConfig
from jetcam_app.errors import WeightsError
from jetcam_app.inference.adapters.labels import IMAGENET_1000
from jetcam_app.registry import MODELS
from jetcam_app.types import Classification

CATS = {IMAGENET_1000.index(name) for name in ("tabby", "tiger cat", "Persian cat", "Siamese cat", "Egyptian cat")}
CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def lite0():
    adapter = EfficientNetLite0Adapter(ModelConfig(name="efficientnet_lite0", topk=5))
    return adapter, adapter.build_network()


def classify(adapter, network, image_bgr) -> Classification:
    batch = adapter.preprocess(image_bgr, CPU, torch.float32)
    with torch.inference_mode():
        return adapter.postprocess((network(batch),), image_bgr.shape[:2])


def test_lite0_coffee_is_espresso(lite0, photos):
    result = classify(*lite0, photos["coffee"])
    assert result.top_names()[0] == "espresso"
    assert result.scores[0] > 0.5


def test_lite0_chelsea_is_a_cat(lite0, photos):
    result = classify(*lite0, photos["chelsea"])
    assert CATS & set(int(c) for c in result.class_ids[:3])


def test_lite0_works_offline_and_says_where_its_weights_come_from(lite0, monkeypatch, tmp_path):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setenv(weights_mod.OFFLINE_ENV, "1")
    adapter = EfficientNetLite0Adapter(ModelConfig(name="efficientnet_lite0"))
    network = adapter.build_network()
    assert "PyPI" in adapter.describe_weights() and adapter.weights_available_offline
    x = adapter.example_input() + 0.1
    with torch.inference_mode():
        torch.testing.assert_close(network(x), lite0[1](x))


def test_lite0_is_the_registered_class():
    assert MODELS.get("efficientnet_lite0") is EfficientNetLite0Adapter


@pytest.mark.parametrize("cls", [MobileNetV2Adapter, AlexNetAdapter, ResNet18Adapter], ids=lambda c: c.name)
def test_random_weight_classifiers_give_top_k(cls, monkeypatch, tmp_path, photos):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setenv(weights_mod.OFFLINE_ENV, "1")
    assert MODELS.get(cls.name) is cls
    adapter = cls(ModelConfig(name=cls.name, random_weights=True, topk=3))
    network = adapter.build_network()
    batch = adapter.preprocess(photos["astronaut"], CPU, torch.float32)
    assert batch.shape == (1, 3, 224, 224) == adapter.example_input().shape
    with torch.inference_mode():
        logits = network(batch)
    assert logits.shape == (1, 1000)
    result = adapter.postprocess((logits,), photos["astronaut"].shape[:2])
    assert result.class_ids.shape == result.scores.shape == (3,)
    assert result.class_ids.dtype == np.int64 and result.scores.dtype == np.float32
    assert np.all(np.diff(result.scores) <= 0) and 0 < result.scores[0] <= 1
    assert adapter.describe_weights() == "RANDOM WEIGHTS"
    assert len(result.to_json()["topk"]) == 3


def test_random_weights_are_the_same_in_every_build(monkeypatch, tmp_path):
    monkeypatch.setenv(weights_mod.OFFLINE_ENV, "1")
    config = ModelConfig(name="mobilenet_v2", random_weights=True)
    first, second = MobileNetV2Adapter(config).build_network(), MobileNetV2Adapter(config).build_network()
    for a, b in zip(first.state_dict().values(), second.state_dict().values()):
        assert torch.equal(a, b)


def test_offline_without_weights_names_the_fix(monkeypatch, tmp_path):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setenv(weights_mod.OFFLINE_ENV, "1")
    adapter = ResNet18Adapter(ModelConfig(name="resnet18"))
    if any(os.path.isfile(p) for p in weights_mod.local_candidates("resnet18")):
        pytest.skip("a weights file is already in models/")
    fix = r"models/resnet18\.pth.*--weights PATH.*efficientnet_lite0.*--random-weights"
    with pytest.raises(WeightsError, match=fix):
        adapter.build_network()


def test_weights_that_do_not_fit_are_a_clear_error(tmp_path):
    path = tmp_path / "resnet.pth"
    network = ResNet18Adapter(ModelConfig(name="resnet18", random_weights=True)).build_network()
    torch.save(network.state_dict(), str(path))
    with pytest.raises(WeightsError, match="do not fit mobilenet_v2"):
        MobileNetV2Adapter(ModelConfig(name="mobilenet_v2", weights=str(path))).build_network()
    loaded = ResNet18Adapter(ModelConfig(name="resnet18", weights=str(path))).build_network()
    assert loaded.fc.weight.shape == (1000, 512)


def test_a_pickled_model_is_refused_by_weights_only(tmp_path):
    path = tmp_path / "whole_model.pth"
    torch.save(MobileNetV2Adapter(ModelConfig(name="mobilenet_v2", random_weights=True)).build_network(), str(path))
    with pytest.raises(WeightsError, match=r"weights_only=True.*model.state_dict\(\)"):
        MobileNetV2Adapter(ModelConfig(name="mobilenet_v2", weights=str(path))).build_network()


def test_centre_crop_selects_the_eval_recipe_region():
    image = np.zeros((720, 1280, 3), np.uint8)
    crop = centre_crop(image, 224 / 256.0)
    assert crop.shape == (630, 630, 3)
    assert crop.base is image or crop.base is image.base  # a view: no copy per frame
