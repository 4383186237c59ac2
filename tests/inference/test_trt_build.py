"""TensorRT with the real builder (TensorRT-RTX builds without a GPU): parse, build, serialize, the engine cache
and its invalidation; engine execution and torch2trt skip with the reason where they cannot run."""

import json
import logging
import os

import pytest
import torch

from jetcam_app.config import EngineConfig, ModelConfig
from jetcam_app.errors import BackendUnavailable, EngineBuildError
from jetcam_app.inference.engines.cache import EngineCache, GpuInfo, current_gpu, engine_stem
from jetcam_app.inference.engines.onnx_export import export_onnx
from jetcam_app.registry import MODELS

from conftest import export_adapter


def _builder_api():
    from jetcam_app.inference.engines.trt_build import load_api

    # Without a GPU only TensorRT-RTX can build (for a compute capability named up front).
    name = None if torch.cuda.is_available() else "tensorrt_rtx_bindings"
    try:
        return load_api(name)
    except BackendUnavailable as e:
        pytest.skip("needs a TensorRT or TensorRT-RTX builder: %s" % e)


@pytest.fixture(scope="module")
def api():
    return _builder_api()


@pytest.fixture(scope="module")
def gpu():
    """The GPU engines are built for: this machine's, or an RTX 30xx (sm86) for a GPU-less RTX build."""
    return current_gpu() or GpuInfo("cpu cross build", "8.6")


def settings_for(gpu, precision="fp32", workspace_mb=256, timing_cache_path=None):
    from jetcam_app.inference.engines.trt_build import BuildSettings

    target = None if torch.cuda.is_available() else gpu.compute_capability
    return BuildSettings(precision=precision, workspace_mb=workspace_mb, target_cc=target,
                         timing_cache_path=timing_cache_path)


@pytest.fixture(scope="session")
def onnx_cache(tmp_path_factory):
    """Shared with test_onnx_export: the exports are cached by content, so each core is exported once."""
    path = tmp_path_factory.getbasetemp() / "onnx_cache"
    path.mkdir(exist_ok=True)
    return str(path)


def small_core(seed=0):
    import torchvision

    torch.manual_seed(seed)
    return torchvision.models.mobilenet_v2(weights=None, num_classes=10).eval()


@pytest.fixture
def mobilenet_onnx(onnx_cache):
    return export_onnx(small_core(), torch.zeros(1, 3, 96, 96), onnx_cache, "mobilenet_v2")


@pytest.mark.parametrize("name", MODELS.choices())
def test_each_core_parses_builds_and_serializes(name, api, gpu, onnx_cache):
    from jetcam_app.inference.adapters.base import build_core
    from jetcam_app.inference.engines.trt_build import build_serialized

    adapter = export_adapter(name)
    onnx = export_onnx(build_core(adapter), adapter.example_input(), onnx_cache, name,
                       input_names=adapter.input_names, output_names=adapter.output_names)
    data = build_serialized(api, onnx.path, settings_for(gpu), label=name)
    assert isinstance(data, bytes) and len(data) > 10000


