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

from ...dense_results import COCO_KEYPOINTS, Poses
from ...errors import WeightsError
from .npm_package import NPM_PACKAGE
from .preprocess import scale_boxes_back
from .tfjs_adapter import TfjsGraphAdapter

_P = "StatefulPartitionedCall/"
HEADS = (_P + "Sigmoid", _P + "truediv_2", _P + "kpt_regress_0/conv2d_6/BiasAdd", _P + "kpt_offset_0/conv2d_7/BiasAdd")
CORE_INPUT = _P + "stack"  # after Cast, unstack, ExpandDims, Squeeze: no arithmetic (checked at build)
PRELUDE_OPS = ("Placeholder", "Cast", "Unpack", "ExpandDims", "Squeeze")
GRAPH_OUTPUT = "Identity"
# the exported-ONNX cache hashes the module's repr and tensors, not forward()'s code: a change to the decoding bumps
# this, so no core exported before it is reused
DECODING_VERSION = 2


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
                               % (json_path, missing[0], NPM_PACKAGE))
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


class MoveNetAdapter(TfjsGraphAdapter):
    """MoveNet Lightning (single person). Frames are letterboxed to a square (what the model was trained on and
    Human feeds it); keypoints are mapped back through the same scale and offsets."""

    name = "movenet"
    task = "pose"
    graph_name = "movenet"
    core_class = MoveNetCore
    weights_label = "MoveNet Lightning"
    input_size = (192, 192)
    output_names = ("keypoints",)
    letterbox = True

    def movenet_layout(self, outputs: Tuple[torch.Tensor, ...]) -> torch.Tensor:
        """The first frame's (1, 17, 3) rows: (y, x) 0..1 of the input, score (the core's own output here)."""
        return outputs[0][0]

    def keypoints_in_frame(self, raw: torch.Tensor, image_hw: Tuple[int, int]) -> torch.Tensor:
        """(P, 17, 3) (y, x, score) 0..1 of the input -> (P, 17, 3) (x, y, score) in frame pixels."""
        raw = raw.float()
        xy = torch.stack((raw[..., 1], raw[..., 0]), -1)
        boxes = scale_boxes_back(torch.cat((xy, xy), -1).reshape(-1, 4), image_hw, self.input_size,
                                 letterbox=self.letterbox, normalized=True)
        return torch.cat((boxes[:, :2].reshape(xy.shape), raw[..., 2:3]), -1)

    def postprocess(self, outputs: Tuple[torch.Tensor, ...], image_hw: Tuple[int, int]) -> Poses:
        keypoints = self.keypoints_in_frame(self.movenet_layout(outputs), image_hw)
        # exact_threshold: --score-threshold as given (tracking lowers config.score_threshold for its boxes)
        return Poses(keypoints.cpu().numpy().astype(np.float32), COCO_KEYPOINTS, self.exact_threshold)

    def static_postprocess(self, outputs: Tuple[torch.Tensor, ...], image_hw: Tuple[int, int]) -> torch.Tensor:
        return self.keypoints_in_frame(self.movenet_layout(outputs), image_hw)

    def unpack(self, packed: np.ndarray) -> Optional[Poses]:
        return Poses(packed.astype(np.float32), COCO_KEYPOINTS, self.exact_threshold)


class MoveNetThunderAdapter(MoveNetAdapter):
    """MoveNet Thunder: the larger, more accurate variant (256 x 256 input)."""

    name = "movenet_thunder"
    graph_name = "movenet_thunder"
    weights_label = "MoveNet Thunder"
    input_size = (256, 256)

