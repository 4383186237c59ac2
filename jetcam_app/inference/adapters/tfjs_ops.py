"""TensorFlow operations in PyTorch, NCHW: TF's SAME padding, (fused) convolutions, depthwise and transposed ones.

Filters arrive in TF's layouts and are converted once, at load: Conv2D HWIO -> OIHW, depthwise HWCM -> (C*M)1HW,
Conv2DBackpropInput HW(out)(in) -> (in)(out)HW. Each function is checked against a direct formula in
tests/inference/test_tfjs_ops.py.
"""

import base64
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F

from ...errors import WeightsError


def attr_str(node: dict, key: str) -> str:
    value = node.get("attr", {}).get(key, {}).get("s", "")
    return base64.b64decode(value).decode("ascii") if value else ""


def attr_strs(node: dict, key: str) -> List[str]:
    return [base64.b64decode(v).decode("ascii") for v in node.get("attr", {}).get(key, {}).get("list", {}).get("s", [])]


def attr_ints(node: dict, key: str) -> List[int]:
    return [int(v) for v in node.get("attr", {}).get(key, {}).get("list", {}).get("i", [])]


def attr_int(node: dict, key: str, default: int = 0) -> int:
    return int(node.get("attr", {}).get(key, {}).get("i", default))


def attr_float(node: dict, key: str, default: float = 0.0) -> float:
    return float(node.get("attr", {}).get(key, {}).get("f", default))


def attr_bool(node: dict, key: str) -> bool:
    return bool(node.get("attr", {}).get(key, {}).get("b", False))


def same_pads(size: int, kernel: int, stride: int, dilation: int = 1) -> Tuple[int, int]:
    """TF's SAME padding of one axis, (before, after): the output has ceil(size / stride) cells and the odd pixel
    of an uneven total goes after (at stride 2 on an even size a 3x3 kernel pads 0 before and 1 after)."""
    out = -(-size // stride)
    total = max((out - 1) * stride + (kernel - 1) * dilation + 1 - size, 0)
    return total // 2, total - total // 2


def hw_attr(node: dict, key: str, default: int = 1) -> Tuple[int, int]:
    """(h, w) of an NHWC four-element attribute (strides, dilations, ksize)."""
    values = attr_ints(node, key)
    return (values[1], values[2]) if len(values) == 4 else (default, default)


def conv_filter(hwio: np.ndarray) -> np.ndarray:
    """Conv2D's HWIO filter as PyTorch's OIHW."""
    return np.ascontiguousarray(hwio.transpose(3, 2, 0, 1), dtype=np.float32)


def depthwise_filter(hwcm: np.ndarray) -> np.ndarray:
    """DepthwiseConv2dNative's HWCM filter as a grouped conv's (C*M, 1, H, W): TF's output channel c*M + m is
    input channel c times multiplier m, which is PyTorch's group c, filter m."""
    h, w, c, m = hwcm.shape
    return np.ascontiguousarray(hwcm.reshape(h, w, c * m).transpose(2, 0, 1)[:, None], dtype=np.float32)


def transposed_filter(hwio: np.ndarray) -> np.ndarray:
    """Conv2DBackpropInput's filter, the HWIO one of the conv it is the gradient of, as conv_transpose2d's
    (in, out, h, w): the forward conv's O (the gradient's channels) first."""
    return np.ascontiguousarray(hwio.transpose(3, 2, 0, 1), dtype=np.float32)


def conv2d_tf(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor], stride_hw: Sequence[int],
              padding: str, dilation_hw: Sequence[int] = (1, 1), groups: int = 1) -> torch.Tensor:
    """Conv2D / DepthwiseConv2dNative (groups = channels) on NCHW with TF's SAME or VALID padding. A symmetric SAME
    pad goes into the conv itself (one ONNX Conv); an asymmetric one is an explicit zero pad before it."""
    pads = (0, 0)
    if padding == "SAME":
        top, bottom = same_pads(int(x.shape[2]), int(weight.shape[2]), stride_hw[0], dilation_hw[0])
        left, right = same_pads(int(x.shape[3]), int(weight.shape[3]), stride_hw[1], dilation_hw[1])
        if top == bottom and left == right:
            pads = (top, left)
        else:
            x = F.pad(x, (left, right, top, bottom))
    elif padding != "VALID":
        raise WeightsError("TFJS convolution padding %r is not supported (SAME and VALID are)" % padding)
    return F.conv2d(x, weight, bias, tuple(stride_hw), pads, tuple(dilation_hw), groups)


