"""Read a TensorFlow.js graph model (model.json + weight shards) with numpy only: nodes, dequantised constants, conv layers."""

import base64
import json
import os
import re
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

import numpy as np

from ...errors import WeightsError

# bytes per stored element; TFJS quantisation stores float32 weights as float16, or affine uint8/uint16.
_STORED_DTYPES = {"float32": np.float32, "float16": np.float16, "int32": np.int32, "uint8": np.uint8,
                  "uint16": np.uint16, "bool": np.bool_}
_BIAS_OPS = ("Add", "AddV2", "BiasAdd")


@dataclass
class ConvSpec:
    """One Conv2D node turned into PyTorch's layout: weight OIHW, bias (or None), stride and the explicit padding."""

    name: str
    weight: np.ndarray  # (out, in, kh, kw) float32
    bias: Optional[np.ndarray]  # (out,) float32
    stride_hw: Tuple[int, int]
    pads: Tuple[int, ...]  # the non-zero amounts of a Pad node feeding the conv (via Transposes); () when none


def _attr_str(node: dict, key: str) -> str:
    value = node.get("attr", {}).get(key, {}).get("s", "")
    return base64.b64decode(value).decode("ascii") if value else ""


def _attr_ints(node: dict, key: str) -> List[int]:
    return [int(v) for v in node.get("attr", {}).get(key, {}).get("list", {}).get("i", [])]


def _dequantise(raw: bytes, entry: dict) -> np.ndarray:
    shape = [int(d) for d in entry["shape"]]
    quant = entry.get("quantization")
    stored = (quant or {}).get("dtype", entry["dtype"])
    if stored not in _STORED_DTYPES:
        raise WeightsError("weight %s has dtype %s, which this reader does not support" % (entry["name"], stored))
    array = np.frombuffer(raw, dtype=np.dtype(_STORED_DTYPES[stored]).newbyteorder("<")).reshape(shape)
    if quant and stored == "float16":
        return array.astype(np.float32)
    if quant:  # affine uint8 / uint16: value = q * scale + min
        return (array.astype(np.float32) * np.float32(quant["scale"]) + np.float32(quant["min"])).astype(np.float32)
    return array.copy()


