"""What a Triton server's model takes and gives, read from its metadata and config, checked against the app's model."""

from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Sequence, Tuple

import numpy as np

from ..errors import EngineConnectionError
from .served import DETECTIONS_OUTPUT, WireFormat

NUMPY_TYPES = {"FP32": np.float32, "FP16": np.float16, "UINT8": np.uint8, "BYTES": np.object_}


@dataclass(frozen=True)
class ServedModel:
    """The served model as the engine uses it: its wire format, input and outputs (shapes without the batch)."""

    wire: WireFormat
    input_name: str
    input_type: str  # KServe wire type: FP32, FP16, UINT8, BYTES
    input_dims: Tuple[int, ...]
    output_names: Tuple[str, ...]
    output_types: Tuple[str, ...]
    output_dims: Tuple[Tuple[int, ...], ...]

    def frame_bytes(self) -> int:
        """Input bytes of one frame (0 for BYTES: a JPEG's size varies)."""
        if self.input_type == "BYTES":
            return 0
        return int(np.prod(self.input_dims)) * np.dtype(NUMPY_TYPES[self.input_type]).itemsize

    def output_specs(self) -> List[Tuple[str, Any, int]]:
        """(name, numpy dtype, bytes a frame) of each output."""
        return [(n, NUMPY_TYPES[t], int(np.prod(d)) * np.dtype(NUMPY_TYPES[t]).itemsize)
                for n, t, d in zip(self.output_names, self.output_types, self.output_dims)]


def config_parameters(config: Mapping[str, Any]) -> Dict[str, str]:
    """The string parameters of a model config (gRPC as_json wraps it in "config"; HTTP does not)."""
    config = config.get("config", config)
    return {k: str(v.get("string_value", "")) for k, v in (config.get("parameters") or {}).items()
            if isinstance(v, dict)}


def _describe(inputs: Mapping[str, Any]) -> str:
    return ", ".join("%s %s %s" % (n, i["datatype"], [int(d) for d in i["shape"]]) for n, i in inputs.items())


def check_served(meta: Mapping[str, Any], parameters: Mapping[str, str], example_shape: Sequence[int],
                 float_type: str, input_name: str, output_names: Sequence[str], model: str, url: str) -> ServedModel:
    """The served model if it takes what the app sends for `example_shape` (Bx3xHxW): that float tensor, the uint8
    frame of HxW or its JPEG (any batch where dimension 0 is -1); EngineConnectionError naming both sides and the
    fix otherwise."""
    wire = WireFormat.from_parameters(dict(parameters))
    inputs = {i["name"]: i for i in meta.get("inputs", [])}
    want = [int(d) for d in example_shape]
    hw = want[2:]
    served = inputs.get(input_name) if wire.input == "float" else (list(inputs.values())[:1] or [None])[0]
    shape = [int(d) for d in served["shape"]] if served else []
    if wire.input == "uint8":
        wanted_type, wanted = "UINT8", [want[0]] + hw + [3]
    elif wire.input == "jpeg":
        wanted_type, wanted = "BYTES", [want[0], 1]
    else:
        wanted_type, wanted = float_type, want
    matches = served is not None and served["datatype"] == wanted_type and len(shape) == len(wanted) and all(
        s in (-1, w) for s, w in zip(shape, wanted))
    if not matches:
        raise EngineConnectionError("Triton model '%s' at %s takes %s, but the app sends %s %s %s; fix: re-export it "
                                    "with run.py export-triton for this model and --precision, or pass --triton-model"
                                    % (model, url, _describe(inputs) or "no inputs",
                                       served["name"] if served and wire.input != "float" else input_name,
                                       wanted_type, wanted))
    outputs = {o["name"]: o for o in meta.get("outputs", [])}
    names = [DETECTIONS_OUTPUT] if wire.output == "detections" else list(output_names or outputs)
    missing = [n for n in names if n not in outputs]
    if missing:
        raise EngineConnectionError("Triton model '%s' at %s has outputs %s, the app needs %s; fix: re-export it with "
                                    "run.py export-triton" % (model, url, list(outputs), names))
    return ServedModel(wire, served["name"], served["datatype"], tuple(shape[1:]), tuple(names),
                       tuple(outputs[n]["datatype"] for n in names),
                       tuple(tuple(int(d) for d in outputs[n]["shape"][1:]) for n in names))
