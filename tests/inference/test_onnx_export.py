"""ONNX export of every model core: onnx.checker, fixed shapes, names, opset, and ONNX Runtime parity with torch."""

import numpy as np
import pytest
import torch

from jetcam_app.config import EngineConfig, ModelConfig
from jetcam_app.errors import ConfigError, EngineBuildError
from jetcam_app.inference.engines.crossval import cross_validate
from jetcam_app.inference.engines.onnx_export import cpu_runs_half_convolutions, export_onnx
from jetcam_app.inference.engines.torch_engine import as_tuple
from jetcam_app.registry import MODELS
from jetcam_app.types import Classification

from conftest import export_adapter

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from jetcam_app.inference.engines.onnxruntime_engine import OnnxRuntimeEngine  # noqa: E402


def make_adapter(name):
    return export_adapter(name)


def build_core(adapter):
    try:
        from jetcam_app.inference.adapters.base import build_core as seeded_build
    except ImportError:
        return adapter.build_network()
    return seeded_build(adapter)


@pytest.fixture(scope="session")
def onnx_cache(tmp_path_factory):
    """One folder for the whole session, so test_trt_build reuses these exports (cached by content)."""
    path = tmp_path_factory.getbasetemp() / "onnx_cache"
    path.mkdir(exist_ok=True)
    return str(path)


@pytest.fixture(scope="session")
def photo_bgr():
    """A real photograph (scikit-image's astronaut) as BGR uint8."""
    skimage_data = pytest.importorskip("skimage.data")
    return np.ascontiguousarray(skimage_data.astronaut()[..., :3][..., ::-1])


def labels_of(result):
    """What the result says, to compare two runs: class ids, or keypoints to the pixel, or the mask's area."""
    if isinstance(result, Classification):
        return [int(c) for c in result.class_ids]
    if hasattr(result, "keypoints"):
        return np.round(result.keypoints[..., :2]).astype(int).tolist()
    if hasattr(result, "mask"):
        return int(result.mask.sum()) // 100  # within a hundred pixels
    return sorted(int(v) for v in result.labels)


@pytest.mark.parametrize("name", MODELS.choices())
def test_core_exports_and_onnxruntime_matches_torch(name, onnx_cache, photo_bgr):
    adapter = make_adapter(name)
    network = build_core(adapter)
    image = photo_bgr
    batch = adapter.preprocess(image, torch.device("cpu"), torch.float32)
    with torch.inference_mode():
        reference = as_tuple(network(batch))

    engine = OnnxRuntimeEngine(EngineConfig(backend="onnxruntime", cache_dir=onnx_cache, threads=2))
    engine.load(network, adapter.example_input(), name)

    model = onnx.load(engine.onnx_path)
    onnx.checker.check_model(model)
    assert max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) <= 17
    assert [i.name for i in model.graph.input] == list(adapter.input_names)
    assert [o.name for o in model.graph.output] == list(adapter.output_names)
    for value in list(model.graph.input) + list(model.graph.output):
        dims = [d.dim_value for d in value.type.tensor_type.shape.dim]
        assert all(d > 0 for d in dims), "%s has a dynamic dimension: %s" % (value.name, dims)
    assert tuple(model.graph.input[0].type.tensor_type.shape.dim[i].dim_value for i in range(4)) == tuple(batch.shape)
    assert not any(n.op_type == "NonMaxSuppression" for n in model.graph.node), "NMS belongs in torch, not the core"

    outputs = engine.infer(batch)
    report = cross_validate(reference, outputs, "fp32")
    assert report.ok, report.summary()
    assert labels_of(adapter.postprocess(outputs, image.shape[:2])) == labels_of(adapter.postprocess(reference, image.shape[:2]))
    engine.close()


def test_export_is_cached_by_content(tmp_path):
    network = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU()).eval()
    example = torch.zeros(1, 3, 16, 16)
    first = export_onnx(network, example, str(tmp_path), "tiny")
    again = export_onnx(network, example, str(tmp_path), "tiny")
    assert first.exported and not again.exported and again.path == first.path and again.sha256 == first.sha256
    assert first.output_names == ("output",) and first.input_shape == (1, 3, 16, 16)
    with torch.no_grad():
        network[0].bias.add_(1.0)
    changed = export_onnx(network, example, str(tmp_path), "tiny")
    assert changed.exported and changed.path != first.path and changed.sha256 != first.sha256
    other_shape = export_onnx(network, torch.zeros(1, 3, 32, 32), str(tmp_path), "tiny")
    assert "1x3x32x32" in other_shape.path and other_shape.path != changed.path


_TINY = """import torch


class Tiny(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 3)

    def forward(self, x):
        return self.conv(x)%s
"""


