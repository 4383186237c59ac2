"""A TFJS graph model (NHWC, TF op names) run as a PyTorch module: each node becomes a step, image tensors stay NCHW.

Why an interpreter here and not a hand-written network (as NanoDet's): MoveNet and Selfie are native TF graphs (no
onnx-tf transposes), so a node-for-node replay is exact and short, while their topologies (a MobileNetV2-FPN with
four heads; a MobileNetV3 U-net with 11 squeeze-excite blocks) would take hundreds of lines to retype. The
layout of every value is decided once, at build: what convolutions, pools and resizes produce is kept NCHW (PyTorch's
and cuDNN's layout, no transposes in the exported ONNX); element-wise ops follow their inputs (constants are
permuted at build); shape ops (Reshape, GatherNd, Pack, ...) get NHWC, TF's own order, by one permute.
Static shapes only: the graph must have a fixed input size (all of these have).
"""

from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn as nn

from ...errors import WeightsError
from . import tfjs_ops as ops
from .tfjs_graph import TfjsGraph

_IMAGE_OPS = ("Conv2D", "_FusedConv2D", "DepthwiseConv2dNative", "FusedDepthwiseConv2dNative",
              "Conv2DBackpropInput", "AvgPool", "MaxPool", "ResizeBilinear", "Pad", "PadV2")
_UNARY = {
    "Identity": lambda t: t, "Relu": torch.relu, "Relu6": ops.ACTIVATIONS["Relu6"], "Sigmoid": torch.sigmoid,
    "Sqrt": torch.sqrt, "Tanh": torch.tanh, "Exp": torch.exp, "Neg": torch.neg, "Rsqrt": torch.rsqrt,
}  # type: Dict[str, Callable[[torch.Tensor], torch.Tensor]]
_BINARY = {
    "Add": torch.add, "AddV2": torch.add, "BiasAdd": torch.add, "Sub": torch.sub, "Mul": torch.mul,
    "RealDiv": torch.div, "Maximum": torch.maximum, "Minimum": torch.minimum, "FloorDiv": ops.floor_div,
    "SquaredDifference": lambda a, b: (a - b) * (a - b),
}  # type: Dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]]
_NHWC_TO_NCHW_AXIS = {0: 0, 1: 2, 2: 3, 3: 1, -1: 1, -2: 3, -3: 2, -4: 0}


def _ref(name: str) -> Tuple[str, int]:
    """'node:1' -> ('node', 1); a control input ('^node') is not a value and never reaches here."""
    base, _, index = name.partition(":")
    return base, int(index) if index else 0


def to_nchw(t: torch.Tensor) -> torch.Tensor:
    """An NHWC value (or one of lower rank, broadcast as TF would: leading ones) for an op with an NCHW operand."""
    if t.dim() < 4:
        t = t.reshape([1] * (4 - t.dim()) + list(t.shape))
    return t.permute(0, 3, 1, 2)


def to_nhwc(t: torch.Tensor) -> torch.Tensor:
    return t.permute(0, 2, 3, 1)


