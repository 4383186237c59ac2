"""What a Triton model exported for the app takes and gives: its wire format and the graph that serves it.

Input: `float` is the adapter's preprocessed Bx3xHxW tensor (the core as it is); `uint8` is the frame already resized
(or letterboxed) to the input size, BxHxWx3 BGR, which the graph converts and normalises with the adapter's own
prepare_tensor(): a quarter of the bytes, the same tensor; `jpeg` is that frame JPEG-encoded (BYTES), decoded by
model.py (Python variant only). Output: `raw` is the core's tensors (decoded and NMS'd by the app); `detections` is
the adapter's static postprocessing run in the graph, Bx(max_detections+1)x6 packed rows (static_nms.py) with boxes
in input pixels, which the app maps to the frame. One graph serves the onnx, plan and python variants alike.
"""

import logging
import warnings
from dataclasses import dataclass
from typing import Dict, List, Sequence, Tuple

import torch

from ..errors import ConfigError, EngineBuildError
from .pbtxt import TensorSpec

log = logging.getLogger(__name__)
INPUT_KINDS = ("auto", "float", "uint8", "jpeg")
OUTPUT_KINDS = ("auto", "raw", "detections")
IMAGE_INPUT = "image"  # the uint8 frame (or its JPEG)
DETECTIONS_OUTPUT = "detections"
ROW_WIDTH = 6  # x1, y1, x2, y2, score, label; row 0 of each frame: kept, exact, candidates


@dataclass(frozen=True)
class WireFormat:
    """A served model's input and output kinds and, for `detections`, the NMS settings baked into its graph."""

    input: str = "float"
    output: str = "raw"
    score_threshold: float = 0.0
    iou_threshold: float = 0.0
    max_detections: int = 0

    def parameters(self) -> Dict[str, str]:
        """config.pbtxt parameters the client reads back (TritonEngine) to check the app asks what the graph does."""
        out = {"jetcam_input": self.input, "jetcam_output": self.output}
        if self.output == "detections":
            out.update(jetcam_score_threshold=repr(float(self.score_threshold)),
                       jetcam_iou_threshold=repr(float(self.iou_threshold)),
                       jetcam_max_detections=str(int(self.max_detections)))
        return out

    @classmethod
    def from_parameters(cls, parameters: Dict[str, str]) -> "WireFormat":
        def number(key, kind):
            try:
                return kind(parameters.get(key, 0))
            except ValueError:
                return kind(0)

        return cls(parameters.get("jetcam_input", "float"), parameters.get("jetcam_output", "raw"),
                   number("jetcam_score_threshold", float), number("jetcam_iou_threshold", float),
                   number("jetcam_max_detections", int))


def choose_wire(adapter, core, input_kind: str = "auto", output_kind: str = "auto") -> WireFormat:
    """The wire format to export: `auto` takes uint8 and detections where the model can, float and raw where not;
    ConfigError (with the fix) for a kind the model cannot serve."""
    from ..inference.engines.onnx_export import PrebuiltOnnx

    if input_kind not in INPUT_KINDS or output_kind not in OUTPUT_KINDS:
        raise ConfigError("unknown --input %s / --output %s; choose --input %s and --output %s"
                          % (input_kind, output_kind, "|".join(INPUT_KINDS), "|".join(OUTPUT_KINDS)))
    traceable = not isinstance(core, PrebuiltOnnx)  # a user's ONNX file runs as it is: no graph around it
    frames_ok = traceable and adapter.input_geometry() is not None
    detections_ok = traceable and adapter.task == "detection" and bool(adapter.batched_static)
    if input_kind == "auto":
        input_kind = "uint8" if frames_ok else "float"
    if output_kind == "auto":
        output_kind = "detections" if detections_ok else "raw"
    if input_kind in ("uint8", "jpeg") and not frames_ok:
        raise ConfigError("--input %s: %s's preprocessing is not a plain resize of the frame (or the model is a "
                          "user's ONNX file, which is served as it is); fix: --input float" % (input_kind, adapter.name))
    if output_kind == "detections" and not detections_ok:
        raise ConfigError("--output detections: %s has no static decoding the server can run (a classifier, an "
                          "end-to-end head or a user's ONNX file); fix: --output raw" % adapter.name)
    model = adapter.config
    if output_kind == "detections":
        return WireFormat(input_kind, output_kind, model.score_threshold, model.iou_threshold, model.max_detections)
    return WireFormat(input_kind, output_kind)


class ServedNetwork(torch.nn.Module):
    """uint8 BxHxWx3 frames (already at the input size) -> the adapter's normalisation -> the core -> its raw outputs
    or, with `detections`, the adapter's static postprocessing (boxes in input pixels)."""

    def __init__(self, adapter, core: torch.nn.Module, wire: WireFormat, dtype: torch.dtype = torch.float32):
        super().__init__()
        self.adapter = adapter
        self.core = core
        self.wire = wire
        self.dtype = dtype

    def extra_repr(self) -> str:  # the wire and NMS settings are part of what the graph computes
        return "wire=%r, dtype=%s" % (self.wire, self.dtype)

    def forward(self, image: torch.Tensor):
        # uint8 -> float first (exactly): TensorRT takes a uint8 tensor into a Cast only, not a Transpose
        x = self.adapter.prepare_tensor(image.float(), self.dtype) if self.wire.input != "float" else image
        outputs = self.core(x)
        if isinstance(outputs, torch.Tensor):
            outputs = (outputs,)
        if self.wire.output != "detections":
            return tuple(outputs)
        return self.adapter.static_postprocess_batch(tuple(outputs), tuple(self.adapter.input_size))


