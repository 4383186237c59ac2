"""MediaPipe Selfie segmentation (a person-probability map, 256 x 256) from its TFJS graph, and the mask at frame size."""

from typing import Optional, Tuple

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ...dense_results import Mask
from ...errors import WeightsError
from .npm_package import NPM_PACKAGE
from .tfjs_adapter import STD_01, TfjsGraphAdapter

GRAPH_INPUT = "input_1"
GRAPH_OUTPUT = "activation_10"
MASK_THRESHOLD = 0.5


class SelfieCore(nn.Module):
    """NCHW float RGB 0..1 (B, 3, 256, 256) -> (B, 1, 256, 256) person probability: the graph node for node."""

    def __init__(self, json_path: str):
        super().__init__()
        from .tfjs_graph import TfjsGraph
        from .tfjs_module import TfjsModule

        graph = TfjsGraph(json_path, fetch_hint="python -m jetcam_app.assets pose")
        if GRAPH_INPUT not in graph.nodes or GRAPH_OUTPUT not in graph.nodes:
            raise WeightsError("%s has no %s -> %s; is it selfie.json from %s?"
                               % (json_path, GRAPH_INPUT, GRAPH_OUTPUT, NPM_PACKAGE))
        self.body = TfjsModule(graph, GRAPH_INPUT, [GRAPH_OUTPUT], input_nchw=True, nchw_outputs=[GRAPH_OUTPUT])

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor]:
        return self.body(x)


class SelfieAdapter(TfjsGraphAdapter):
    """Selfie segmentation: the frame stretched to 256 x 256 (as Human feeds it), the probability map resized back
    to the frame (bilinear, on the engine's device) and thresholded at 0.5."""

    name = "selfie"
    task = "segmentation"
    graph_name = "selfie"
    core_class = SelfieCore
    weights_label = "MediaPipe Selfie"
    input_size = (256, 256)
    output_names = ("person",)
    std_255 = STD_01

    @staticmethod
    def mask_in_frame(probability: torch.Tensor, image_hw: Tuple[int, int]) -> torch.Tensor:
        """(1, S, S) probability -> (H, W) bool mask at frame size."""
        full = F.interpolate(probability.float()[None], size=tuple(int(v) for v in image_hw), mode="bilinear",
                             align_corners=False)[0, 0]
        return full >= MASK_THRESHOLD

    def postprocess(self, outputs: Tuple[torch.Tensor, ...], image_hw: Tuple[int, int]) -> Mask:
        probability = outputs[0][0]
        mask = self.mask_in_frame(probability, image_hw)
        return Mask(mask.cpu().numpy(), probability[0].float().cpu().numpy(), MASK_THRESHOLD)

    def static_postprocess(self, outputs: Tuple[torch.Tensor, ...], image_hw: Tuple[int, int]) -> torch.Tensor:
        return self.mask_in_frame(outputs[0][0], image_hw).to(torch.uint8)

    def unpack(self, packed: np.ndarray) -> Optional[Mask]:
        return Mask(packed.astype(bool), None, MASK_THRESHOLD)