def _tiny_from_file(folder, tail, monkeypatch):
    """A network whose class lives in its own file, so a test can change forward() and keep the weights."""
    import importlib.util
    import sys
    path = folder / "tiny_net.py"
    path.write_text(_TINY % tail)
    spec = importlib.util.spec_from_file_location("tiny_net", str(path))  # one name: only the code differs
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "tiny_net", module)  # imported, as an adapter's module is
    spec.loader.exec_module(module)
    torch.manual_seed(0)
    return module.Tiny().eval()


def test_a_changed_forward_with_the_same_weights_is_exported_again(tmp_path, monkeypatch):
    example = torch.zeros(1, 3, 16, 16)
    first = export_onnx(_tiny_from_file(tmp_path, "", monkeypatch), example, str(tmp_path / "cache"), "tiny")
    same = export_onnx(_tiny_from_file(tmp_path, "", monkeypatch), example, str(tmp_path / "cache"), "tiny")
    assert first.exported and not same.exported and same.path == first.path
    changed_net = _tiny_from_file(tmp_path, ".relu()", monkeypatch)  # same repr and weights, another graph
    changed = export_onnx(changed_net, example, str(tmp_path / "cache"), "tiny")
    assert changed.exported and changed.path != first.path and changed.sha256 != first.sha256
    ops = [n.op_type for n in onnx.load(changed.path).graph.node]
    assert "Relu" in ops and "Relu" not in [n.op_type for n in onnx.load(first.path).graph.node]


@pytest.mark.skipif(not (torch.cuda.is_available() or cpu_runs_half_convolutions()),
                    reason="torch %s runs no float16 convolution on the CPU and there is no GPU" % torch.__version__)
def test_fp16_export_has_half_io_and_leaves_the_network_fp32(tmp_path):
    network = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU()).eval()
    model = export_onnx(network, torch.zeros(1, 3, 16, 16), str(tmp_path), "tiny", precision="fp16")
    graph = onnx.load(model.path).graph
    half = onnx.TensorProto.FLOAT16
    assert graph.input[0].type.tensor_type.elem_type == half and graph.output[0].type.tensor_type.elem_type == half
    assert next(network.parameters()).dtype == torch.float32


def test_multiple_outputs_get_default_names(tmp_path):
    class TwoHeads(torch.nn.Module):
        def forward(self, x):
            return x.mean((2, 3)), x.flatten(2).max(-1).values  # max: torch 1.10 exports no amax

    model = export_onnx(TwoHeads().eval(), torch.rand(1, 3, 8, 8), str(tmp_path), "two")
    assert model.output_names == ("output0", "output1")


def test_onnxruntime_runs_on_the_cpu_with_the_requested_threads(tmp_path):
    network = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.ReLU(), torch.nn.Flatten()).eval()
    engine = OnnxRuntimeEngine(EngineConfig(backend="onnxruntime", cache_dir=str(tmp_path), threads=1))
    engine.load(network, torch.zeros(1, 3, 16, 16), "tiny")
    assert engine.device.type == "cpu" and engine.providers[-1] == "CPUExecutionProvider"
    x = torch.rand(1, 3, 16, 16)
    out = engine.infer(x)
    assert isinstance(out, tuple) and isinstance(out[0], torch.Tensor)
    np.testing.assert_allclose(out[0].numpy(), network(x).detach().numpy(), rtol=1e-5, atol=1e-5)
    with pytest.raises(ConfigError, match="exported for input"):
        engine.infer(torch.rand(1, 3, 32, 32))


def test_an_fp16_export_nothing_here_can_trace_is_one_line_naming_the_fixes(tmp_path, monkeypatch):
    import jetcam_app.inference.engines.onnx_export as onnx_export

    monkeypatch.setattr(onnx_export, "cpu_runs_half_convolutions", lambda: False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    network = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3)).eval()
    with pytest.raises(EngineBuildError, match="no float16 convolution on the CPU.*--precision fp32") as e:
        export_onnx(network, torch.zeros(1, 3, 16, 16), str(tmp_path), "tiny", precision="fp16")
    assert "\n" not in str(e.value)


def test_onnxruntime_fp16_without_a_gpu_provider_is_a_config_error():
    import onnxruntime

    if any(p in onnxruntime.get_available_providers() for p in ("CUDAExecutionProvider", "TensorrtExecutionProvider")):
        pytest.skip("this onnxruntime has a GPU provider")
    with pytest.raises(ConfigError, match="fp16 with onnxruntime needs"):
        OnnxRuntimeEngine(EngineConfig(backend="onnxruntime", precision="fp16"))
