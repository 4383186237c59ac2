"""Real, small ONNX files with exactly known outputs, built at test time from torch (no downloads, no weights).

The loader of user ONNX models (Ultralytics YOLOv8/YOLO11 and YOLOv5/YOLOv7 detectors, classifiers) is tested
against these: each builder exports a torch module whose output is a constant tensor (the boxes or logits it was
given) carried over the input's batch, so a test knows every number the file will produce. The graph still
reads the input (``x[:, :1, :1, :1] * 0``), so the exporter keeps it and a dynamic batch axis stays dynamic;
a NaN or inf input would therefore show up in the output. ``input_echo_onnx`` returns its input, to check
preprocessing; the last helpers write broken files (truncated, not ONNX, external data pointing elsewhere).
Kept Python 3.6 / torch 1.10 compatible: no f-strings, typing-module hints.
"""

import inspect
import math
import os
import warnings
from typing import List, Optional, Sequence, Tuple, Union

import torch

from jetcam_app.inference.engines.onnx_export import exportable_opset

Box = Tuple[float, float, float, float, int, float]  # x1, y1, x2, y2 (input pixels), class index, score
Dynamic = Union[bool, str]  # False, True (dynamic batch) or "full" (dynamic batch, height and width)
Metadata = List[Tuple[str, str]]  # ONNX metadata_props, in order


class _Constant(torch.nn.Module):
    """Returns `const` ([1, ...]) repeated over the input's batch (by broadcasting, which keeps the other output
    dims static in a dynamic-batch export); optionally a softmax over dim 1."""

    def __init__(self, const, softmax=False):
        super(_Constant, self).__init__()
        self.register_buffer("const", const)
        self.softmax = softmax

    def forward(self, x):
        out = self.const + x[:, :1, :1, :1].reshape([-1] + [1] * (self.const.dim() - 1)) * 0  # broadcast to [B, ...]
        return torch.softmax(out, dim=1) if self.softmax else out


class _Echo(torch.nn.Module):
    def forward(self, x):
        return x * 1.0, x.sum(dim=3).sum(dim=2)


def _export(module: torch.nn.Module, path: str, imgsz: Sequence[int], batch: int, dynamic: Dynamic,
            output_names: List[str], spatial_outputs: Sequence[str] = (), metadata: Optional[Metadata] = None) -> str:
    import onnx

    path = str(path)
    example = torch.zeros(int(batch), 3, int(imgsz[0]), int(imgsz[1]))
    full = {0: "batch", 2: "height", 3: "width"} if dynamic == "full" else {0: "batch"}
    axes = {name: full if name == "images" or name in spatial_outputs else {0: "batch"}
            for name in ["images"] + list(output_names)}
    kwargs = dict(export_params=True, opset_version=exportable_opset(), do_constant_folding=True,
                  input_names=["images"], output_names=list(output_names), dynamic_axes=axes if dynamic else None)
    if "dynamo" in inspect.signature(torch.onnx.export).parameters:
        kwargs["dynamo"] = False
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation and tracer warnings
        torch.onnx.export(module.eval(), (example,), path, **kwargs)
        outputs = module(example)
    model = onnx.load(path)
    # torch names every output dim of a dynamic export symbolic ("Addoutput0_dim_1"): make the fixed ones static
    for value, out in zip(model.graph.output, outputs if isinstance(outputs, tuple) else (outputs,)):
        for i, dim in enumerate(value.type.tensor_type.shape.dim):
            if not dynamic or i not in axes[value.name]:
                dim.dim_value = int(out.shape[i])  # clears dim_param (a oneof)
    model.metadata_props.extend([onnx.StringStringEntryProto(key=k, value=v) for k, v in metadata or []])
    onnx.save(model, path)
    return path