def example_frames(adapter, batch: int = 1) -> torch.Tensor:
    h, w = adapter.input_size
    return torch.zeros((batch, h, w, 3), dtype=torch.uint8)


def served_module(adapter, core: torch.nn.Module, wire: WireFormat, precision: str) -> Tuple[ServedNetwork, torch.Tensor]:
    """The graph to export and an example input for it; fp16 halves a copy of the core (the frame is normalised in
    fp32, then cast, as the app's preprocess(dtype=float16) does)."""
    import copy

    dtype = torch.float16 if precision == "fp16" else torch.float32
    if precision == "fp16":
        core = copy.deepcopy(core).half()
    if wire.input == "float":
        example = adapter.example_input(dtype=dtype)
    else:
        example = example_frames(adapter)
    return ServedNetwork(adapter, core.eval(), wire, dtype).eval(), example


def tensor_specs(adapter, module: ServedNetwork, example: torch.Tensor, output_names: Sequence[str],
                 precision: str) -> Tuple[List[TensorSpec], List[TensorSpec]]:
    """config.pbtxt's inputs and outputs (without the batch dimension) for the served graph."""
    with torch.inference_mode():
        outputs = module(example)
    outputs = (outputs,) if isinstance(outputs, torch.Tensor) else outputs
    float_type = "float16" if precision == "fp16" else "float32"
    if module.wire.input == "float":
        inputs = [TensorSpec(tuple(adapter.input_names)[0], float_type, tuple(example.shape[1:]))]
    elif module.wire.input == "uint8":
        inputs = [TensorSpec(IMAGE_INPUT, "uint8", tuple(example.shape[1:]))]
    else:
        inputs = [TensorSpec(IMAGE_INPUT, "bytes", (1,))]
    specs = []
    for name, out in zip(output_names, outputs):
        dtype = "float32" if out.dtype == torch.float32 else "float16"
        specs.append(TensorSpec(name, dtype, tuple(int(d) for d in out.shape[1:])))
    return inputs, specs


def output_names_of(adapter, wire: WireFormat) -> Tuple[str, ...]:
    return (DETECTIONS_OUTPUT,) if wire.output == "detections" else tuple(adapter.output_names)


def export_served_onnx(module: ServedNetwork, example: torch.Tensor, path: str, output_names: Sequence[str]) -> None:
    """The served graph as ONNX with a free batch axis, checked (onnx.checker, input and output counts)."""
    import inspect

    from ..inference.engines.onnx_export import check_onnx, exportable_opset, fix_output_shapes, output_shapes

    input_name = IMAGE_INPUT if module.wire.input != "float" else tuple(module.adapter.input_names)[0]
    names = [input_name] + list(output_names)
    kwargs = dict(export_params=True, opset_version=exportable_opset(), do_constant_folding=True,
                  input_names=[input_name], output_names=list(output_names),
                  dynamic_axes={name: {0: "batch"} for name in names})
    if "dynamo" in inspect.signature(torch.onnx.export).parameters:
        kwargs["dynamo"] = False
    try:
        with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
            warnings.simplefilter("ignore", DeprecationWarning)
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            warnings.filterwarnings("ignore", message="Constant folding")
            torch.onnx.export(module, (example,), path, **kwargs)
    except (RuntimeError, ValueError, TypeError) as e:  # torch's OnnxExporterError is a RuntimeError
        raise EngineBuildError("ONNX export of the served %s (%s in, %s out) failed: %s; fix: export-triton --input "
                               "float --output raw" % (module.adapter.name, module.wire.input, module.wire.output,
                                                       str(e).splitlines()[0])) from e
    fix_output_shapes(path, output_shapes(module, example), dynamic_batch=True)
    check_onnx(path, 1, len(output_names))


def describe(wire: WireFormat, inputs: Sequence[TensorSpec], outputs: Sequence[TensorSpec]) -> str:
    """`uint8 1x416x416x3 in (519 KB a frame), detections 101x6 out (2.4 KB)` for the export's log line."""
    sizes = {"float32": 4, "float16": 2, "uint8": 1, "bytes": 0}

    def kb(specs):
        total = 0
        for spec in specs:
            n = sizes[spec.dtype]
            for d in spec.dims:
                n *= int(d)
            total += n
        return total / 1024.0

    return "%s %s in (%s a frame), %s %s out (%.1f KB)" % (
        wire.input, "x".join(str(d) for d in inputs[0].dims), "%.0f KB" % kb(inputs) if kb(inputs) else "a JPEG",
        wire.output, ", ".join("x".join(str(d) for d in s.dims) for s in outputs), kb(outputs))
