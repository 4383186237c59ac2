"""A user's ONNX file through the app: the same predictions on every backend that runs here, two sources batched
(or one at a time for a fixed-batch file), the file fitted to a fixed shape and cached by its hash for TensorRT, a
real TensorRT(-RTX) build of it, and NanoDet's own core exported as a YOLOv8-style file giving NanoDet's boxes."""

import json
import os
import sys

import numpy as np
import pytest
import torch

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import onnx_files  # noqa: E402
from jetcam_app.cli import main  # noqa: E402
from jetcam_app.config import load_config  # noqa: E402
from jetcam_app.errors import ConfigError  # noqa: E402
from jetcam_app.inference.adapters.base import build_core, create_adapter  # noqa: E402
from jetcam_app.inference.engines.onnx_export import export_onnx  # noqa: E402

NAMES = ["person", "car"]
BOXES = [(100.0, 150.0, 300.0, 400.0, 1, 0.9), (320.0, 240.0, 420.0, 340.0, 0, 0.8)]


def predictions(out_dir):
    with open(os.path.join(str(out_dir), "predictions.jsonl")) as f:
        return [json.loads(line) for line in f]


def app(tmp_path, name, model, *extra):
    out = tmp_path / name
    code = main(["--source", "sample", "--model", str(model), "--max-frames", "4", "--headless", "--threads", "1",
                 "--out", str(out), "--cache-dir", str(tmp_path / "cache")] + list(extra))
    assert code == 0
    return predictions(out)


def test_cpu_and_onnxruntime_give_the_same_boxes_on_the_sample(tmp_path):
    path = onnx_files.yolov8_onnx(tmp_path / "v8.onnx", BOXES, NAMES, dynamic=True)
    cpu, ort = app(tmp_path, "cpu", path, "--backend", "cpu"), app(tmp_path, "ort", path, "--backend", "onnxruntime")
    assert len(cpu) == 4 and [r["boxes"] for r in cpu] == [r["boxes"] for r in ort]
    assert cpu[0]["names"] == ["car", "person"] and cpu[0]["boxes"][0][0] == 100.0


@pytest.mark.parametrize("dynamic", [True, False])
def test_two_sources_batched_or_one_at_a_time(tmp_path, caplog, dynamic):
    path = onnx_files.yolov8_onnx(tmp_path / "v8.onnx", BOXES, NAMES, imgsz=(320, 320), dynamic=dynamic)
    out = tmp_path / "out"
    with caplog.at_level("INFO"):
        code = main(["--source", "test://320x240@30?frames=3", "--source", "test://480x270@30?frames=3",
                     "--model", path, "--backend", "onnxruntime", "--headless", "--threads", "1", "--out", str(out),
                     "--cache-dir", str(tmp_path / "cache")])
    assert code == 0
    rows = predictions(out)
    assert sorted((r["source"], r["frame"]) for r in rows) == [(s, i) for s in ("test0", "test1") for i in range(3)]
    by_source = {r["source"]: r["boxes"][0] for r in rows}
    # 320x240 in 320x320: scale 1, 40 px above; 480x270: scale 2/3, 70 px above (boxes clamped to the frame)
    assert by_source["test0"] == pytest.approx([100.0, 110.0, 300.0, 240.0], abs=1e-2)
    assert by_source["test1"] == pytest.approx([150.0, 120.0, 450.0, 270.0], abs=1e-2)
    text = caplog.text
    if dynamic:
        assert "batches of up to 2" in text
    else:
        assert "exported for batches of 1: frames run one at a time" in text


def test_the_file_is_fitted_to_a_fixed_shape_and_cached_by_its_hash(tmp_path):
    path = onnx_files.yolov8_onnx(tmp_path / "v8.onnx", BOXES, NAMES, imgsz=(320, 320), dynamic="full")
    adapter = create_adapter(load_config(overrides={"model.name": path, "model.imgsz": "256,320"}).model)
    core = build_core(adapter)
    cache = str(tmp_path / "cache")
    fixed = export_onnx(core, torch.zeros(2, 3, 256, 320), cache, adapter.name)
    import onnx

    dims = [d.dim_value for d in onnx.load(fixed.path).graph.input[0].type.tensor_type.shape.dim]
    assert dims == [2, 3, 256, 320] and fixed.path != path and fixed.input_names == ("images",)
    assert export_onnx(core, torch.zeros(2, 3, 256, 320), cache, adapter.name).path == fixed.path  # reused
    free = export_onnx(core, torch.zeros(2, 3, 256, 320), cache, adapter.name, dynamic_batch=True)
    assert onnx.load(free.path).graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"
    other = onnx_files.yolov8_onnx(tmp_path / "v8.onnx", BOXES[:1], NAMES, imgsz=(320, 320), dynamic="full")
    changed = create_adapter(load_config(overrides={"model.name": other, "model.imgsz": "256,320"}).model)
    refit = export_onnx(build_core(changed), torch.zeros(2, 3, 256, 320), cache, changed.name)
    assert refit.path != fixed.path and refit.sha256 != fixed.sha256  # a new file: a new copy, a new engine key
    with pytest.raises(ConfigError, match="is an fp32 graph"):
        export_onnx(core, torch.zeros(1, 3, 256, 320), cache, adapter.name, precision="fp16")
    as_is = onnx_files.yolov8_onnx(tmp_path / "fixed.onnx", BOXES, NAMES, imgsz=(320, 320))
    fixed_adapter = create_adapter(load_config(overrides={"model.name": as_is}).model)
    assert export_onnx(build_core(fixed_adapter), torch.zeros(1, 3, 320, 320), cache, "x").path == as_is