class TfjsGraph:
    """The nodes of a TFJS graph model and its constants, dequantised to float32/int32 numpy arrays."""

    def __init__(self, json_path: str, fetch_hint: str = "python -m jetcam_app.assets nanodet"):
        self.json_path = json_path
        self.fetch_hint = fetch_hint
        try:
            with open(json_path) as f:
                model = json.load(f)
            self.nodes = {node["name"]: node for node in model["modelTopology"]["node"]}
            manifest = model["weightsManifest"]
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise WeightsError("cannot read the TFJS graph %s (%s); fetch it again with "
                               "`%s`" % (json_path, e, fetch_hint)) from e
        self.weights = self._read_weights(manifest, os.path.dirname(os.path.abspath(json_path)))
        self._consumers = {}  # type: Dict[str, List[dict]]
        for node in self.nodes.values():
            for name in node.get("input", []):
                self._consumers.setdefault(name.split(":")[0].lstrip("^"), []).append(node)

    def _read_weights(self, manifest: List[dict], folder: str) -> Dict[str, np.ndarray]:
        try:
            return self._read_groups(manifest, folder)
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise WeightsError("the weights manifest of %s is malformed (%s: %s); fetch it again with `%s`"
                               % (self.json_path, type(e).__name__, e, self.fetch_hint)) from e

    def _shard_paths(self, group: dict, folder: str, expected: int) -> List[str]:
        """The group's shard files, each a regular file inside the model folder, together of the size the
        manifest's weights add up to: checked before a byte is read (a shard named /dev/zero is never read)."""
        root = os.path.realpath(folder)
        paths = []
        total = 0
        for shard in group["paths"]:
            path = os.path.realpath(os.path.join(folder, str(shard)))
            if os.path.dirname(path) != root and not path.startswith(root + os.sep):
                raise WeightsError("%s names the weight shard %s outside its folder %s; only files next to it are "
                                   "read" % (self.json_path, shard, folder))
            if not os.path.isfile(path):
                raise WeightsError("TFJS weight shard %s is missing or not a regular file; place it next to %s"
                                   % (path, self.json_path))
            total += os.path.getsize(path)
            paths.append(path)
        if total != expected:
            raise WeightsError("the weight shards of %s hold %d bytes, the manifest declares %d; fetch them again "
                               "with `%s`" % (self.json_path, total, expected, self.fetch_hint))
        return paths

    def _read_groups(self, manifest: List[dict], folder: str) -> Dict[str, np.ndarray]:
        weights = {}  # type: Dict[str, np.ndarray]
        for group in manifest:
            sizes = []
            for entry in group["weights"]:
                stored = (entry.get("quantization") or {}).get("dtype", entry["dtype"])
                count = int(np.prod([int(d) for d in entry["shape"]])) if entry["shape"] else 1
                if count < 0:
                    raise ValueError("negative shape for %s" % entry["name"])
                sizes.append(count * np.dtype(_STORED_DTYPES.get(stored, np.float32)).itemsize)
            chunks = []
            for path in self._shard_paths(group, folder, sum(sizes)):
                try:
                    with open(path, "rb") as f:
                        chunks.append(f.read())
                except OSError as e:
                    raise WeightsError("TFJS weight shard %s is unreadable (%s); place it next to %s"
                                       % (path, e, self.json_path)) from e
            blob = b"".join(chunks)
            offset = 0
            for entry, size in zip(group["weights"], sizes):
                weights[entry["name"]] = _dequantise(blob[offset:offset + size], entry)
                offset += size
        return weights

    def consumers(self, name: str) -> List[dict]:
        return self._consumers.get(name, [])

    def ops(self, op: str) -> List[dict]:
        return [node for node in self.nodes.values() if node["op"] == op]

    def const(self, name: str) -> np.ndarray:
        name = name.split(":")[0]
        if name not in self.weights:
            raise WeightsError("TFJS graph %s: %s is not a constant" % (self.json_path, name))
        return self.weights[name]

    def _feeding_pads(self, input_name: str) -> Tuple[int, ...]:
        node = self.nodes.get(input_name.split(":")[0])
        while node is not None and node["op"] == "Transpose":
            node = self.nodes.get(node["input"][0].split(":")[0])
        if node is None or node["op"] not in ("Pad", "PadV2"):
            return ()
        return tuple(int(v) for v in self.const(node["input"][1]).reshape(-1) if v)

    def conv2d_layers(self) -> List[ConvSpec]:
        """Every Conv2D in the order of its name's number (convolution, convolution_1, ...), which converters
        (onnx-tf here) assign in the source model's execution order."""
        def order(node: dict) -> int:
            match = re.search(r"_(\d+)$", node["name"])
            return int(match.group(1)) if match else 0

        specs = []
        for node in sorted(self.ops("Conv2D"), key=order):
            if _attr_str(node, "padding") != "VALID" or _attr_str(node, "data_format") not in ("NHWC", ""):
                raise WeightsError("TFJS graph %s: conv %s uses padding %s / layout %s, which this loader does not map"
                                   % (self.json_path, node["name"], _attr_str(node, "padding"), _attr_str(node, "data_format")))
            kernel = self.const(node["input"][1])  # HWIO
            bias = None
            for consumer in self.consumers(node["name"]):
                if consumer["op"] in _BIAS_OPS:
                    other = [n for n in consumer["input"] if n.split(":")[0] != node["name"]]
                    if other and other[0].split(":")[0] in self.weights:
                        bias = self.const(other[0]).reshape(-1).astype(np.float32)
            strides = _attr_ints(node, "strides") or [1, 1, 1, 1]
            specs.append(ConvSpec(node["name"], np.ascontiguousarray(kernel.transpose(3, 2, 0, 1), dtype=np.float32),
                                  bias, (strides[1], strides[2]), self._feeding_pads(node["input"][0])))
        return specs
