"""The client's side of a served model's wire format (served.py): frames in as the resized uint8 frame (or its JPEG),
results out from the raw outputs (the adapter's postprocess) or from the server's packed detections."""

import logging
from typing import Any, List, Sequence, Tuple

import cv2
import numpy as np
import torch

from ..errors import EngineConnectionError
from ..types import Detections, Result
from .served import WireFormat

log = logging.getLogger(__name__)
JPEG_QUALITY = 90


def resized_frame(image_bgr: np.ndarray, size_hw: Tuple[int, int], letterbox: bool, pad_value: float) -> np.ndarray:
    """The HxWx3 uint8 frame the adapter's CPU preprocessing normalises: resized with OpenCV on uint8 (stretched, or
    letterboxed and centred on pad_value), so the server's prepare_tensor() of it is the same tensor."""
    from ..inference.adapters.preprocess import letterbox_params

    out_h, out_w = size_hw
    h, w = image_bgr.shape[:2]
    if letterbox:
        scale, pad_x, pad_y = letterbox_params((h, w), size_hw)
        inner_h, inner_w = int(round(h * scale)), int(round(w * scale))
    else:
        inner_h, inner_w, pad_x, pad_y = out_h, out_w, 0, 0
    resized = image_bgr
    if (h, w) != (inner_h, inner_w):
        resized = cv2.resize(image_bgr, (inner_w, inner_h), interpolation=cv2.INTER_LINEAR)
    if (inner_h, inner_w) == (out_h, out_w):
        return np.ascontiguousarray(resized)
    canvas = np.full((out_h, out_w, 3), int(round(pad_value)), dtype=np.uint8)
    canvas[pad_y:pad_y + inner_h, pad_x:pad_x + inner_w] = resized
    return canvas


def check_nms(wire: WireFormat, model_config, model: str, url: str) -> None:
    """The served NMS must keep what the app keeps: the same IoU, a score threshold no higher than the app's (the
    app drops the extra boxes; lower-scored boxes never suppress higher ones), at least as many boxes."""
    problems = []
    if abs(wire.iou_threshold - model_config.iou_threshold) > 1e-9:
        problems.append("IoU %g (the app's: %g)" % (wire.iou_threshold, model_config.iou_threshold))
    if wire.score_threshold > model_config.score_threshold + 1e-9:
        problems.append("score threshold %g (the app keeps boxes from %g)" % (wire.score_threshold,
                                                                             model_config.score_threshold))
    if wire.max_detections < model_config.max_detections:
        problems.append("%d boxes a frame (the app keeps %d)" % (wire.max_detections, model_config.max_detections))
    if problems:
        raise EngineConnectionError(
            "Triton model '%s' at %s runs NMS with %s; fix: export it again with run.py export-triton --score-threshold "
            "%g --iou-threshold %g --max-detections %d, or serve --output raw"
            % (model, url, ", ".join(problems), model_config.score_threshold, model_config.iou_threshold,
               model_config.max_detections))


