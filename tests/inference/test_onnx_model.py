"""A user's ONNX file (--model PATH.onnx): decoders picked from the output shapes, boxes mapped back to the frame to
the pixel, preprocessing as Ultralytics exports expect, labels, input sizes, and damaged or hostile files. The files
are real ONNX exports built here with known outputs (onnx_files.py); they run on ONNX Runtime."""

import os
import sys

import numpy as np
import pytest
import torch

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import onnx_files  # noqa: E402
from jetcam_app.config import load_config  # noqa: E402
from jetcam_app.errors import ConfigError, JetcamError, WeightsError  # noqa: E402
from jetcam_app.inference.adapters.base import build_core, create_adapter  # noqa: E402
from jetcam_app.inference.adapters.preprocess import letterbox_params  # noqa: E402

NAMES = ["person", "car", "dog"]
BOXES = [(100.0, 150.0, 300.0, 400.0, 1, 0.9), (320.0, 40.0, 420.0, 140.0, 0, 0.8), (10.0, 300.0, 60.0, 620.0, 2, 0.7)]


def adapter_for(path, **model):
    overrides = {"model.name": str(path), "model.score_threshold": 0.3}
    overrides.update({"model." + k: v for k, v in model.items()})
    return create_adapter(load_config(overrides=overrides).model)


def run(adapter, image):
    core = build_core(adapter)
    outputs = core(adapter.preprocess(image, torch.device("cpu"), torch.float32))
    return adapter.postprocess(outputs, image.shape[:2])


def expected_frame_boxes(boxes, image_hw, input_hw):
    scale, pad_x, pad_y = letterbox_params(image_hw, input_hw)
    out = []
    for x1, y1, x2, y2, _, _ in boxes:
        xs = [min(max((x - pad_x) / scale, 0), image_hw[1]) for x in (x1, x2)]
        ys = [min(max((y - pad_y) / scale, 0), image_hw[0]) for y in (y1, y2)]
        out.append([xs[0], ys[0], xs[1], ys[1]])
    return np.array(out, np.float32)


@pytest.mark.parametrize("frame_hw", [(333, 517), (517, 333), (640, 640), (241, 1001)])
def test_yolov8_boxes_map_back_to_the_frame_to_the_pixel(tmp_path, frame_hw):
    path = onnx_files.yolov8_onnx(tmp_path / "v8.onnx", BOXES, NAMES)
    adapter = adapter_for(path)
    assert (adapter.decoder, adapter.task, adapter.class_names, adapter.input_size) == ("yolov8", "detection", NAMES,
                                                                                        (640, 640))
    result = run(adapter, np.zeros(frame_hw + (3,), np.uint8))
    order = np.argsort(-result.scores)
    want = expected_frame_boxes(BOXES, frame_hw, (640, 640))
    np.testing.assert_allclose(result.boxes[order], want, atol=1e-3)
    assert list(result.labels[order]) == [1, 0, 2]
    np.testing.assert_allclose(result.scores[order], [0.9, 0.8, 0.7], atol=1e-6)


def test_the_static_path_equals_the_eager_one(tmp_path):
    adapter = adapter_for(onnx_files.yolov8_onnx(tmp_path / "v8.onnx", BOXES, NAMES))
    image = np.zeros((333, 517, 3), np.uint8)
    core = build_core(adapter)
    outputs = core(adapter.prepare_tensor(torch.from_numpy(image), torch.float32))
    packed = adapter.static_postprocess(outputs, image.shape[:2]).numpy()
    eager, static = adapter.postprocess(outputs, image.shape[:2]), adapter.unpack(packed)
    np.testing.assert_allclose(static.boxes, eager.boxes, atol=1e-4)
    assert list(static.labels) == list(eager.labels)
    batch = adapter.static_postprocess_batch(tuple(torch.cat([o, o]) for o in outputs), image.shape[:2]).numpy()
    np.testing.assert_allclose(adapter.unpack(batch[1]).boxes, eager.boxes, atol=1e-4)


def test_preprocessing_is_letterbox_grey_114_rgb_0_to_1(tmp_path):
    adapter = adapter_for(onnx_files.yolov8_onnx(tmp_path / "v8.onnx", BOXES, NAMES, imgsz=(64, 64)))
    image = np.zeros((32, 64, 3), np.uint8)
    image[..., 0], image[..., 1], image[..., 2] = 10, 20, 30  # B, G, R
    for x in (adapter.preprocess(image, torch.device("cpu"), torch.float32),
              adapter.prepare_tensor(torch.from_numpy(image), torch.float32)):
        assert tuple(x.shape) == (1, 3, 64, 64)
        np.testing.assert_allclose(x[0, :, 32, 10].numpy(), [30 / 255, 20 / 255, 10 / 255], atol=1e-6)  # RGB
        np.testing.assert_allclose(x[0, :, 5, 10].numpy(), [114 / 255] * 3, atol=1e-6)  # the pad above
        np.testing.assert_allclose(x[0, :, 60, 10].numpy(), [114 / 255] * 3, atol=1e-6)  # and below


