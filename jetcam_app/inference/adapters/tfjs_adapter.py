"""The base of the adapters whose core replays a TFJS graph of the human-models package (MoveNet, Selfie,
BlazePose): the graph's .json found, the core built from it, the weights named, the frame prepared."""

from typing import Callable, Optional, Tuple

import numpy as np
import torch
import torch.nn as nn

from ...config import ROOT
from ...errors import WeightsError
from .base import ModelAdapter
from .npm_package import NPM_PACKAGE
from .preprocess import prepare, prepare_tensor

ZERO_MEAN = (0.0, 0.0, 0.0)
UNIT_STD = (1.0, 1.0, 1.0)  # a graph taking RGB 0..255 (MoveNet)
STD_01 = (255.0, 255.0, 255.0)  # a graph taking RGB 0..1 (Selfie, BlazePose)


class TfjsGraphAdapter(ModelAdapter):
    """A model whose graph and weights come in one .json (+ .bin) of human_assets.GRAPHS: no random-weight variant."""

    graph_name = ""  # its key in human_assets.GRAPHS
    core_class = None  # type: Optional[Callable[[str], nn.Module]]  # the core, built from the graph's .json path
    weights_label = ""  # describe_weights() without --weights: "<label> (npm <package>)"
    input_names = ("image",)
    weights_available_offline = True
    letterbox = False
    mean_255 = ZERO_MEAN  # type: Tuple[float, float, float]
    std_255 = UNIT_STD  # type: Tuple[float, float, float]

    def weights_json(self) -> str:
        from .human_assets import graph_json

        return graph_json(self.graph_name, self.config.weights, ROOT + "/models")

    def build_network(self) -> nn.Module:
        if self.random_weights:
            raise WeightsError("%s has no random-weight variant: its graph and weights come in one file; "
                               "leave out --random-weights" % self.name)
        return self.core_class(self.weights_json()).eval()

    def describe_weights(self) -> str:
        return self.config.weights or "%s (npm %s)" % (self.weights_label, NPM_PACKAGE)

    # pad_value 0: a letterbox pads with black, as Human feeds these graphs
    def preprocess(self, image_bgr: np.ndarray, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
        return prepare(image_bgr, self.input_size, device, dtype, self.mean_255, self.std_255, rgb=True,
                       letterbox=self.letterbox, pad_value=0.0)

    def prepare_tensor(self, image_bgr: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        return prepare_tensor(image_bgr, self.input_size, dtype, self.mean_255, self.std_255, rgb=True,
                              letterbox=self.letterbox, pad_value=0.0)