class TfjsModule(nn.Module):
    """Runs `graph` from `input_name` (NHWC, or NCHW with input_nchw) to `output_names`. forward() returns a tuple;
    a 4-D output stays NCHW when it is in `nchw_outputs`, else comes back in TF's NHWC."""

    def __init__(self, graph: TfjsGraph, input_name: str, output_names: Sequence[str], input_nchw: bool = False,
                 nchw_outputs: Sequence[str] = ()):
        super().__init__()
        self.graph = graph
        self.input_name = input_name
        self.output_names = list(output_names)
        self.nchw_outputs = set(nchw_outputs)
        self._consts = {}  # type: Dict[Tuple[str, bool], str]  # (const, nchw) -> buffer attribute
        self._nchw = {input_name: bool(input_nchw)}  # type: Dict[str, bool]
        self._steps = []  # type: List[Tuple[str, Callable[..., Any], List[Any]]]
        for node in self._ordered_nodes():
            self._steps.append(self._compile(node))

    # --- build -------------------------------------------------------------------------------------------

    def _ordered_nodes(self) -> List[dict]:
        """The nodes the outputs need, inputs first (iterative DFS: MoveNet is 300 nodes deep)."""
        order, seen = [], set()  # type: List[dict], set
        for output in self.output_names:
            stack = [(_ref(output)[0], False)]
            while stack:
                name, expanded = stack.pop()
                if name in seen or name == self.input_name:
                    continue
                node = self.graph.nodes.get(name)
                if node is None:
                    raise WeightsError("TFJS graph %s has no node %s" % (self.graph.json_path, name))
                if node["op"] == "Const":
                    seen.add(name)
                    continue
                if expanded:
                    seen.add(name)
                    order.append(node)
                    continue
                stack.append((name, True))
                for value in node.get("input", []):
                    if not value.startswith("^"):
                        stack.append((_ref(value)[0], False))
        return order

    def _is_const(self, value: str) -> bool:
        return _ref(value)[0] in self.graph.weights

    def _const_np(self, value: str) -> np.ndarray:
        return self.graph.const(_ref(value)[0])

    def _buffer(self, value: str, nchw: bool = False, array: Optional[np.ndarray] = None) -> str:
        """A constant as a registered buffer (moves with .to(), exported as an initializer); `nchw`: broadcast to
        4-D in NHWC, then permuted, so it lines up with an NCHW operand."""
        key = (_ref(value)[0] if array is None else value, nchw)
        if key not in self._consts:
            data = self._const_np(value) if array is None else array
            if nchw and data.ndim > 0:
                data = data.reshape((1,) * (4 - data.ndim) + data.shape).transpose(0, 3, 1, 2)
            # a copy torch owns: a tensor over numpy's memory frees it through Python, which torch 1.10's ONNX
            # exporter does from a static destructor at exit, after the GIL is gone (the process hangs there)
            tensor = torch.from_numpy(np.ascontiguousarray(data)).clone()
            if tensor.dtype == torch.int32:  # indices and shapes: torch indexes with int64
                tensor = tensor.long()
            attr = "c%d" % len(self._consts)
            self.register_buffer(attr, tensor)
            self._consts[key] = attr
        return self._consts[key]

    def _operand(self, value: str, want_nchw: Optional[bool]) -> Any:
        """A step's argument: ('c', buffer) for a constant, ('v', value, permute) for a value (permute: 'nchw',
        'nhwc' or None: as it is)."""
        if self._is_const(value):
            return ("c", self._buffer(value, bool(want_nchw)))
        have = self._nchw.get(_ref(value)[0], False)
        if want_nchw is None or want_nchw == have:
            return ("v", value, None)
        return ("v", value, "nchw" if want_nchw else "nhwc")

    def _compile(self, node: dict) -> Tuple[str, Callable[..., Any], List[Any]]:
        op, name = node["op"], node["name"]
        inputs = [v for v in node.get("input", []) if not v.startswith("^")]
        if op in _IMAGE_OPS:
            self._nchw[name] = True
            return name, self._image_step(node, inputs), [self._operand(v, True) for v in inputs[:1]] if \
                op != "Conv2DBackpropInput" else [self._operand(inputs[2], True)]
        if op in _UNARY or op == "Cast":
            self._nchw[name] = self._nchw.get(_ref(inputs[0])[0], False)
            fn = _UNARY.get(op) or self._cast(node)
            return name, fn, [self._operand(inputs[0], None)]
        if op in _BINARY or op == "AddN":
            nchw = any(self._nchw.get(_ref(v)[0], False) for v in inputs if not self._is_const(v))
            self._nchw[name] = nchw
            args = [self._operand(v, nchw) for v in inputs]
            if op == "AddN":
                return name, lambda *ts: sum(ts[1:], ts[0]), args
            return name, _BINARY[op], args
        if op == "ConcatV2":
            values = inputs[:-1]
            axis = int(self._const_np(inputs[-1]))
            nchw = all(self._nchw.get(_ref(v)[0], False) or self._is_const(v) for v in values) and \
                any(self._nchw.get(_ref(v)[0], False) for v in values)
            self._nchw[name] = nchw
            axis = _NHWC_TO_NCHW_AXIS[axis] if nchw else axis
            return name, lambda *ts: torch.cat(ts, axis), [self._operand(v, nchw) for v in values]
        self._nchw[name] = False
        static = [inputs[i] for i in self._STATIC_ARGS.get(op, ()) if i < len(inputs)]
        return name, self._shape_step(node, inputs), [self._operand(v, False) for v in inputs if v not in static]

    def _cast(self, node: dict) -> Callable[[torch.Tensor], torch.Tensor]:
        dst = node.get("attr", {}).get("DstT", {}).get("type", "DT_FLOAT")
        if dst == "DT_FLOAT":  # to the network's float type (float16 after .half()), not always float32
            return lambda t: t.to(self._float_dtype())
        if dst in ("DT_INT32", "DT_INT64"):
            return lambda t: t.long() if not t.is_floating_point() else t.trunc().long()
        raise WeightsError("TFJS Cast to %s is not supported" % dst)

    def _float_dtype(self) -> torch.dtype:
        for buffer in self.buffers():
            if buffer.is_floating_point():
                return buffer.dtype
        return torch.float32

    # shape, axis and size arguments: read at build, not passed at run time (GatherNd's constant indices are data
    # and stay buffers)
    _STATIC_ARGS = {"Reshape": (1,), "ExpandDims": (1,), "ArgMax": (1,)}

    def _image_step(self, node: dict, inputs: List[str]) -> Callable[..., torch.Tensor]:
        op = node["op"]
        strides, dilations = ops.hw_attr(node, "strides"), ops.hw_attr(node, "dilations")
        padding = ops.attr_str(node, "padding")
        if ops.attr_str(node, "data_format") not in ("", "NHWC"):
            raise WeightsError("TFJS node %s has data_format %s; only NHWC graphs are read"
                               % (node["name"], ops.attr_str(node, "data_format")))
        if op in ("Conv2D", "_FusedConv2D", "DepthwiseConv2dNative", "FusedDepthwiseConv2dNative"):
            kernel = self._const_np(inputs[1])
            depthwise = "Depthwise" in op
            weight = self._buffer(inputs[1] + "#w", array=ops.depthwise_filter(kernel) if depthwise
                                  else ops.conv_filter(kernel))
            groups = int(kernel.shape[2]) if depthwise else 1
            bias, act = None, None
            if op.startswith("_Fused") or op.startswith("Fused"):
                act = ops.fused_activation(node)
                bias = self._buffer(inputs[2], array=self._const_np(inputs[2]).reshape(-1).astype(np.float32))

            def conv(x: torch.Tensor) -> torch.Tensor:
                y = ops.conv2d_tf(x, getattr(self, weight), getattr(self, bias) if bias else None, strides,
                                  padding, dilations, groups)
                return act(y) if act is not None else y
            return conv
        if op == "Conv2DBackpropInput":
            sizes = [int(v) for v in self._const_np(inputs[0]).reshape(-1)]
            weight = self._buffer(inputs[1] + "#w", array=ops.transposed_filter(self._const_np(inputs[1])))
            return lambda x: ops.conv2d_backprop_input_tf(x, getattr(self, weight), sizes[1:3], strides, padding)
        if op in ("AvgPool", "MaxPool"):
            ksize = ops.hw_attr(node, "ksize")
            pool = ops.avg_pool_tf if op == "AvgPool" else ops.max_pool_tf
            return lambda x: pool(x, ksize, strides, padding)
        if op in ("Pad", "PadV2"):
            return self._pad_step(node, inputs)
        size = [int(v) for v in self._const_np(inputs[1]).reshape(-1)]
        align, half = ops.attr_bool(node, "align_corners"), ops.attr_bool(node, "half_pixel_centers")
        return lambda x: ops.resize_bilinear_tf(x, size, align, half)

    def _pad_step(self, node: dict, inputs: List[str]) -> Callable[..., torch.Tensor]:
        """Pad / PadV2 of an image: NHWC paddings [[n], [h], [w], [c]] as F.pad's (w, h, c) on NCHW."""
        pads = self._const_np(inputs[1]).astype(np.int64)
        if pads.shape != (4, 2) or pads[0].any():
            raise WeightsError("TFJS graph %s: %s pads %s; only the height, width and channels of an image are padded "
                               "here" % (self.graph.json_path, node["name"], pads.tolist()))
        value = float(self._const_np(inputs[2])) if node["op"] == "PadV2" and len(inputs) > 2 else 0.0
        order = [int(v) for v in (pads[2, 0], pads[2, 1], pads[1, 0], pads[1, 1], pads[3, 0], pads[3, 1])]
        return lambda x: torch.nn.functional.pad(x, order, value=value)

    def _shape_step(self, node: dict, inputs: List[str]) -> Callable[..., Any]:
        op = node["op"]
        if op == "Reshape":
            shape = [int(v) for v in self._const_np(inputs[1]).reshape(-1)]
            return lambda t: t.reshape(shape)
        if op == "ExpandDims":
            axis = int(self._const_np(inputs[1]))
            return lambda t: t.unsqueeze(axis)
        if op == "Squeeze":
            dims = ops.attr_ints(node, "squeeze_dims")
            return lambda t: t.squeeze(dims[0]) if len(dims) == 1 else t.reshape(
                [d for i, d in enumerate(t.shape) if i not in [a % t.dim() for a in dims]])
        if op == "Unpack":
            axis = ops.attr_int(node, "axis")
            return lambda t: tuple(torch.unbind(t, axis))
        if op == "Pack":
            axis = ops.attr_int(node, "axis")
            return lambda *ts: torch.stack([t.reshape(ts[0].shape) if t.dim() != ts[0].dim() else t for t in ts],
                                           axis)
        if op == "ArgMax":
            axis = int(self._const_np(inputs[1]))
            return lambda t: torch.argmax(t, axis)
        if op == "GatherNd":
            return ops.gather_nd
        raise WeightsError("TFJS graph %s: op %s (node %s) is not supported by this reader"
                           % (self.graph.json_path, op, node["name"]))

    # --- run ---------------------------------------------------------------------------------------------

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        env = {self.input_name: x}  # type: Dict[str, Any]

        def arg(spec: Any) -> torch.Tensor:
            if spec[0] == "c":
                return getattr(self, spec[1])
            base, index = _ref(spec[1])
            value = env[base]
            if isinstance(value, tuple):
                value = value[index]
            if spec[2] == "nchw":
                return to_nchw(value)
            if spec[2] == "nhwc":
                return to_nhwc(value)
            return value

        for name, fn, args in self._steps:
            env[name] = fn(*[arg(a) for a in args])
        outputs = []
        for output in self.output_names:
            base, index = _ref(output)
            value = env[base][index] if isinstance(env[base], tuple) else env[base]
            if self._nchw.get(base, False) and base not in self.nchw_outputs:
                value = to_nhwc(value)
            outputs.append(value)
        return tuple(outputs)