def conv2d_backprop_input_tf(x: torch.Tensor, weight: torch.Tensor, output_hw: Sequence[int],
                             stride_hw: Sequence[int], padding: str) -> torch.Tensor:
    """Conv2DBackpropInput (a transposed convolution) on NCHW: the gradient of a Conv2D whose input is `output_hw`
    big. The full transposed output is cropped by the forward conv's SAME pads (before: the top / left ones)."""
    full = F.conv_transpose2d(x, weight, None, tuple(stride_hw))
    crops = []
    for axis, size in enumerate(output_hw):
        kernel, stride = int(weight.shape[2 + axis]), stride_hw[axis]
        before = same_pads(size, kernel, stride)[0] if padding == "SAME" else 0
        if padding not in ("SAME", "VALID"):
            raise WeightsError("TFJS Conv2DBackpropInput padding %r is not supported" % padding)
        crops.append((before, size))
    (top, height), (left, width) = crops
    out = full[:, :, top:top + height, left:left + width]
    short_h, short_w = height - int(out.shape[2]), width - int(out.shape[3])
    if short_h > 0 or short_w > 0:  # the filter's footprint ends before the wanted size: TF's gradient is zero there
        out = F.pad(out, (0, max(short_w, 0), 0, max(short_h, 0)))
    return out


def _leaky(alpha: float) -> Callable[[torch.Tensor], torch.Tensor]:
    return lambda t: F.leaky_relu(t, alpha)


ACTIVATIONS = {
    "Relu": torch.relu,
    "Relu6": lambda t: torch.clamp(t, 0.0, 6.0),
    "Sigmoid": torch.sigmoid,
    "Tanh": torch.tanh,
    "Elu": F.elu,
}  # type: Dict[str, Callable[[torch.Tensor], torch.Tensor]]


def fused_activation(node: dict) -> Optional[Callable[[torch.Tensor], torch.Tensor]]:
    """The activation of a _FusedConv2D / FusedDepthwiseConv2dNative (`fused_ops` = BiasAdd[, activation]);
    None for BiasAdd alone. Anything else (a fused batch norm, Prelu) is refused by name."""
    ops = attr_strs(node, "fused_ops")
    if not ops or ops[0] != "BiasAdd" or len(ops) > 2:
        raise WeightsError("TFJS node %s fuses %s; only BiasAdd followed by one activation is supported"
                           % (node["name"], ops))
    if len(ops) == 1:
        return None
    if ops[1] == "LeakyRelu":
        return _leaky(attr_float(node, "leakyrelu_alpha", 0.2))
    if ops[1] not in ACTIVATIONS:
        raise WeightsError("TFJS node %s fuses the activation %s, which this reader does not map"
                           % (node["name"], ops[1]))
    return ACTIVATIONS[ops[1]]


def avg_pool_tf(x: torch.Tensor, ksize_hw: Sequence[int], stride_hw: Sequence[int], padding: str) -> torch.Tensor:
    if padding != "VALID":
        raise WeightsError("TFJS AvgPool padding %r is not supported (VALID is)" % padding)
    return F.avg_pool2d(x, tuple(ksize_hw), tuple(stride_hw))


def max_pool_tf(x: torch.Tensor, ksize_hw: Sequence[int], stride_hw: Sequence[int], padding: str) -> torch.Tensor:
    if padding == "SAME":  # padded cells never win a max: -inf, as TF ignores them
        top, bottom = same_pads(int(x.shape[2]), ksize_hw[0], stride_hw[0])
        left, right = same_pads(int(x.shape[3]), ksize_hw[1], stride_hw[1])
        x = F.pad(x, (left, right, top, bottom), value=float("-inf"))
    return F.max_pool2d(x, tuple(ksize_hw), tuple(stride_hw))


def resize_bilinear_tf(x: torch.Tensor, size_hw: Sequence[int], align_corners: bool,
                       half_pixel_centers: bool) -> torch.Tensor:
    """ResizeBilinear: half_pixel_centers is PyTorch's align_corners=False; TF's legacy mode (neither flag) maps
    output i to input i * in / out, which PyTorch has no mode for and is refused."""
    if align_corners:
        return F.interpolate(x, size=tuple(int(s) for s in size_hw), mode="bilinear", align_corners=True)
    if not half_pixel_centers:
        raise WeightsError("TFJS ResizeBilinear without half_pixel_centers (TF1's legacy sampling) is not supported")
    return F.interpolate(x, size=tuple(int(s) for s in size_hw), mode="bilinear", align_corners=False)


def gather_nd(params: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
    """GatherNd: indices (..., k) pick slices params[i0, ..., ik-1] (shape indices.shape[:-1] + params.shape[k:]),
    as one flat gather along a merged leading axis (ONNX Gather; TensorRT has no GatherND before 8.0)."""
    k = int(indices.shape[-1])
    lead = [int(d) for d in params.shape[:k]]
    strides = [int(np.prod(lead[i + 1:])) for i in range(k)]
    flat = sum(indices[..., i].long() * strides[i] for i in range(k))
    rest = [int(d) for d in params.shape[k:]]
    picked = params.reshape([int(np.prod(lead))] + rest).index_select(0, flat.reshape(-1))
    return picked.reshape(list(indices.shape[:-1]) + rest)


def floor_div(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    if a.is_floating_point() or (torch.is_tensor(b) and b.is_floating_point()):
        return torch.floor(a / b)
    return torch.div(a, b, rounding_mode="floor")
