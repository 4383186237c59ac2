"""config.pbtxt for a Triton model: names, dims and data types of the core's inputs and outputs, batching, instances."""

from dataclasses import dataclass
from typing import Mapping, Optional, Sequence, Tuple

# numpy dtype name -> Triton's config data type and its KServe v2 wire name
DATA_TYPES = {"float32": ("TYPE_FP32", "FP32"), "float16": ("TYPE_FP16", "FP16"), "uint8": ("TYPE_UINT8", "UINT8"),
              "bytes": ("TYPE_STRING", "BYTES")}
# variant -> the line naming what executes the model
RUNTIMES = {"onnx": 'platform: "onnxruntime_onnx"', "python": 'backend: "python"', "plan": 'platform: "tensorrt_plan"'}
INSTANCE_KINDS = {"auto": "KIND_AUTO", "gpu": "KIND_GPU", "cpu": "KIND_CPU"}


@dataclass(frozen=True)
class TensorSpec:
    """One input or output without its batch dimension, e.g. ("input", "float32", (3, 416, 416))."""

    name: str
    dtype: str
    dims: Tuple[int, ...]


def _tensor_block(specs: Sequence[TensorSpec]) -> str:
    items = []
    for spec in specs:
        items.append('  {\n    name: "%s"\n    data_type: %s\n    dims: [ %s ]\n  }'
                     % (spec.name, DATA_TYPES[spec.dtype][0], ", ".join(str(int(d)) for d in spec.dims)))
    return ",\n".join(items)


def model_config(name: str, variant: str, inputs: Sequence[TensorSpec], outputs: Sequence[TensorSpec],
                 max_batch_size: int = 8, max_queue_delay_us: int = 500, instances: int = 1,
                 instance_kind: str = "auto", parameters: Optional[Mapping[str, str]] = None) -> str:
    """The text of config.pbtxt. Dynamic batching merges requests from several clients (and the frames of
    several cameras) up to max_batch_size; the queue delay is how long the server waits to fill a batch.
    `parameters`: string parameters the client reads back (the wire format, served.WireFormat)."""
    lines = ['name: "%s"' % name, RUNTIMES[variant], "max_batch_size: %d" % max_batch_size,
             "input [\n%s\n]" % _tensor_block(inputs), "output [\n%s\n]" % _tensor_block(outputs)]
    if max_batch_size > 0:
        lines.append("dynamic_batching {\n  max_queue_delay_microseconds: %d\n}" % max_queue_delay_us)
    lines.append("instance_group [\n  {\n    count: %d\n    kind: %s\n  }\n]" % (instances, INSTANCE_KINDS[instance_kind]))
    for key, value in sorted((parameters or {}).items()):
        lines.append('parameters {\n  key: "%s"\n  value: { string_value: "%s" }\n}' % (key, value))
    return "\n".join(lines) + "\n"
