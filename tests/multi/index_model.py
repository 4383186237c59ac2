"""A real (tiny) model for the multi-source tests: it reads each frame's index from its pixels, so a result
that comes back paired with the wrong frame, or a frame lost or repeated, shows in predictions.jsonl."""
import numpy as np
import torch

from jetcam_app.config import ModelConfig
from jetcam_app.inference.adapters.base import ModelAdapter
from jetcam_app.sources.synthetic import CELL_PX, INDEX_BITS
from jetcam_app.types import Classification


class IndexAdapter(ModelAdapter):
    """preprocess: the index strip's bits (as synthetic.decode_index reads them); the network: their weighted sum."""

    name = "index"
    task = "classification"
    input_size = (1, INDEX_BITS)
    weights_available_offline = True

    def __init__(self, config=None):
        super().__init__(config or ModelConfig(name="index", random_weights=False))

    def example_input(self, device=torch.device("cpu"), dtype=torch.float32):
        return torch.zeros((1, INDEX_BITS), device=device, dtype=dtype)

    def build_network(self):
        net = torch.nn.Linear(INDEX_BITS, 1, bias=False)
        with torch.no_grad():
            net.weight.copy_(torch.tensor([[float(1 << b) for b in range(INDEX_BITS)]]))
        return net.eval()

    def preprocess(self, image_bgr, device, dtype):
        half = CELL_PX // 2
        strip = image_bgr[half - 2:half + 2, :INDEX_BITS * CELL_PX].reshape(4, INDEX_BITS, CELL_PX, 3)
        bits = strip[:, :, half - 2:half + 2].mean(axis=(0, 2, 3)) > 127
        return torch.from_numpy(bits.astype(np.float32))[None].to(device, dtype)

    def postprocess(self, outputs, image_hw):
        index = int(round(float(outputs[0][0, 0])))
        return Classification(np.array([index], np.int64), np.array([1.0], np.float32), [])