def _metadata(names: Sequence[str], imgsz: Sequence[int], batch: int, task: Optional[str]) -> Metadata:
    """Ultralytics' metadata_props; with no task only YOLOv5's "stride" and "names"."""
    props = [("stride", "32"), ("names", str(dict(enumerate(names))))]
    return props if task is None else [("description", "test head"), ("author", "Ultralytics")] + props + [
        ("task", task), ("batch", str(batch)), ("imgsz", str([int(v) for v in imgsz]))]


def _anchor_rows(boxes: Sequence[Box], names: Sequence[str], n_anchors: int,
                 objectness: Optional[List[float]]) -> torch.Tensor:
    """[n_anchors, 4 (+1 objectness) + nc]: boxes[i] in row i, then 2x2 boxes at (1, 1) with zeros after."""
    if len(boxes) > n_anchors or any(not 0 <= int(b[4]) < len(names) for b in boxes):
        raise ValueError("%r do not fit %d anchors and %d classes" % (boxes, n_anchors, len(names)))
    k = 4 + (objectness is not None)
    rows = torch.zeros(int(n_anchors), k + len(names))
    rows[:, 0:4] = torch.tensor([1.0, 1.0, 2.0, 2.0])
    for i, (x1, y1, x2, y2, cls, score) in enumerate(boxes):
        rows[i, 0:4] = torch.tensor([(x1 + x2) / 2.0, (y1 + y2) / 2.0, float(x2 - x1), float(y2 - y1)])
        rows[i, k + int(cls)] = float(score)
        if objectness is not None:
            rows[i, 4] = objectness[i]
    return rows


def yolov8_onnx(path: str, boxes: Sequence[Box], names: Sequence[str], imgsz: Sequence[int] = (640, 640),
                dynamic: Dynamic = False, batch: int = 1, n_anchors: int = 64, metadata: bool = True,
                extra_channels: int = 0) -> str:
    """Ultralytics YOLOv8/YOLO11 detect head: "output0" [B, 4 + nc + extra_channels, n_anchors] (cx, cy, w, h
    in input pixels, then class scores in 0..1, no objectness; extra rows are zeros, like -seg mask coefficients).
    Anchor i holds boxes[i]; the others a 2x2 box at (1, 1) with all scores 0."""
    rows = _anchor_rows(boxes, names, n_anchors, None)
    const = torch.cat([rows, torch.zeros(int(n_anchors), int(extra_channels))], dim=1).t().unsqueeze(0)
    return _export(_Constant(const.contiguous()), path, imgsz, batch, dynamic, ["output0"],
                   metadata=_metadata(names, imgsz, batch, "detect") if metadata else None)


def yolov5_onnx(path: str, boxes: Sequence[Box], names: Sequence[str], imgsz: Sequence[int] = (640, 640),
                dynamic: Dynamic = False, batch: int = 1, n_anchors: int = 64, metadata: bool = False,
                objectness: Optional[Sequence[float]] = None) -> str:
    """YOLOv5/YOLOv7 head: "output0" [B, n_anchors, 5 + nc] (cx, cy, w, h in input pixels, objectness, class
    probabilities). Anchor i holds boxes[i] with objectness[i] (default 1.0) and its score at its class; the
    others a 2x2 box at (1, 1) with objectness and class probabilities 0."""
    obj = [1.0] * len(boxes) if objectness is None else [float(v) for v in objectness]
    const = _anchor_rows(boxes, names, n_anchors, obj).unsqueeze(0)
    return _export(_Constant(const), path, imgsz, batch, dynamic, ["output0"],
                   metadata=_metadata(names, imgsz, batch, None) if metadata else None)


def classifier_onnx(path: str, logits: Sequence[float], imgsz: Sequence[int] = (224, 224), dynamic: Dynamic = False,
                    batch: int = 1, softmax: bool = False, names: Optional[Sequence[str]] = None) -> str:
    """Classifier: "output0" [B, C] = `logits`, or their softmax (a Softmax node in the graph) if `softmax`."""
    const = torch.tensor([float(v) for v in logits]).reshape(1, -1)
    return _export(_Constant(const, softmax=softmax), path, imgsz, batch, dynamic, ["output0"],
                   metadata=None if names is None else _metadata(names, imgsz, batch, "classify"))


