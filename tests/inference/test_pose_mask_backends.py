"""MoveNet and Selfie on every backend available here against the CPU reference (the same poses and masks; raw
outputs within float32 rounding at fp32), and a TensorRT(-RTX) build of each core; the rest skip with the reason."""

import numpy as np
import pytest
import torch

from jetcam_app.config import EngineConfig, load_config
from jetcam_app.errors import BackendUnavailable, ConfigError
from jetcam_app.inference.adapters.base import build_core, create_adapter
from jetcam_app.inference.engines.base import create_engine
from human_models import skip_unless_fetchable

PHOTOS = ("astronaut", "camera")
BACKENDS = ("cuda", "onnxruntime", "trt", "torch2trt")


@pytest.fixture(scope="module")
def ready():
    skip_unless_fetchable(("movenet", "selfie"), "MoveNet / Selfie")


def engine_for(backend, precision, cache_dir):
    try:
        return create_engine(EngineConfig(backend=backend, precision=precision, cache_dir=cache_dir, threads=2))
    except BackendUnavailable as e:
        pytest.skip(str(e).splitlines()[0])
    except ConfigError as e:  # a precision this backend cannot run here (fp16 on a CPU-only ONNX Runtime)
        pytest.skip(str(e).splitlines()[0])


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@pytest.mark.parametrize("precision", ["fp32", "fp16"])
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("model", ["movenet", "selfie"])
def test_backend_gives_the_cpu_poses_and_masks(ready, photos, tmp_path, model, backend, precision):
    engine = engine_for(backend, precision, str(tmp_path))
    adapter = create_adapter(load_config(overrides={"model.name": model, "model.score_threshold": 0.3}).model)
    core = build_core(adapter)
    frames = [photos[n] for n in PHOTOS]
    batch = torch.cat([adapter.preprocess(f, torch.device("cpu"), torch.float32) for f in frames])
    with torch.no_grad():
        (reference,) = core(batch)
    engine.load(build_core(adapter), batch, model)
    try:
        (got,) = engine.infer(batch.to(getattr(engine, "device", torch.device("cpu"))))
    finally:
        engine.close()
    got = got.float().cpu()
    if precision == "fp32":
        assert torch.allclose(got, reference, atol=1e-3), float((got - reference).abs().max())
    for i, frame in enumerate(frames):
        want = adapter.postprocess((reference[i:i + 1],), frame.shape[:2])
        have = adapter.postprocess((got[i:i + 1],), frame.shape[:2])
        if model == "movenet":
            seen = want.keypoints[0, :, 2] >= 0.3
            error = np.hypot(*(want.keypoints[0, seen, :2] - have.keypoints[0, seen, :2]).T)
            assert seen.sum() >= 8 and np.median(error) <= 0.01 * max(frame.shape[:2]), error
        else:
            union = np.count_nonzero(want.mask | have.mask)
            assert np.count_nonzero(want.mask & have.mask) / float(union) >= 0.98


@pytest.mark.parametrize("model", ["movenet", "selfie"])
def test_tensorrt_builds_each_core(ready, tmp_path, model):
    """ArgMax, Gather, asymmetric pads and the transposed conv parse and build: TensorRT where there is a GPU,
    else a TensorRT-RTX cross build on the CPU."""
    from jetcam_app.inference.engines.cache import EngineCache, GpuInfo, current_gpu
    from jetcam_app.inference.engines.onnx_export import export_onnx
    from jetcam_app.inference.engines.trt_build import BuildSettings, build_or_load, load_api

    try:
        api = load_api(None if torch.cuda.is_available() else "tensorrt_rtx_bindings")
    except BackendUnavailable as e:
        pytest.skip("needs a TensorRT or TensorRT-RTX builder: %s" % e)
    adapter = create_adapter(load_config(overrides={"model.name": model}).model)
    onnx = export_onnx(build_core(adapter), adapter.example_input(), str(tmp_path), adapter.name,
                       precision=api.onnx_precision("fp32"))
    gpu = current_gpu() or GpuInfo("cpu cross build", "8.6")
    settings = BuildSettings(precision="fp32", workspace_mb=256,
                             target_cc=None if torch.cuda.is_available() else gpu.compute_capability)
    built = build_or_load(api, onnx, adapter.name, settings, EngineCache(str(tmp_path)), gpu)
    assert built.built and len(built.data) > 100000