def test_cache_names_sidecar_reuse_and_invalidation(api, gpu, mobilenet_onnx, onnx_cache, tmp_path, caplog):
    from jetcam_app.inference.engines.trt_build import build_or_load

    caplog.set_level(logging.INFO)
    cache = EngineCache(str(tmp_path / "cache"))
    first = build_or_load(api, mobilenet_onnx, "mobilenet_v2", settings_for(gpu), cache, gpu)
    assert first.built
    name = os.path.basename(first.path)
    assert name == "mobilenet_v2_1x3x96x96_fp32_%s_%s.engine" % (api.tag, gpu.slug())
    sidecar = json.loads((tmp_path / "cache" / (first.stem + ".json")).read_text())
    key = sidecar["key"]
    assert key["onnx_sha256"] == mobilenet_onnx.sha256 and key["precision"] == "fp32"
    assert key["input_shape"] == [1, 3, 96, 96] and key["batch"] == 1
    assert key["tensorrt_version"] == api.version and key["gpu_name"] == gpu.name
    assert key["compute_capability"] == gpu.compute_capability and key["build_args"]["workspace_mb"] == 256
    assert not [p for p in os.listdir(str(tmp_path / "cache")) if p.endswith(".tmp")]  # atomic writes leave nothing

    same = build_or_load(api, mobilenet_onnx, "mobilenet_v2", settings_for(gpu), cache, gpu)
    assert not same.built and same.data == first.data  # same inputs: reused, no build

    wider = build_or_load(api, mobilenet_onnx, "mobilenet_v2", settings_for(gpu, workspace_mb=512), cache, gpu)
    assert wider.built and wider.stem == first.stem  # a build argument changed: rebuilt in place

    changed_onnx = export_onnx(small_core(seed=1), torch.zeros(1, 3, 96, 96), onnx_cache, "mobilenet_v2")
    assert changed_onnx.sha256 != mobilenet_onnx.sha256
    rebuilt = build_or_load(api, changed_onnx, "mobilenet_v2", settings_for(gpu, workspace_mb=512), cache, gpu)
    assert rebuilt.built and rebuilt.stem == first.stem
    assert "different onnx_sha256" in caplog.text

    # An engine left by another TensorRT version under this name (a hand-copied file): rebuilt.
    path = tmp_path / "cache" / (first.stem + ".json")
    stale = json.loads(path.read_text())
    stale["key"]["tensorrt_version"] = "8.5.2.2"
    path.write_text(json.dumps(stale))
    assert build_or_load(api, changed_onnx, "mobilenet_v2", settings_for(gpu, workspace_mb=512), cache, gpu).built
    assert "different tensorrt_version" in caplog.text
    # A truncated engine file: its checksum no longer matches the sidecar.
    with open(str(tmp_path / "cache" / (first.stem + ".engine")), "r+b") as f:
        f.truncate(1000)
    assert build_or_load(api, changed_onnx, "mobilenet_v2", settings_for(gpu, workspace_mb=512), cache, gpu).built
    assert not build_or_load(api, changed_onnx, "mobilenet_v2", settings_for(gpu, workspace_mb=512), cache, gpu).built


def test_precision_and_version_are_in_the_name(api, gpu, onnx_cache, tmp_path):
    from jetcam_app.inference.engines.trt_build import build_or_load

    cache = EngineCache(str(tmp_path))
    network, example = small_core(), torch.zeros(1, 3, 96, 96)
    fp32 = build_or_load(api, export_onnx(network, example, onnx_cache, "mobilenet_v2"), "mobilenet_v2",
                         settings_for(gpu), cache, gpu)
    fp16_onnx = export_onnx(network, example, onnx_cache, "mobilenet_v2", precision=api.onnx_precision("fp16"))
    fp16 = build_or_load(api, fp16_onnx, "mobilenet_v2", settings_for(gpu, "fp16"), cache, gpu)
    assert fp16.built and fp16.stem != fp32.stem and "_fp16_" in fp16.stem
    assert json.loads((tmp_path / (fp16.stem + ".json")).read_text())["key"]["precision"] == "fp16"
    assert sorted(os.listdir(str(tmp_path))) == sorted([fp32.stem + ".engine", fp32.stem + ".json",
                                                        fp16.stem + ".engine", fp16.stem + ".json"])
    other_version = engine_stem("mobilenet_v2", (1, 3, 96, 96), "fp32", "trt10.3.0", gpu)
    other_gpu = engine_stem("mobilenet_v2", (1, 3, 96, 96), "fp32", api.tag, GpuInfo("NVIDIA Tegra X1", "5.3"))
    assert len({fp32.stem, other_version, other_gpu}) == 3
    assert other_gpu.endswith("_nvidia-tegra-x1-sm53")