def input_echo_onnx(path: str, imgsz: Sequence[int] = (64, 96), dynamic: Dynamic = False) -> str:
    """"output0" = the input [B, 3, H, W] unchanged, "sum" [B, 3] = its per-channel sums: for checking
    preprocessing. Not a detector or classifier: a loader should refuse it unless forced."""
    return _export(_Echo(), path, imgsz, 1, dynamic, ["output0", "sum"], spatial_outputs=["output0"])


def write_truncated(src: str, dst: str, fraction: float = 0.5) -> str:
    with open(str(src), "rb") as f, open(str(dst), "wb") as out:
        data = f.read()
        out.write(data[:int(len(data) * fraction)])
    return str(dst)


def write_garbage(path: str) -> str:
    """Bytes no protobuf parser accepts ("N" opens field 9 with the invalid wire type 6)."""
    with open(str(path), "wb") as f:
        f.write(b"NOT AN ONNX FILE\x00\xff\xfe" * 64)
    return str(path)


def external_data_onnx(path: str, location: str) -> str:
    """A YOLOv8-style file (a 1280-float initializer) whose external data entries point at `location` (such as
    "../outside.bin" or an absolute path); the real data stays in "weights.bin" beside it."""
    import onnx

    path = yolov8_onnx(path, [(10, 10, 50, 50, 0, 0.9)], ["person"], imgsz=(64, 64), n_anchors=256)
    model = onnx.load(path)
    onnx.save_model(model, path, save_as_external_data=True, all_tensors_to_one_file=True, location="weights.bin",
                    size_threshold=0)
    model = onnx.load(path, load_external_data=False)
    entries = [e for t in onnx.external_data_helper._get_all_tensors(model) for e in t.external_data
               if e.key == "location"]
    assert entries, "no tensor was saved as external data"
    for entry in entries:  # "../outside.bin", "/etc/x": where a careless loader would read
        entry.value = location
    with open(path, "wb") as f:  # not onnx.save: that would write the external data again
        f.write(model.SerializeToString())
    return path


