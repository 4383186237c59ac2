"""The TFJS reader's TensorFlow ops, each against a formula of its own on random tensors: TF's SAME padding (stride 1
and 2, asymmetric), depthwise filters with a multiplier, fused bias + activation, Conv2DBackpropInput as the gradient
of the conv, GatherNd, half-pixel bilinear resizing, floor division; and a tiny graph through TfjsModule's layouts."""

import base64
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from jetcam_app.errors import WeightsError
from jetcam_app.inference.adapters import tfjs_ops as ops
from jetcam_app.inference.adapters.tfjs_graph import TfjsGraph
from jetcam_app.inference.adapters.tfjs_module import TfjsModule


def rand(*shape, seed=0):
    return torch.from_numpy(np.random.RandomState(seed).uniform(-1, 1, shape).astype(np.float32))


# TF's rule worked by hand: out = ceil(size / stride), total = (out - 1) * stride + kernel - size, the odd one after
@pytest.mark.parametrize("size, kernel, stride, dilation, pads", [
    (4, 3, 2, 1, (0, 1)), (5, 3, 2, 1, (1, 1)), (8, 5, 2, 1, (1, 2)), (7, 3, 1, 1, (1, 1)), (3, 1, 1, 1, (0, 0)),
    (2, 3, 2, 1, (0, 1)), (6, 3, 1, 2, (2, 2)), (256, 2, 2, 1, (0, 0)),
])
def test_same_pads_match_tf_rule(size, kernel, stride, dilation, pads):
    assert ops.same_pads(size, kernel, stride, dilation) == pads