def test_strongly_typed_builder_refuses_fp16_from_an_fp32_onnx(api, gpu, mobilenet_onnx, tmp_path):
    from jetcam_app.inference.engines.trt_build import build_or_load

    if not api.strongly_typed:
        pytest.skip("%s takes an fp32 ONNX and the FP16 flag" % api.module_name)
    with pytest.raises(EngineBuildError, match="fp16 needs an fp16 ONNX"):
        build_or_load(api, mobilenet_onnx, "mobilenet_v2", settings_for(gpu, "fp16"), EngineCache(str(tmp_path)), gpu)


def test_unwritable_cache_warns_and_builds_in_memory(api, gpu, mobilenet_onnx, tmp_path, caplog):
    from jetcam_app.inference.engines.trt_build import build_or_load

    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")  # a cache below a file cannot be created, even by root
    cache = EngineCache(str(blocker / "cache"))
    with caplog.at_level(logging.WARNING):
        result = build_or_load(api, mobilenet_onnx, "mobilenet_v2", settings_for(gpu), cache, gpu)
    assert result.built and result.path is None and len(result.data) > 10000
    assert "is not writable" in caplog.text and "built in memory" in caplog.text
    assert build_or_load(api, mobilenet_onnx, "mobilenet_v2", settings_for(gpu), cache, gpu).built


def test_build_logs_its_phases(api, gpu, mobilenet_onnx, caplog):
    from jetcam_app.inference.engines.trt_build import build_serialized

    caplog.set_level(logging.INFO, logger="jetcam_app.inference.engines.trt_build")
    build_serialized(api, mobilenet_onnx.path, settings_for(gpu), label="mobilenet_v2")
    assert "trt: building mobilenet_v2" in caplog.text and "done (" in caplog.text
    if hasattr(api.trt, "IProgressMonitor"):
        assert "Building engine" in caplog.text  # the builder's own phase names, with elapsed seconds


def test_ctrl_c_cancels_the_build(api, gpu, mobilenet_onnx, caplog):
    import _thread

    from jetcam_app.inference.engines.trt_build import build_serialized

    if not hasattr(api.trt, "IProgressMonitor"):
        pytest.skip("TensorRT %s has no IProgressMonitor: its builds cannot be cancelled" % api.version)

    class CtrlCOnFirstPhase(logging.Handler):
        def emit(self, record):
            if "Building engine" in record.getMessage() and not getattr(self, "sent", False):
                self.sent = True
                _thread.interrupt_main()  # what Ctrl-C does, delivered while the builder works

    handler = CtrlCOnFirstPhase()
    logger = logging.getLogger("jetcam_app.inference.engines.trt_build")
    logger.addHandler(handler)
    old_level = logger.level
    logger.setLevel(logging.INFO)
    try:
        with pytest.raises(KeyboardInterrupt):
            build_serialized(api, mobilenet_onnx.path, settings_for(gpu), label="mobilenet_v2")
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)
    assert "cancelling the build" in caplog.text and "done (" not in caplog.text


def test_parser_errors_are_reported(api, gpu, tmp_path):
    onnx = pytest.importorskip("onnx")
    from jetcam_app.inference.engines.trt_build import build_serialized

    node = onnx.helper.make_node("NoSuchOperator", ["x"], ["y"], name="mystery_node")
    graph = onnx.helper.make_graph([node], "g", [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 3])],
                                   [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 3])])
    path = str(tmp_path / "bad.onnx")
    onnx.save(onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 17)]), path)
    with pytest.raises(EngineBuildError, match="could not parse bad.onnx: .*mystery_node"):
        build_serialized(api, path, settings_for(gpu))
    (tmp_path / "junk.onnx").write_bytes(b"not an onnx file")
    with pytest.raises(EngineBuildError, match="could not parse junk.onnx"):
        build_serialized(api, str(tmp_path / "junk.onnx"), settings_for(gpu))


def test_a_missing_module_names_the_install_hint():
    from jetcam_app.inference.engines.trt_build import load_api

    with pytest.raises(BackendUnavailable) as e:
        load_api("no_such_tensorrt_module")
    assert "sudo apt install python3-libnvinfer" in str(e.value) and "pip install tensorrt" in str(e.value)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA device")
