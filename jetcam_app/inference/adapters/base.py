"""The ModelAdapter interface: an exportable network core plus pre- and post-processing."""

from typing import List, Optional, Sequence, Tuple

import numpy as np
import torch

from ...config import ModelConfig
from ...types import Result
from .preprocess import scale_boxes_back


class ModelAdapter:
    """One model: `build_network` gives the core (fixed input shape, tensors out) that every backend
    runs; preprocessing and postprocessing (anchor decoding, NMS, softmax) stay in torch."""

    name = "base"
    task = "detection"  # or "classification"
    input_size = (224, 224)  # (height, width) of the core's input
    input_names = ("input",)  # type: Sequence[str]
    output_names = ("output",)  # type: Sequence[str]
    weights_available_offline = False
    batch_limit = 0  # > 0: the network was built for exactly this batch (a user's fixed-batch ONNX); 0 = any
    onnx_file = None  # type: Optional[str]  # the core is this user's ONNX file: no PyTorch engine runs it

    def __init__(self, config: ModelConfig):
        self.config = config
        self.class_names = []  # type: List[str]
        self.random_weights = config.random_weights
        # The device path's result must equal postprocess()'s for the boxes above this score; below it (the boxes a
        # tracker's second match takes, under a lowered config.score_threshold) it may hold only the best candidates.
        self.exact_threshold = config.score_threshold

    def build_network(self) -> torch.nn.Module:
        """The core in eval mode with its weights (config.weights, the default weights, or random)."""
        raise NotImplementedError

    def example_input(self, device: torch.device = torch.device("cpu"), dtype: torch.dtype = torch.float32) -> torch.Tensor:
        h, w = self.input_size
        return torch.zeros((1, 3, h, w), device=device, dtype=dtype)

    def preprocess(self, image_bgr: np.ndarray, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
        """A 1x3xHxW batch on `device` in `dtype` from an HxWx3 uint8 BGR frame."""
        raise NotImplementedError

    def postprocess(self, outputs: Tuple[torch.Tensor, ...], image_hw: Tuple[int, int]) -> Result:
        """Detections in pixels of the original frame, or the top-k classes."""
        raise NotImplementedError

    # The fused CUDA-graph path (fused_stages.py): the three hooks below, all static shapes, no host sync. A model
    # without them raises NotImplementedError at capture, and the fused stages fall back to the eager ones.

    def prepare_tensor(self, image_bgr: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """preprocess() for an HxWx3 uint8 frame already on the device."""
        raise NotImplementedError

    def static_postprocess(self, outputs: Tuple[torch.Tensor, ...], image_hw: Tuple[int, int]) -> torch.Tensor:
        """postprocess() on the device with static shapes: a small packed float32 tensor for unpack()."""
        raise NotImplementedError

    def unpack(self, packed: np.ndarray) -> Optional[Result]:
        """The result from static_postprocess()'s tensor on the host, or None when only postprocess() is exact."""
        raise NotImplementedError

    # Optional, for the fused batch graphs (graph_parts.py): a model whose prepare_tensor() also takes a
    # BxHxWx3 batch and that has static_postprocess_batch(outputs, image_hw) -> (B, ...) packed rows (row i equal to
    # static_postprocess() of frame i) sets this; the graph then runs each step once for the batch, not per frame.
    batched_static = False

    def describe_weights(self) -> str:
        return "RANDOM WEIGHTS" if self.random_weights else (self.config.weights or "default weights")

    # A server that takes the resized frame (Triton's uint8 input, triton/served.py): the two hooks below.

    def input_geometry(self) -> Optional[Tuple[bool, float]]:
        """(letterbox, pad value in 0-255) where preprocess() only resizes the frame to input_size (stretched, or
        letterboxed on the pad value) and normalises it, so prepare_tensor() of that uint8 frame is the same tensor;
        None where it does more (a classifier's centre crop)."""
        return None

    def boxes_to_frame(self, boxes: torch.Tensor, image_hw: Tuple[int, int]) -> torch.Tensor:
        """Boxes (N, 4) xyxy in input pixels, as static_postprocess(outputs, input_size) gives them, in pixels of a
        frame of image_hw, as postprocess() maps them."""
        geometry = self.input_geometry()
        return scale_boxes_back(boxes, image_hw, self.input_size, letterbox=bool(geometry and geometry[0]))


def build_core(adapter: ModelAdapter, seed: int = 0) -> torch.nn.Module:
    """adapter.build_network() with a fixed seed, so random weights are the same in every run (replay stays
    deterministic and two backends compare the same network), without disturbing the caller's RNG."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        core = adapter.build_network()
    # The exporters name the ONNX inputs and outputs after these.
    core.input_names = tuple(adapter.input_names)
    core.output_names = tuple(adapter.output_names)
    return core


def create_adapter(config: ModelConfig) -> ModelAdapter:
    """The registered model of that name, or a user's ONNX file (a name ending in .onnx: registry.py)."""
    from ...registry import MODELS

    return MODELS.get(config.name)(config)


def find_weights(path: Optional[str], models_dir: str) -> Optional[str]:
    """`path` as given, or looked up in models/; None when it is not set."""
    import os

    from ...errors import WeightsError

    if not path:
        return None
    for candidate in (path, os.path.join(models_dir, path), os.path.join(models_dir, os.path.basename(path))):
        if os.path.isfile(candidate):
            return candidate
    raise WeightsError("weights file not found: %s (looked in the working folder and %s/); "
                       "put the file there or pass --weights PATH" % (path, models_dir))