def test_tensorrt_builds_the_users_file(tmp_path):
    from jetcam_app.inference.engines.cache import EngineCache, GpuInfo, current_gpu
    from jetcam_app.inference.engines.trt_build import BuildSettings, build_or_load, load_api
    from jetcam_app.errors import BackendUnavailable

    try:
        api = load_api(None if torch.cuda.is_available() else "tensorrt_rtx_bindings")
    except BackendUnavailable as e:
        pytest.skip("needs a TensorRT or TensorRT-RTX builder: %s" % e)
    path = onnx_files.yolov8_onnx(tmp_path / "v8.onnx", BOXES, NAMES, imgsz=(320, 320), dynamic=True)
    adapter = create_adapter(load_config(overrides={"model.name": path}).model)
    onnx = export_onnx(build_core(adapter), adapter.example_input(), str(tmp_path / "cache"), adapter.name,
                       precision=api.onnx_precision("fp32"))
    gpu = current_gpu() or GpuInfo("cpu cross build", "8.6")
    settings = BuildSettings(precision="fp32", workspace_mb=256,
                             target_cc=None if torch.cuda.is_available() else gpu.compute_capability)
    cache = EngineCache(str(tmp_path / "cache"))
    built = build_or_load(api, onnx, adapter.name, settings, cache, gpu)
    assert built.built and len(built.data) > 1000 and "v8_1x3x320x320_fp32" in built.stem
    assert not build_or_load(api, onnx, adapter.name, settings, cache, gpu).built  # the cache, keyed on the file


class NanoDetAsYolo(torch.nn.Module):
    """NanoDet-g with its normalisation and GFL decoding inside: RGB 0..1 in, a YOLOv8 detect head's layout out."""

    def __init__(self, adapter):
        super().__init__()
        from jetcam_app.inference.adapters.nanodet import MEAN_BGR, STD_BGR

        self.adapter, self.core = adapter, build_core(adapter)
        self.register_buffer("mean", torch.tensor(MEAN_BGR).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(STD_BGR).view(1, 3, 1, 1))

    def forward(self, x):
        boxes, scores = self.adapter.decode_batch(self.core((x.flip(1) * 255 - self.mean) / self.std))
        centre, size = (boxes[..., :2] + boxes[..., 2:]) / 2, boxes[..., 2:] - boxes[..., :2]
        return torch.cat((centre, size, scores), -1).transpose(1, 2)


def test_nanodets_core_exported_as_a_users_file_gives_nanodets_predictions(tmp_path, photos):
    from jetcam_app.inference.adapters.labels import COCO_80
    from jetcam_app.inference.adapters.nanodet_assets import default_models_dir, ensure_nanodet_weights

    if not os.path.isfile(os.path.join(default_models_dir(), "nanodet.json")):
        pytest.skip("NanoDet weights are not in %s" % default_models_dir())
    nanodet = create_adapter(load_config(overrides={"model.name": "nanodet", "model.weights": ensure_nanodet_weights(),
                                                    "model.score_threshold": 0.3}).model)
    path = str(tmp_path / "nanodet_yolo.onnx")
    onnx_files._export(NanoDetAsYolo(nanodet), path, (416, 416), 1, False, ["output0"],
                       metadata=[("names", str(dict(enumerate(COCO_80)))), ("task", "detect")])
    user = create_adapter(load_config(overrides={"model.name": path, "model.score_threshold": 0.3}).model)
    assert (user.decoder, user.class_names, user.input_size) == ("yolov8", COCO_80, (416, 416))
    image = photos["astronaut"]  # square: the letterbox pads nothing, so 114 against NanoDet's 0 cannot matter
    with torch.no_grad():
        want = nanodet.postprocess(build_core(nanodet)(nanodet.preprocess(image, torch.device("cpu"), torch.float32)),
                                   image.shape[:2])
    got = user.postprocess(build_core(user)(user.preprocess(image, torch.device("cpu"), torch.float32)),
                           image.shape[:2])
    assert len(want) >= 1 and len(got) == len(want)
    assert list(got.labels) == list(want.labels)
    np.testing.assert_allclose(got.boxes, want.boxes, atol=0.05)
    np.testing.assert_allclose(got.scores, want.scores, atol=1e-4)
