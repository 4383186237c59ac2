"""The SSD split (core + torch decoding/NMS) against torchvision's own forward, box mapping, and weight resolution."""

import os

import numpy as np
import pytest
import torch

from jetcam_app.config import ModelConfig
from jetcam_app.errors import WeightsError
from jetcam_app.inference.adapters import weights as weights_mod
from jetcam_app.inference.adapters.detection import Ssd300Vgg16Adapter, SsdLite320Adapter

ADAPTERS = [Ssd300Vgg16Adapter, SsdLite320Adapter]


@pytest.fixture(scope="module", params=ADAPTERS, ids=lambda cls: cls.name)
def ssd(request, tmp_path_factory):
    """(adapter, core, torchvision reference) with the same seeded random weights, built offline."""
    cls = request.param
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TORCH_HOME", str(tmp_path_factory.mktemp("torch_home")))
        mp.setenv(weights_mod.OFFLINE_ENV, "1")
        adapter = cls(ModelConfig(name=cls.name, random_weights=True))
        reference = adapter.build_reference()
        core = adapter.split(reference)
    # Random VGG logits are huge: softmax saturates to 1.0 in float32 and tied scores make the order of
    # equal detections arbitrary. Scaling the class head's last convs (shared by core and reference) to
    # logits of std ~1 avoids ties.
    typical_image = torch.rand((3,) + tuple(adapter.input_size), generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        typical = reference.transform([typical_image])
        logits_std = float(core(typical[0].tensors)[1].std())
        for branch in reference.head.classification_head.module_list:
            last_conv = [m for m in branch.modules() if isinstance(m, torch.nn.Conv2d)][-1]
            last_conv.weight.mul_(1.0 / logits_std)
            last_conv.bias.mul_(1.0 / logits_std)
    return adapter, core, reference


def threshold_for(outputs, quantile=0.995):
    """A score threshold that leaves a few thousand candidates over many classes."""
    scores = torch.softmax(outputs[1][0], -1)[:, 1:]
    return float(torch.quantile(scores.flatten()[::7], quantile))


@pytest.mark.parametrize("image_hw", [(240, 400), (480, 360)])
def test_split_matches_torchvision_forward(ssd, image_hw):
    adapter, core, reference = ssd
    image = torch.rand((3,) + image_hw, generator=torch.Generator().manual_seed(sum(image_hw)))
    with torch.inference_mode():
        # the same input tensor for both: torchvision's transform (normalise, then resize)
        outputs = core(reference.transform([image])[0].tensors)
    threshold = threshold_for(outputs)
    adapter.config = ModelConfig(name=adapter.name, random_weights=True, score_threshold=threshold,
                                 iou_threshold=0.45, max_detections=50)
    reference.score_thresh, reference.nms_thresh, reference.detections_per_img = threshold, 0.45, 50
    reference.topk_candidates = adapter.topk_candidates
    with torch.inference_mode():
        expected = reference([image])[0]
    got = adapter.postprocess(outputs, image_hw)
    assert len(expected["scores"]) == 50  # enough candidates that NMS and the cap both did work
    assert len(set(expected["scores"].tolist())) == 50, "tied scores: the order of equal detections is arbitrary"
    assert len(set(expected["labels"].tolist())) > 1  # per-class NMS across several classes
    assert len(got) == len(expected["scores"])
    np.testing.assert_allclose(got.boxes, expected["boxes"].numpy(), atol=1e-4, rtol=0)
    np.testing.assert_allclose(got.scores, expected["scores"].numpy(), atol=1e-4, rtol=0)
    np.testing.assert_array_equal(got.labels, expected["labels"].numpy())
    assert got.boxes.dtype == np.float32 and got.labels.dtype == np.int64


def test_boxes_map_back_to_non_square_frames(ssd):
    adapter, core, _ = ssd
    with torch.inference_mode():
        outputs = core(adapter.example_input() + 0.5)
    adapter.config = ModelConfig(name=adapter.name, random_weights=True, score_threshold=threshold_for(outputs),
                                 max_detections=20)
    in_h, in_w = adapter.input_size
    square = adapter.postprocess(outputs, (in_h, in_w))
    wide = adapter.postprocess(outputs, (720, 1280))
    assert len(square) == len(wide) == 20
    assert square.boxes.max() <= max(in_h, in_w) + 1e-3
    np.testing.assert_allclose(wide.boxes[:, 0::2], square.boxes[:, 0::2] * 1280 / in_w, rtol=1e-5, atol=1e-3)
    np.testing.assert_allclose(wide.boxes[:, 1::2], square.boxes[:, 1::2] * 720 / in_h, rtol=1e-5, atol=1e-3)
    assert wide.boxes[:, 2].max() <= 1280 + 1e-2 and wide.boxes[:, 3].max() <= 720 + 1e-2
    np.testing.assert_array_equal(wide.labels, square.labels)


def test_preprocess_matches_torchvision_transform(ssd):
    adapter, _, reference = ssd
    rng = np.random.default_rng(0)
    small = rng.integers(0, 256, (45, 80, 3), dtype=np.uint8)
    image_bgr = np.ascontiguousarray(np.repeat(np.repeat(small, 8, 0), 8, 1))  # 360x640, smooth enough to resize
    batch = adapter.preprocess(image_bgr, torch.device("cpu"), torch.float32)
    rgb01 = torch.from_numpy(image_bgr[..., ::-1].copy()).permute(2, 0, 1).float() / 255.0
    with torch.inference_mode():
        expected = reference.transform([rgb01])[0].tensors
    assert batch.shape == expected.shape == (1, 3) + tuple(adapter.input_size)
    # resize-then-normalise on uint8 vs torchvision's normalise-then-resize: uint8 rounding only
    one_level = 1.0 / (255.0 * adapter.image_std[0])
    assert float((batch - expected).abs().max()) <= 1.5 * one_level
    assert list(adapter.image_mean) == pytest.approx(reference.transform.image_mean)
    assert list(adapter.image_std) == pytest.approx(reference.transform.image_std)


def test_anchors_follow_the_outputs_device(ssd):
    adapter, core, _ = ssd
    with torch.inference_mode():
        regression, logits = core(adapter.example_input())
    assert adapter.anchors.shape == (regression.shape[1], 4)
    assert logits.shape[-1] == len(adapter.class_names) == 91
    assert adapter.describe_weights() == "RANDOM WEIGHTS"


@pytest.mark.needs_cuda
def test_postprocess_on_cuda_matches_cpu(ssd):
    adapter, core, _ = ssd
    # A random image: a constant one gives identical outputs at every anchor, whose ties GPU and CPU break
    # differently.
    generator = torch.Generator().manual_seed(0)
    with torch.inference_mode():
        outputs = core(torch.rand(adapter.example_input().shape, generator=generator) * 4 - 2)
    adapter.config = ModelConfig(name=adapter.name, random_weights=True, score_threshold=threshold_for(outputs),
                                 max_detections=30)
    on_cpu = adapter.postprocess(outputs, (480, 640))
    on_gpu = adapter.postprocess(tuple(o.cuda() for o in outputs), (480, 640))

    def canonical(det):
        # Near-equal scores may come out of the GPU's sort in another order: compare in a fixed order.
        order = np.lexsort((det.boxes[:, 1], det.boxes[:, 0], det.labels))
        return det.boxes[order], det.labels[order], det.scores[order]

    gpu_boxes, gpu_labels, gpu_scores = canonical(on_gpu)
    cpu_boxes, cpu_labels, cpu_scores = canonical(on_cpu)
    np.testing.assert_allclose(gpu_boxes, cpu_boxes, atol=1e-3)
    np.testing.assert_array_equal(gpu_labels, cpu_labels)
    np.testing.assert_allclose(gpu_scores, cpu_scores, atol=1e-4)


def test_offline_without_weights_names_the_fix(tmp_path, monkeypatch):
    adapter = SsdLite320Adapter(ModelConfig(name=SsdLite320Adapter.name))
    if any(os.path.isfile(p) for p in weights_mod.local_candidates(adapter.name)):
        pytest.skip("a weights file is already in models/")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setenv(weights_mod.OFFLINE_ENV, "1")
    with pytest.raises(WeightsError) as info:
        adapter.build_network()
    message = str(info.value)
    assert "models/ssdlite320_mobilenet_v3_large.pth" in message and "--weights PATH" in message
    assert "efficientnet_lite0" in message and "nanodet" in message and "--random-weights" in message
    assert "\n" not in message
    assert not list(tmp_path.rglob("*.partial"))


def test_weights_file_is_loaded_with_weights_only(ssd, tmp_path):
    adapter, core, reference = ssd
    if adapter.name != SsdLite320Adapter.name:
        pytest.skip("one model is enough for the file path")
    path = tmp_path / "ssdlite.pth"
    torch.save({"state_dict": reference.state_dict()}, str(path))
    loaded = SsdLite320Adapter(ModelConfig(name=adapter.name, weights=str(path)))
    core_from_file = loaded.build_network()
    x = adapter.example_input() + 0.25
    with torch.inference_mode():
        for a, b in zip(core(x), core_from_file(x)):
            torch.testing.assert_close(a, b)
    assert loaded.describe_weights() == str(path)

    wrong = tmp_path / "wrong.pth"
    torch.save({"backbone.extra.weight": torch.zeros(3)}, str(wrong))
    with pytest.raises(WeightsError, match="do not fit"):
        SsdLite320Adapter(ModelConfig(name=adapter.name, weights=str(wrong))).build_network()
    with pytest.raises(WeightsError, match="not found"):
        SsdLite320Adapter(ModelConfig(name=adapter.name, weights=str(tmp_path / "missing.pth"))).build_network()