def conv_direct(x, w_hwio, stride, padding, dilation=1):
    """TF's Conv2D written out: out[n, o, i, j] = sum x[n, c, i*s + a*d - top, j*s + b*d - left] * w[a, b, c, o]."""
    x, w = x.double().numpy(), w_hwio.double().numpy()
    n, c, h, wd = x.shape
    kh, kw, _, o = w.shape
    if padding == "SAME":
        oh, ow = -(-h // stride), -(-wd // stride)
        top = max((oh - 1) * stride + (kh - 1) * dilation + 1 - h, 0) // 2
        left = max((ow - 1) * stride + (kw - 1) * dilation + 1 - wd, 0) // 2
    else:
        oh, ow = (h - (kh - 1) * dilation - 1) // stride + 1, (wd - (kw - 1) * dilation - 1) // stride + 1
        top = left = 0
    out = np.zeros((n, o, oh, ow))
    for i in range(oh):
        for j in range(ow):
            for a in range(kh):
                for b in range(kw):
                    y, xx = i * stride + a * dilation - top, j * stride + b * dilation - left
                    if 0 <= y < h and 0 <= xx < wd:
                        out[:, :, i, j] += x[:, :, y, xx] @ w[a, b]
    return torch.from_numpy(out).float()


@pytest.mark.parametrize("hw, kernel, stride, dilation, padding", [
    ((8, 8), 3, 1, 1, "SAME"), ((8, 8), 3, 2, 1, "SAME"), ((7, 9), 3, 2, 1, "SAME"), ((8, 6), 5, 2, 1, "SAME"),
    ((9, 9), 3, 1, 2, "SAME"), ((8, 8), 1, 1, 1, "SAME"), ((9, 8), 3, 2, 1, "VALID"),
])
def test_conv2d_same_and_valid_match_direct_sum(hw, kernel, stride, dilation, padding):
    x, w = rand(2, 3, *hw), rand(kernel, kernel, 3, 4, seed=1)
    got = ops.conv2d_tf(x, torch.from_numpy(ops.conv_filter(w.numpy())), None, (stride, stride), padding,
                        (dilation, dilation))
    want = conv_direct(x, w, stride, padding, dilation)
    assert got.shape == want.shape
    assert torch.allclose(got, want, atol=1e-5)


@pytest.mark.parametrize("stride, multiplier", [(1, 1), (2, 1), (2, 2)])
def test_depthwise_filter_layout_per_channel(stride, multiplier):
    """TF's output channel c*M + m is input channel c convolved with filter [:, :, c, m]."""
    channels = 3
    x, w = rand(1, channels, 8, 8), rand(3, 3, channels, multiplier, seed=2)
    got = ops.conv2d_tf(x, torch.from_numpy(ops.depthwise_filter(w.numpy())), None, (stride, stride), "SAME",
                        groups=channels)
    for c in range(channels):
        for m in range(multiplier):
            want = conv_direct(x[:, c:c + 1], w[:, :, c:c + 1, m:m + 1], stride, "SAME")
            assert torch.allclose(got[:, c * multiplier + m:c * multiplier + m + 1], want, atol=1e-5)


def fused_node(fused, alpha=None):
    node = {"name": "n", "attr": {"fused_ops": {"list": {"s": [base64.b64encode(f.encode()).decode() for f in fused]}}}}
    if alpha is not None:
        node["attr"]["leakyrelu_alpha"] = {"f": alpha}
    return node


@pytest.mark.parametrize("fused, formula", [
    (["BiasAdd"], lambda t: t),
    (["BiasAdd", "Relu"], lambda t: np.maximum(t, 0)),
    (["BiasAdd", "Relu6"], lambda t: np.minimum(np.maximum(t, 0), 6)),
    (["BiasAdd", "LeakyRelu"], lambda t: np.where(t > 0, t, 0.1 * t)),
])
def test_fused_bias_and_activation(fused, formula):
    x, w, bias = rand(1, 4, 6, 6) * 4, rand(3, 3, 4, 5, seed=3) * 4, rand(5, seed=4) * 3
    act = ops.fused_activation(fused_node(fused, 0.1 if "LeakyRelu" in fused else None))
    y = ops.conv2d_tf(x, torch.from_numpy(ops.conv_filter(w.numpy())), bias, (1, 1), "SAME")
    got = act(y) if act is not None else y
    want = formula(conv_direct(x, w, 1, "SAME").numpy() + bias.numpy()[None, :, None, None])
    if "Relu6" in fused:
        assert (want == 6).any() and (want == 0).any()  # both clamps are exercised
    assert np.allclose(got.numpy(), want, atol=1e-4)


def test_unknown_fused_ops_are_refused():
    with pytest.raises(WeightsError, match="FusedBatchNorm"):
        ops.fused_activation(fused_node(["BiasAdd", "FusedBatchNorm"]))
    with pytest.raises(WeightsError, match="Prelu"):
        ops.fused_activation(fused_node(["BiasAdd", "Prelu"]))


@pytest.mark.parametrize("out_hw, kernel, stride, padding", [
    ((8, 8), 2, 2, "SAME"), ((7, 7), 3, 2, "SAME"), ((8, 8), 3, 2, "SAME"), ((9, 10), 4, 2, "SAME"),
    ((6, 6), 3, 1, "SAME"), ((9, 9), 3, 2, "VALID"), ((10, 10), 3, 2, "VALID"),
])
def test_conv2d_backprop_input_is_the_conv_gradient(out_hw, kernel, stride, padding):
    """Conv2DBackpropInput(sizes, filter, g) is d<conv(x, filter), g>/dx: got here by autograd of the direct conv."""
    w_hwio = rand(kernel, kernel, 2, 5, seed=5)  # the forward conv: 2 channels in, 5 out
    x = torch.zeros(1, 2, *out_hw, requires_grad=True)
    forward = ops.conv2d_tf(x, torch.from_numpy(ops.conv_filter(w_hwio.numpy())), None, (stride, stride), padding)
    g = rand(*forward.shape, seed=6)
    (forward * g).sum().backward()
    got = ops.conv2d_backprop_input_tf(g, torch.from_numpy(ops.transposed_filter(w_hwio.numpy())), out_hw,
                                       (stride, stride), padding)
    assert got.shape == x.grad.shape
    assert torch.allclose(got, x.grad, atol=1e-5)


def test_gather_nd_matches_indexing():
    params = rand(2, 5, 4, 3)
    indices = torch.tensor([[[1, 4, 0], [0, 2, 3]], [[1, 1, 1], [0, 0, 0]]])
    got = ops.gather_nd(params, indices)
    want = torch.stack([torch.stack([params[tuple(i)] for i in row]) for row in indices.tolist()])
    assert got.shape == (2, 2, 3) and torch.equal(got, want)
    assert torch.equal(ops.gather_nd(params, torch.tensor([[1, 2, 3, 0]])), params[1, 2, 3, 0].view(1))


def bilinear_direct(x, out_h, out_w):
    """Half-pixel bilinear: output i samples the input at (i + 0.5) * in / out - 0.5, clamped at the edges."""
    x = x.double().numpy()
    _, _, h, w = x.shape

    def taps(o, size_in, size_out):
        src = max((o + 0.5) * size_in / size_out - 0.5, 0.0)
        lo = min(int(np.floor(src)), size_in - 1)
        return lo, min(lo + 1, size_in - 1), src - lo

    out = np.zeros(x.shape[:2] + (out_h, out_w))
    for i in range(out_h):
        y0, y1, fy = taps(i, h, out_h)
        for j in range(out_w):
            x0, x1, fx = taps(j, w, out_w)
            top = x[:, :, y0, x0] * (1 - fx) + x[:, :, y0, x1] * fx
            bottom = x[:, :, y1, x0] * (1 - fx) + x[:, :, y1, x1] * fx
            out[:, :, i, j] = top * (1 - fy) + bottom * fy
    return torch.from_numpy(out).float()


@pytest.mark.parametrize("out_hw", [(12, 12), (8, 16), (3, 5)])
def test_resize_bilinear_half_pixel_centres(out_hw):
    x = rand(1, 2, 6, 8)
    assert torch.allclose(ops.resize_bilinear_tf(x, out_hw, False, True), bilinear_direct(x, *out_hw), atol=1e-5)
    with pytest.raises(WeightsError, match="half_pixel_centers"):
        ops.resize_bilinear_tf(x, out_hw, False, False)


def test_floor_div_rounds_down_like_tf():
    a, b = torch.tensor([7, -7, 2303, 0]), torch.tensor(48)
    assert ops.floor_div(a, b).tolist() == np.floor_divide(a.numpy(), 48).tolist()
    assert ops.floor_div(torch.tensor([-7.0]), torch.tensor(2.0)).tolist() == [-4.0]


def test_avg_and_max_pool():
    x = rand(1, 3, 8, 8)
    assert torch.allclose(ops.avg_pool_tf(x, (8, 8), (8, 8), "VALID")[..., 0, 0], x.mean((2, 3)))
    pooled = ops.max_pool_tf(x, (3, 3), (2, 2), "SAME")  # pads 0 before, 1 after, with -inf
    assert pooled.shape == (1, 3, 4, 4) and torch.equal(pooled[..., 0, 0], x[..., :3, :3].amax((2, 3)))
    assert torch.equal(pooled[..., 3, 3], x[..., 6:, 6:].amax((2, 3)))  # the padded corner: two rows and columns


def tiny_graph(tmp_path):
    """NHWC input -> depthwise SAME stride 2 -> fused 1x1 conv (+bias, Relu6) -> Mul by an [h, w, 1] constant ->
    Reshape -> ArgMax: the layout choices (NCHW inside, constants permuted, NHWC for shape ops) on one path."""
    rng = np.random.RandomState(7)
    consts = {"dw": rng.uniform(-1, 1, (3, 3, 2, 1)), "pw": rng.uniform(-1, 1, (1, 1, 2, 3)), "b": rng.uniform(-1, 1, 3),
              "m": rng.uniform(0, 1, (3, 3, 1)), "shape": np.array([1, 27], np.int32), "axis": np.array(1, np.int32)}

    def s(v):
        return {"s": base64.b64encode(v.encode()).decode()}
    ints = lambda *v: {"list": {"i": [str(i) for i in v]}}  # noqa: E731
    nodes = [{"name": "x", "op": "Placeholder"},
             {"name": "dwc", "op": "DepthwiseConv2dNative", "input": ["x", "dw"],
              "attr": {"padding": s("SAME"), "strides": ints(1, 2, 2, 1)}},
             {"name": "pwc", "op": "_FusedConv2D", "input": ["dwc", "pw", "b"],
              "attr": {"padding": s("VALID"), "strides": ints(1, 1, 1, 1),
                       "fused_ops": {"list": {"s": [s("BiasAdd")["s"], s("Relu6")["s"]]}}}},
             {"name": "mul", "op": "Mul", "input": ["pwc", "m"]},
             {"name": "flat", "op": "Reshape", "input": ["mul", "shape"]},
             {"name": "best", "op": "ArgMax", "input": ["flat", "axis"]}]
    return write_graph(tmp_path, nodes, consts), consts


def write_graph(tmp_path, nodes, consts):
    """A TFJS model.json + weights.bin with these nodes and constants (float32 / int32)."""
    nodes = list(nodes)
    weights, blobs = [], []
    for name, value in consts.items():
        dtype = "int32" if value.dtype == np.int32 else "float32"
        array = value.astype(dtype)
        nodes.append({"name": name, "op": "Const"})
        weights.append({"name": name, "shape": list(array.shape), "dtype": dtype})
        blobs.append(array.astype("<" + array.dtype.str[1:]).tobytes())
    (tmp_path / "w.bin").write_bytes(b"".join(blobs))
    (tmp_path / "m.json").write_text(json.dumps({"modelTopology": {"node": nodes},
                                                 "weightsManifest": [{"paths": ["w.bin"], "weights": weights}]}))
    return TfjsGraph(str(tmp_path / "m.json"))


def test_tiny_graph_layouts_against_nhwc_formula(tmp_path):
    graph, c = tiny_graph(tmp_path)
    x = rand(1, 6, 6, 2)  # NHWC
    module = TfjsModule(graph, "x", ["mul", "flat", "best"])
    mul, flat, best = module(x)
    # the same in NHWC numpy: depthwise via the direct conv per channel, then 1x1 conv, bias, clamp, times m
    nchw = x.permute(0, 3, 1, 2)
    dw = torch.cat([conv_direct(nchw[:, i:i + 1], torch.from_numpy(c["dw"][:, :, i:i + 1].astype(np.float32)), 2,
                                "SAME") for i in range(2)], 1)
    pw = np.einsum("nchw,co->nhwo", dw.numpy(), c["pw"][0, 0]) + c["b"]
    want = np.clip(pw, 0, 6) * c["m"][None]
    assert mul.shape == (1, 3, 3, 3) and np.allclose(mul.numpy(), want, atol=1e-5)
    assert np.allclose(flat.numpy(), want.reshape(1, 27), atol=1e-5)
    assert best.tolist() == [int(np.argmax(want.reshape(-1)))]
    assert not any(name.startswith("x") for name, _ in module.named_buffers())


@pytest.mark.parametrize("op, value", [("Pad", 0.0), ("PadV2", -1.5)])
def test_pad_matches_numpy_on_nhwc(tmp_path, op, value):
    """Pad / PadV2 (BlazePose's zero_padding2d): TF's NHWC paddings on the NCHW tensors inside."""
    pads = np.array([[0, 0], [1, 2], [0, 3], [0, 0]], np.int32)
    consts = {"p": pads, "v": np.array(value, np.float32)}
    nodes = [{"name": "x", "op": "Placeholder"},
             {"name": "pad", "op": op, "input": ["x", "p"] + (["v"] if op == "PadV2" else [])},
             {"name": "relu", "op": "Relu6", "input": ["pad"]}]
    module = TfjsModule(write_graph(tmp_path, nodes, consts), "x", ["pad"])
    x = rand(2, 4, 5, 3)
    (got,) = module(x)
    assert np.array_equal(got.numpy(), np.pad(x.numpy(), pads, constant_values=value))
    batch_pad = dict(consts, p=np.array([[1, 0], [0, 0], [0, 0], [0, 0]], np.int32))
    with pytest.raises(WeightsError, match="only the height, width and channels"):
        TfjsModule(write_graph(tmp_path, nodes, batch_pad), "x", ["pad"])