def test_trt_backend_is_unavailable_without_a_gpu_and_says_what_is():
    from jetcam_app.inference.engines.base import create_engine

    with pytest.raises(BackendUnavailable) as e:
        create_engine(EngineConfig(backend="trt"))
    message = str(e.value)
    assert message.startswith("backend 'trt' is unavailable") and "fix:" in message
    assert "available here:" in message and "cpu" in message.split("available here:")[1]


def test_torch2trt_is_reported_when_it_does_not_import():
    try:
        import torch2trt  # noqa: F401
    except ImportError:
        from jetcam_app.inference.engines.torch2trt_engine import Torch2TRTEngine

        with pytest.raises(BackendUnavailable, match="NVIDIA-AI-IOT/torch2trt"):
            Torch2TRTEngine.check_available()
    else:
        pytest.skip("torch2trt imports here")


ENGINE_RUN_REASON = "executing TensorRT engines needs an NVIDIA GPU (TensorRT-RTX here only builds them)"


def _run_cases():
    return [(b, p) for b in ("trt", "torch2trt") for p in ("fp32", "fp16")]


@pytest.mark.needs_cuda
@pytest.mark.needs_trt_run
@pytest.mark.skipif(not torch.cuda.is_available(), reason=ENGINE_RUN_REASON)
@pytest.mark.parametrize("backend, precision", _run_cases())
def test_engine_matches_torch_cpu(backend, precision, tmp_path, photo_bgr):
    """On a GPU: nanodet through the engine vs torch on the CPU, then a second load comes from the cache."""
    from jetcam_app.inference.adapters.base import build_core, create_adapter
    from jetcam_app.inference.engines.base import create_engine
    from jetcam_app.inference.engines.crossval import cross_validate
    from jetcam_app.inference.engines.torch_engine import as_tuple

    from jetcam_app.errors import BackendUnavailable
    from jetcam_app.registry import BACKENDS

    try:
        BACKENDS.get(backend).check_available()
    except BackendUnavailable as e:
        pytest.skip(str(e))
    adapter = create_adapter(ModelConfig(name="nanodet", random_weights=True))
    batch = adapter.preprocess(photo_bgr, torch.device("cpu"), torch.float32)
    with torch.inference_mode():
        reference = as_tuple(build_core(adapter)(batch))
    config = EngineConfig(backend=backend, precision=precision, cache_dir=str(tmp_path), trt_workspace_mb=512)
    for attempt in range(2):
        engine = create_engine(config)
        engine.load(build_core(adapter), adapter.example_input(), "nanodet")
        assert engine.built is (attempt == 0)
        outputs = engine.infer(batch.to(engine.device, engine.input_dtype))
        report = cross_validate(reference, outputs, precision)
        assert report.ok, report.summary()
        engine.close()


@pytest.fixture(scope="session")
def photo_bgr():
    import numpy as np

    skimage_data = pytest.importorskip("skimage.data")
    return np.ascontiguousarray(skimage_data.astronaut()[..., :3][..., ::-1])


def test_isolated_build_reports_the_childs_error(api, gpu, tmp_path):
    """Builds run in a child process; its parser error comes back as the parent's EngineBuildError."""
    from jetcam_app.inference.engines.trt_launch import build_in_child

    (tmp_path / "junk.onnx").write_bytes(b"not an onnx file")
    with pytest.raises(EngineBuildError, match="could not parse junk.onnx"):
        build_in_child(api, str(tmp_path / "junk.onnx"), settings_for(gpu), "junk")


def test_isolated_build_makes_a_loadable_engine(api, gpu, mobilenet_onnx, tmp_path):
    from jetcam_app.inference.engines.trt_launch import build_in_child

    data = build_in_child(api, mobilenet_onnx.path, settings_for(gpu), "mobilenet_v2")
    assert len(data) > 100000