class FrameCodec:
    """Frames -> the served model's input and its outputs -> results, in place of the adapter's preprocess() and
    postprocess() (the eager stages see it through CodecAdapter: Engine.served_adapter)."""

    def __init__(self, adapter, wire: WireFormat, output_device: torch.device, float_dtype: torch.dtype = torch.float32):
        geometry = adapter.input_geometry()
        if geometry is None and wire.input != "float":
            raise EngineConnectionError("the served model takes frames (%s), but %s's preprocessing is not a plain "
                                        "resize; fix: serve an export with --input float" % (wire.input, adapter.name))
        self.adapter = adapter
        self.wire = wire
        self.letterbox, self.pad_value = geometry or (False, 0.0)
        self.output_device = output_device
        self.float_dtype = float_dtype  # --input float (with --output detections): the adapter's tensor, on the host
        self.inexact_frames = 0  # server-side NMS results flagged not provably exact (static_nms.py)

    # -- in ----------------------------------------------------------------------------------------------

    def encode(self, image_bgr: np.ndarray) -> torch.Tensor:
        """A batch of one: the 1xHxWx3 uint8 frame at the input size (the engine JPEG-encodes it for --input jpeg),
        or, for --input float, the adapter's preprocessed tensor on the host."""
        if self.wire.input == "float":
            return self.adapter.preprocess(image_bgr, torch.device("cpu"), self.float_dtype)
        image = resized_frame(image_bgr, tuple(self.adapter.input_size), self.letterbox, self.pad_value)
        return torch.from_numpy(image).unsqueeze(0)

    def example(self) -> torch.Tensor:
        """A batch of one black frame, for the warm-up."""
        if self.wire.input == "float":
            return self.adapter.example_input(dtype=self.float_dtype)
        h, w = self.adapter.input_size
        return torch.zeros((1, h, w, 3), dtype=torch.uint8)

    # -- out ---------------------------------------------------------------------------------------------

    def decode(self, outputs: Sequence[torch.Tensor], image_hw: Tuple[int, int]) -> Result:
        """The first frame's result from the outputs (a batch's slice, as the stages hand them over)."""
        if self.wire.output != "detections":
            return self.adapter.postprocess(tuple(o.to(self.output_device) for o in outputs), image_hw)
        return self.detections(outputs[0][0].cpu().numpy(), image_hw)

    def detections(self, rows: np.ndarray, image_hw: Tuple[int, int]) -> Detections:
        """The server's packed rows (static_nms.pack_detections, boxes in input pixels) as the frame's detections,
        filtered to the app's score threshold and box count."""
        if rows[0, 1] < 0.5:
            # the server's static NMS could not prove its decisions final (more candidates than it considers, or
            # unsettled rounds): the rows are its best answer, as the fused graphs' inexact frames would be
            self.inexact_frames += 1
            if self.inexact_frames == 1:
                log.warning("triton: the server's NMS flagged a frame as not provably exact (more candidates above "
                            "the threshold than its static NMS considers); its rows are used as they are, and such "
                            "frames are counted in summary.json (engine_wire.inexact_frames)")
        kept = rows[1:1 + int(rows[0, 0])]
        config = self.adapter.config
        kept = kept[kept[:, 4] > config.score_threshold][:config.max_detections]
        boxes = self.adapter.boxes_to_frame(torch.from_numpy(np.ascontiguousarray(kept[:, :4])), image_hw)
        return Detections(boxes.numpy().astype(np.float32), kept[:, 4].astype(np.float32),
                          kept[:, 5].astype(np.int64), self.adapter.class_names)


class CodecAdapter:
    """The adapter as the eager stages see it when the engine's model takes frames or gives results itself: its
    preprocess, postprocess and example_input are the codec's; everything else (names, sizes, task) is the adapter's."""

    def __init__(self, adapter, codec: FrameCodec):
        self._adapter = adapter
        self._codec = codec

    def __getattr__(self, name: str) -> Any:  # a proxy: only what it does not override is the adapter's
        return getattr(self._adapter, name)

    def preprocess(self, image_bgr: np.ndarray, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
        return self._codec.encode(image_bgr)

    def prepare_tensor(self, image_bgr: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        raise NotImplementedError("the served model prepares the frame itself")  # frames decoded on a GPU: download

    def example_input(self, device: torch.device = torch.device("cpu"), dtype: torch.dtype = torch.float32):
        return self._codec.example()

    def postprocess(self, outputs: Sequence[torch.Tensor], image_hw: Tuple[int, int]) -> Result:
        return self._codec.decode(outputs, image_hw)


def jpeg_batch(frames: np.ndarray) -> np.ndarray:
    """A BxHxWx3 uint8 batch as the (B, 1) BYTES tensor of --input jpeg (model.py decodes it on the server)."""
    items = []
    for image in frames:
        ok, data = cv2.imencode(".jpg", image, [int(cv2.IMWRITE_JPEG_QUALITY), JPEG_QUALITY])
        if not ok:
            raise RuntimeError("OpenCV could not JPEG-encode a %dx%d frame" % image.shape[:2])
        items.append([data.tobytes()])
    return np.array(items, dtype=object)


def payload_bytes(data: Any) -> int:
    """Tensor bytes of a request's input (numpy or torch; BYTES: each item and its 4-byte length)."""
    if isinstance(data, np.ndarray) and data.dtype == object:
        return sum(len(item) + 4 for item in data.reshape(-1))
    if isinstance(data, torch.Tensor):
        return int(data.element_size() * data.numel())
    return int(data.nbytes)


def outputs_bytes(arrays: List[np.ndarray]) -> int:
    return int(sum(a.nbytes for a in arrays))