def test_yolov5_scores_are_objectness_times_class(tmp_path):
    path = onnx_files.yolov5_onnx(tmp_path / "v5.onnx", BOXES, NAMES, objectness=[0.5, 1.0, 0.9])
    adapter = adapter_for(path, labels=None)
    assert adapter.decoder == "yolov5" and adapter.class_names == ["class_0", "class_1", "class_2"]
    result = run(adapter, np.zeros((640, 640, 3), np.uint8))
    order = np.argsort(-result.scores)
    np.testing.assert_allclose(result.scores[order], [0.8, 0.7 * 0.9, 0.45], atol=1e-6)
    np.testing.assert_allclose(result.boxes[order][0], [320, 40, 420, 140], atol=1e-3)


def test_classifier_logits_and_probabilities(tmp_path):
    logits = [0.1, 2.5, -1.0, 0.7]
    for softmax in (False, True):
        adapter = adapter_for(onnx_files.classifier_onnx(tmp_path / ("c%d.onnx" % softmax), logits, softmax=softmax),
                              topk=2)
        assert (adapter.decoder, adapter.task) == ("classify", "classification")
        result = run(adapter, np.zeros((300, 200, 3), np.uint8))
        want = torch.softmax(torch.tensor(logits), 0)
        assert list(result.class_ids) == [1, 3]
        np.testing.assert_allclose(result.scores, want[[1, 3]].numpy(), atol=1e-5)  # never a softmax of a softmax


def test_labels_from_metadata_a_text_file_yaml_and_json(tmp_path):
    path = onnx_files.yolov8_onnx(tmp_path / "v8.onnx", BOXES, NAMES)
    (tmp_path / "l.txt").write_text("a\nb\n\nc\n")
    (tmp_path / "l.yaml").write_text("path: data\nnames:\n  0: x\n  1: y\n  2: z\n")
    (tmp_path / "l.json").write_text('{"names": ["p", "q", "r"]}')
    assert adapter_for(path).class_names == NAMES
    assert adapter_for(path, labels=str(tmp_path / "l.txt")).class_names == ["a", "b", "c"]
    assert adapter_for(path, labels=str(tmp_path / "l.yaml")).class_names == ["x", "y", "z"]
    assert adapter_for(path, labels=str(tmp_path / "l.json")).class_names == ["p", "q", "r"]
    (tmp_path / "short.txt").write_text("a\nb\n")
    with pytest.raises(ConfigError, match="names 2 classes and the model outputs 3"):
        adapter_for(path, labels=str(tmp_path / "short.txt"))
    no_meta = onnx_files.yolov8_onnx(tmp_path / "plain.onnx", BOXES, NAMES, metadata=False)
    assert adapter_for(no_meta).class_names == ["class_0", "class_1", "class_2"]


def test_a_segmentation_heads_extra_channels_are_not_classes(tmp_path):
    adapter = adapter_for(onnx_files.yolov8_onnx(tmp_path / "seg.onnx", BOXES, NAMES, extra_channels=32))
    assert adapter.n_classes == 3
    assert sorted(run(adapter, np.zeros((640, 640, 3), np.uint8)).labels) == [0, 1, 2]


def test_input_size_fixed_imgsz_metadata_and_default(tmp_path):
    fixed = onnx_files.yolov8_onnx(tmp_path / "fixed.onnx", BOXES, NAMES, imgsz=(480, 640))
    assert adapter_for(fixed).input_size == (480, 640)
    with pytest.raises(ConfigError, match="fixed input of 480x640"):
        adapter_for(fixed, imgsz="320")
    free = onnx_files.yolov8_onnx(tmp_path / "free.onnx", BOXES, NAMES, imgsz=(512, 512), dynamic="full")
    assert adapter_for(free).input_size == (512, 512)  # the metadata's imgsz
    assert adapter_for(free, imgsz="320,480").input_size == (320, 480)
    bare = onnx_files.yolov8_onnx(tmp_path / "bare.onnx", BOXES, NAMES, dynamic="full", metadata=False)
    assert adapter_for(bare).input_size == (640, 640)
    with pytest.raises(ConfigError, match="model.imgsz"):
        adapter_for(free, imgsz="big")


def test_symbolic_output_axes_are_read_from_one_run(tmp_path):
    """Ultralytics' dynamic exports name the anchor axis (['batch', 84, 'anchors']): the shape comes from a run."""
    import onnx

    path = onnx_files.yolov8_onnx(tmp_path / "v8.onnx", BOXES, NAMES, imgsz=(320, 320), dynamic="full")
    model = onnx.load(path)
    model.graph.output[0].type.tensor_type.shape.dim[2].dim_param = "anchors"
    onnx.save(model, path)
    adapter = adapter_for(path)
    assert (adapter.decoder, adapter.n_classes) == ("yolov8", 3)
    assert len(run(adapter, np.zeros((320, 320, 3), np.uint8))) == 3


