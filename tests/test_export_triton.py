"""`run.py export-triton`: the repository's files, config.pbtxt, the ONNX's dynamic batch axis and the plan variant's error.

Loading the repository in a real server is tested in tests/inference/test_triton.py (the python variant)."""

import os

import numpy as np
import pytest
import torch

from jetcam_app.cli import main
from jetcam_app.config import ModelConfig
from jetcam_app.triton.export import export_repository, triton_model_name

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")


@pytest.fixture(scope="module")
def onnx_repo(tmp_path_factory):
    out = tmp_path_factory.mktemp("repo")
    cache = tmp_path_factory.mktemp("cache")
    path = export_repository(ModelConfig(name="mobilenet_v2", random_weights=True), str(out), variant="onnx",
                             max_batch_size=16, instances=2, instance_kind="gpu", cache_dir=str(cache))
    return path, str(cache)


def test_onnx_variant_config_pbtxt(onnx_repo):
    path, _ = onnx_repo
    assert os.path.basename(path) == "mobilenet_v2" == triton_model_name("mobilenet_v2", "fp32")
    assert sorted(os.listdir(path)) == ["1", "config.pbtxt"] and os.listdir(os.path.join(path, "1")) == ["model.onnx"]
    text = open(os.path.join(path, "config.pbtxt")).read()
    for line in ('name: "mobilenet_v2"', 'platform: "onnxruntime_onnx"', "max_batch_size: 16", 'name: "images"',
                 "data_type: TYPE_FP32", "dims: [ 3, 224, 224 ]", "dims: [ 1000 ]", "dynamic_batching {",
                 "max_queue_delay_microseconds: 500", "count: 2", "kind: KIND_GPU"):
        assert line in text, line


def test_the_onnx_takes_any_batch_and_matches_torch(onnx_repo):
    from jetcam_app.inference.adapters.base import build_core, create_adapter

    path, _ = onnx_repo
    model = onnx.load(os.path.join(path, "1", "model.onnx"))
    for value in list(model.graph.input) + list(model.graph.output):
        dims = value.type.tensor_type.shape.dim
        assert dims[0].dim_param == "batch" and all(d.dim_value > 0 for d in dims[1:])
    session = ort.InferenceSession(os.path.join(path, "1", "model.onnx"), providers=["CPUExecutionProvider"])
    core = build_core(create_adapter(ModelConfig(name="mobilenet_v2", random_weights=True)))
    x = torch.rand(3, 3, 224, 224)
    (got,) = session.run(None, {"images": x.numpy()})
    with torch.inference_mode():
        want = core(x).numpy()
    assert got.shape == (3, 1000) and np.allclose(got, want, atol=1e-4, rtol=0)


def test_the_fixed_shape_export_of_the_other_backends_is_unchanged(onnx_repo):
    from jetcam_app.inference.adapters.base import build_core, create_adapter
    from jetcam_app.inference.engines.onnx_export import export_onnx

    _, cache = onnx_repo
    adapter = create_adapter(ModelConfig(name="mobilenet_v2", random_weights=True))
    fixed = export_onnx(build_core(adapter), adapter.example_input(), cache, "mobilenet_v2")
    assert "_1x3x224x224_" in os.path.basename(fixed.path)
    dims = onnx.load(fixed.path).graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_value for d in dims] == [1, 3, 224, 224]


def test_python_variant_ships_model_py_that_needs_no_jetcam(tmp_path, onnx_repo):
    code = main(["export-triton", "--model", "mobilenet_v2", "--random-weights", "--variant", "python",
                 "--out", str(tmp_path), "--cache-dir", onnx_repo[1], "--instances", "1", "--torchscript"])
    assert code == 0
    version = tmp_path / "mobilenet_v2" / "1"
    assert sorted(os.listdir(str(version))) == ["model.onnx", "model.pt", "model.py"]
    # model.pt (run by model.py with torch on a GPU instance) takes any batch, like the ONNX
    from jetcam_app.inference.adapters.base import build_core, create_adapter

    core = build_core(create_adapter(ModelConfig(name="mobilenet_v2", random_weights=True)))
    x = torch.rand(2, 3, 224, 224)
    with torch.inference_mode():
        assert torch.allclose(torch.jit.load(str(version / "model.pt"))(x), core(x), atol=1e-4, rtol=0)
    # the trace records cuDNN's TF32 switch in every convolution: fp32 must stay fp32 on the server's GPU
    convolutions = [n for n in torch.jit.load(str(version / "model.pt")).inlined_graph.nodes()
                    if n.kind() == "aten::_convolution"]
    assert convolutions and all(list(n.inputs())[-1].toIValue() is False for n in convolutions)
    assert torch.backends.cudnn.allow_tf32  # the switch is put back after the trace
    source = (version / "model.py").read_text()
    assert "jetcam_app" not in source.replace('"""', "").split("never jetcam_app")[-1]
    assert 'backend: "python"' in (tmp_path / "mobilenet_v2" / "config.pbtxt").read_text()


def test_plan_variant_without_tensorrt_is_one_line_naming_it(tmp_path, capsys):
    try:
        import tensorrt  # noqa: F401
        pytest.skip("TensorRT imports here: the plan variant would build")
    except ImportError:
        pass
    code = main(["export-triton", "--model", "mobilenet_v2", "--random-weights", "--variant", "plan",
                 "--out", str(tmp_path), "--cache-dir", str(tmp_path / "cache")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1 and "'tensorrt'" in err[0] and "--variant onnx" in err[0]


def test_bad_arguments_exit_2(tmp_path, capsys):
    assert main(["export-triton", "--model", "yolo", "--out", str(tmp_path)]) == 2
    assert "unknown model 'yolo'" in capsys.readouterr().err
    assert main(["export-triton", "--model", "mobilenet_v2", "--max-batch-size", "0", "--out", str(tmp_path)]) == 2