if __name__ == "__main__":  # self-check: build every file in a temporary folder and run it on ONNX Runtime
    import tempfile

    import numpy as np
    import onnx
    import onnxruntime as ort

    def run(path, img, dims):  # checker, graph output dims and input name, then the outputs for `img`
        onnx.checker.check_model(path)
        dim = onnx.load(path).graph.output[0].type.tensor_type.shape.dim
        assert [d.dim_param or d.dim_value for d in dim] == dims, (path, dim)
        sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
        assert [i.name for i in sess.get_inputs()] == ["images"], sess.get_inputs()
        return sess.run(None, {"images": img})

    def rand(b, h, w):
        return np.random.rand(b, 3, h, w).astype(np.float32)

    def same(got, want):  # exact, in float32
        np.testing.assert_array_equal(got, np.asarray(want, dtype=np.float32))

    def props(path):
        return {e.key: e.value for e in onnx.load(path).metadata_props}

    tmp, names = tempfile.mkdtemp(), ["person", "car", "dog"]
    boxes = [(10, 20, 110, 220, 1, 0.9), (300, 300, 340, 360, 0, 0.5)]
    meta = {"stride": "32", "names": "{0: 'person', 1: 'car', 2: 'dog'}"}
    for dyn in (False, True, "full"):
        b, batch = (1, 1) if dyn is False else (2, "batch")
        h, w = (320, 480) if dyn == "full" else (640, 640)
        p = yolov8_onnx(os.path.join(tmp, "v8_%s.onnx" % dyn), boxes, names, dynamic=dyn, extra_channels=2)
        (out,) = run(p, rand(b, h, w), [batch, 9, 64])
        same(out.transpose(0, 2, 1)[:, :3], [[[60, 120, 100, 200, 0, 0.9, 0, 0, 0], [320, 330, 40, 60, 0.5, 0, 0, 0, 0],
                                               [1, 1, 2, 2, 0, 0, 0, 0, 0]]] * b)
        same(out[:, :, 3:], out[:, :, 2:3].repeat(61, axis=2))
        assert props(p) == dict(meta, imgsz="[640, 640]", task="detect", batch="1", author="Ultralytics",
                                description="test head"), props(p)
        p = yolov5_onnx(os.path.join(tmp, "v5_%s.onnx" % dyn), boxes, names, dynamic=dyn, metadata=True,
                        objectness=[0.8, 1.0])
        (out,) = run(p, rand(b, h, w), [batch, 64, 8])
        same(out[:, 0:3], [[[60, 120, 100, 200, 0.8, 0, 0.9, 0], [320, 330, 40, 60, 1, 0.5, 0, 0],
                            [1, 1, 2, 2, 0, 0, 0, 0]]] * b)
        same(out[:, 3:], out[:, 2:3].repeat(61, axis=1))
        assert props(p) == meta, props(p)
        logits = [1.0, -2.0, 0.5, 3.0]
        for sm in (False, True):
            p = classifier_onnx(os.path.join(tmp, "cls_%s_%s.onnx" % (dyn, sm)), logits, dynamic=dyn, softmax=sm,
                                names=["a", "b", "c", "d"])
            (out,) = run(p, rand(b, 224, 224), [batch, 4])
            e = [math.exp(v) for v in logits]
            np.testing.assert_allclose(out, [[v / sum(e) for v in e] if sm else logits] * b, rtol=1e-6)
            assert props(p)["task"] == "classify" and props(p)["names"] == "{0: 'a', 1: 'b', 2: 'c', 3: 'd'}"
        p = input_echo_onnx(os.path.join(tmp, "echo_%s.onnx" % dyn), dynamic=dyn)
        h, w = (32, 48) if dyn == "full" else (64, 96)
        img = rand(b, h, w)
        out, sums = run(p, img, [batch, 3] + (["height", "width"] if dyn == "full" else [64, 96]))
        same(out, img)
        np.testing.assert_allclose(sums, img.sum(axis=(2, 3)), rtol=1e-5)

    (out,) = run(yolov8_onnx(os.path.join(tmp, "b4.onnx"), [], ["x"], imgsz=(64, 64), batch=4), rand(4, 64, 64),
                 [4, 5, 64])
    assert not out[:, 4].any() and props(os.path.join(tmp, "b4.onnx"))["batch"] == "4"
    for bad in (write_truncated(os.path.join(tmp, "v8_False.onnx"), os.path.join(tmp, "trunc.onnx")),
                write_garbage(os.path.join(tmp, "junk.onnx"))):
        try:
            ort.InferenceSession(bad, providers=["CPUExecutionProvider"])
            raise AssertionError("%s loaded" % bad)
        except ort.capi.onnxruntime_pybind11_state.InvalidProtobuf as e:
            print("refused as expected: %s: %s" % (os.path.basename(bad), str(e).splitlines()[0][:100]))
    os.makedirs(os.path.join(tmp, "ext"))
    ext = onnx.load(external_data_onnx(os.path.join(tmp, "ext", "m.onnx"), "../outside.bin"), load_external_data=False)
    locations = [e.value for t in onnx.external_data_helper._get_all_tensors(ext) for e in t.external_data
                 if e.key == "location"]
    assert locations == ["../outside.bin"] and os.path.getsize(os.path.join(tmp, "ext", "weights.bin")) == 1280 * 4
    print("all ONNX test files check out (opset %d, torch %s) in %s" % (exportable_opset(), torch.__version__, tmp))