def test_outputs_it_cannot_decode_name_their_shapes_and_the_decoders(tmp_path):
    echo = onnx_files.input_echo_onnx(tmp_path / "echo.onnx")
    with pytest.raises(ConfigError) as info:
        adapter_for(echo)
    text = str(info.value)
    assert "output0 [1, 3, 64, 96]" in text and "sum [1, 3]" in text and "yolov8" in text and "--decoder" in text
    v8 = onnx_files.yolov8_onnx(tmp_path / "v8.onnx", BOXES, NAMES)
    with pytest.raises(ConfigError, match="--decoder classify does not fit"):
        adapter_for(v8, decoder="classify")


def test_damaged_truncated_and_foreign_files_are_one_line_errors(tmp_path):
    good = onnx_files.yolov8_onnx(tmp_path / "v8.onnx", BOXES, NAMES)
    onnx_files.write_truncated(good, str(tmp_path / "cut.onnx"), 0.5)
    onnx_files.write_garbage(str(tmp_path / "junk.onnx"))
    for name in ("cut.onnx", "junk.onnx", "missing.onnx"):
        with pytest.raises(WeightsError) as info:
            adapter_for(tmp_path / name)
        assert info.value.exit_code == 2 and len(str(info.value).splitlines()) == 1 and name in str(info.value)


@pytest.mark.parametrize("location", ["../outside.bin", "/etc/passwd", "sub/../../x.bin"])
def test_external_data_outside_the_models_folder_is_refused(tmp_path, location):
    folder = tmp_path / "model"
    folder.mkdir()
    path = onnx_files.external_data_onnx(str(folder / "ext.onnx"), location)
    with pytest.raises(WeightsError, match="outside the model's folder"):
        adapter_for(path)


def test_a_cli_run_with_a_broken_file_exits_2_in_one_line(tmp_path, capsys):
    from jetcam_app.cli import main

    onnx_files.write_garbage(str(tmp_path / "junk.onnx"))
    code = main(["--source", "test://64x48@30?frames=2", "--model", str(tmp_path / "junk.onnx"), "--headless",
                 "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "not a readable ONNX file" in err[0]
    assert not (tmp_path / "out" / "timing.csv").exists()


def test_unknown_model_names_still_list_the_choices_and_the_onnx_path():
    with pytest.raises(JetcamError, match="or the path of a .onnx file"):
        load_config(overrides={"model.name": "yolov8n"})


class _EndToEnd(torch.nn.Module):
    """An end-to-end head (NMS in the graph, Ultralytics nms=True / YOLOv10 / YOLO26): [B, 300, 6] rows."""

    def __init__(self, rows):
        super().__init__()
        table = torch.zeros(300, 6)
        table[:len(rows)] = torch.tensor(rows, dtype=torch.float32)
        self.register_buffer("rows", table)

    def forward(self, x):
        return self.rows.unsqueeze(0) + x[:, :1, :1, :1].reshape(-1, 1, 1) * 0


def test_an_end_to_end_head_is_read_as_final_boxes(tmp_path):
    rows = [(100, 150, 300, 400, 0.9, 2), (320, 40, 420, 140, 0.8, 0), (0, 0, 10, 10, 0.2, 1)]
    path = str(tmp_path / "e2e.onnx")
    onnx_files._export(_EndToEnd(rows), path, (640, 640), 1, False, ["output0"],
                       metadata=[("names", str(dict(enumerate(NAMES)))), ("task", "detect"), ("end2end", "True")])
    adapter = adapter_for(path)
    assert (adapter.decoder, adapter.class_names) == ("end2end", NAMES)
    result = run(adapter, np.zeros((333, 517, 3), np.uint8))
    want = expected_frame_boxes([r[:4] + (0, 0) for r in rows[:2]], (333, 517), (640, 640))
    np.testing.assert_allclose(result.boxes, want, atol=1e-3)  # best first; 0.2 is under the 0.3 threshold
    assert list(result.labels) == [2, 0] and [result.name_of(i) for i in result.labels] == ["dog", "person"]
    with pytest.raises(NotImplementedError):  # no static path: the fused stages fall back to the eager ones
        adapter.static_postprocess(build_core(adapter)(adapter.example_input()), (333, 517))
    plain = str(tmp_path / "plain.onnx")  # no metadata: [1, 300, 6] reads as a one-class YOLOv5 unless forced
    onnx_files._export(_EndToEnd(rows), plain, (640, 640), 1, False, ["output0"])
    assert adapter_for(plain).decoder == "yolov5"
    forced = adapter_for(plain, decoder="end2end")
    assert forced.decoder == "end2end" and len(run(forced, np.zeros((640, 640, 3), np.uint8))) == 2
