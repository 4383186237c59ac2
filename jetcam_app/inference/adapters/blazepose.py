"""BlazePose GHUM full (MediaPipe; 33 body landmarks, of which COCO's 17 are reported) from its TFJS graph.

The graph is replayed node for node (tfjs_module.py) from its input to two of its heads: the landmarks (39 x
(x, y, z, visibility, presence) in input pixels; the last 6 are auxiliary) and the pose flag (a person is there).
MediaPipe runs it on a crop its detector found; here, as Human does without one, on the whole frame letterboxed
to a square, so it suits one person filling much of the frame. Its person mask and 3-D world landmarks are left
out of the core (the segmentation head would double its output).
"""

from typing import Tuple

import torch
import torch.nn as nn

from ...errors import WeightsError
from .movenet import MoveNetAdapter
from .npm_package import NPM_PACKAGE
from .tfjs_adapter import STD_01

LANDMARKS = "Identity_2"  # ld_3d, (B, 195)
POSE_FLAG = "Identity_3"  # output_poseflag, (B, 1), after its sigmoid
GRAPH_INPUT = "input_1"
VALUES = 5  # x, y, z, visibility, presence per landmark
# BlazePose's topology -> COCO's order: nose, left eye (not inner or outer), right eye, ears, shoulders, elbows,
# wrists, hips, knees, ankles
TO_COCO = (0, 2, 5, 7, 8, 11, 12, 13, 14, 15, 16, 23, 24, 25, 26, 27, 28)


class BlazePoseCore(nn.Module):
    """NCHW float RGB 0..1 (B, 3, 256, 256) -> landmarks (B, 195) in input pixels, pose flag (B, 1)."""

    def __init__(self, json_path: str):
        super().__init__()
        from .tfjs_graph import TfjsGraph
        from .tfjs_module import TfjsModule

        graph = TfjsGraph(json_path, fetch_hint="python -m jetcam_app.assets pose")
        missing = [n for n in (GRAPH_INPUT, LANDMARKS, POSE_FLAG) if n not in graph.nodes]
        if missing:
            raise WeightsError("%s has no %s; is it blazepose-full.json from %s?"
                               % (json_path, missing[0], NPM_PACKAGE))
        self.body = TfjsModule(graph, GRAPH_INPUT, [LANDMARKS, POSE_FLAG], input_nchw=True)

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        landmarks, flag = self.body(x)
        return landmarks, flag


class BlazePoseAdapter(MoveNetAdapter):
    """BlazePose full: COCO's 17 of its landmarks, each scored sigmoid(visibility) x the pose flag (so a frame
    without a person scores every joint low), mapped back through the letterbox as MoveNet's are."""

    name = "blazepose"
    graph_name = "blazepose"
    core_class = BlazePoseCore
    weights_label = "BlazePose GHUM full"
    input_size = (256, 256)
    output_names = ("landmarks", "pose_flag")
    std_255 = STD_01

    def movenet_layout(self, outputs: Tuple[torch.Tensor, ...]) -> torch.Tensor:
        """The first frame's COCO joints as MoveNet's (1, 17, 3) rows: (y, x) 0..1 of the input, score."""
        landmarks = outputs[0][0].float().reshape(-1, VALUES)[list(TO_COCO)]
        flag = outputs[1][0].float().reshape(())
        h, w = self.input_size
        score = torch.sigmoid(landmarks[:, 3]) * flag
        return torch.stack((landmarks[:, 1] / h, landmarks[:, 0] / w, score), -1)[None]
