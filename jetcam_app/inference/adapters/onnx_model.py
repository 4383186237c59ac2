"""`--model PATH.onnx`: a user's detector or classifier (Ultralytics YOLOv8 / YOLO11, YOLOv5 / YOLOv7, an image
classifier), run on every backend that can run an ONNX file, with its decoding and NMS in torch like NanoDet's."""

import logging
import os
from typing import List, Optional, Sequence, Tuple

import numpy as np
import torch

from ...errors import ConfigError, WeightsError
from ...types import Classification, Detections
from ..engines.onnx_export import OnnxModel, PrebuiltOnnx
from .base import ModelAdapter
from .classification import centre_crop
from .dense_detect import detect, static_detect
from .onnx_decoders import (choose_decoder, class_names, describe_outputs, input_hw, n_classes_of, parse_imgsz,
                             yolo_candidates)
from .onnx_file import OnnxFileInfo, inspect_onnx, materialise
from .preprocess import prepare, prepare_tensor, scale_boxes_back
from .static_nms import unpack_detections

log = logging.getLogger(__name__)

YOLO_PAD = 114.0  # Ultralytics' LetterBox fills with grey 114
UNIT_SCALE = ((0.0, 0.0, 0.0), (255.0, 255.0, 255.0))  # mean, std in 0-255 units: RGB scaled to 0..1


def is_onnx_path(name: str) -> bool:
    return str(name).lower().endswith(".onnx")


def _ort_session(path: str, threads: int = 0):
    try:
        import onnxruntime as ort
    except ImportError as e:
        raise WeightsError("running %s on the CPU (the reference, or to read its output shapes) needs onnxruntime "
                           "(%s); fix: pip install onnxruntime" % (os.path.basename(path), e)) from e
    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    try:
        return ort.InferenceSession(path, sess_options=options, providers=["CPUExecutionProvider"])
    except Exception as e:  # noqa: B902 - onnxruntime raises its own Fail / InvalidGraph / RuntimeException
        raise WeightsError("ONNX Runtime cannot load %s: %s; fix: export it again with a supported opset (<= 17)"
                           % (path, str(e).strip().splitlines()[0])) from e


class OnnxFileNetwork(PrebuiltOnnx):
    """The user's file as the core every backend receives: ONNX Runtime, TensorRT and Triton take the file (fitted to
    the batch and input size); forward() runs it on ONNX Runtime's CPU provider (--backend cpu, and the reference)."""

    def __init__(self, info: OnnxFileInfo, input_hw_: Tuple[int, int]):
        super().__init__()
        self.info = info
        self.input_hw = tuple(input_hw_)
        self._session = None

    def as_onnx(self, example: torch.Tensor, precision: str, dynamic_batch: bool, out_dir: str) -> OnnxModel:
        own = "fp16" if self.info.input.dtype == "float16" else "fp32"
        if precision == "fp16" and own != "fp16":
            raise ConfigError("%s is an fp32 graph, and this backend needs an fp16 ONNX for --precision fp16; fix: "
                              "--backend trt (it builds fp16 from an fp32 file), an fp16 export (yolo export ... "
                              "half=True), or --precision fp32" % os.path.basename(self.info.path))
        path = materialise(self.info, int(example.shape[0]), self.input_hw, dynamic_batch, out_dir)
        from ..engines.onnx_export import file_sha256

        return OnnxModel(path=path, sha256=self.info.sha256 if path == self.info.path else file_sha256(path),
                         input_names=(self.info.input.name,), output_names=tuple(o.name for o in self.info.outputs),
                         input_shape=tuple(int(d) for d in example.shape), precision=own, opset=self.info.opset,
                         exported=False)

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        if self._session is None:  # ONNX Runtime takes the file's free axes as they come: no fitted copy needed
            self._session = _ort_session(self.info.path, torch.get_num_threads())
        dtype = np.float16 if self.info.input.dtype == "float16" else np.float32
        feed = x.detach().to("cpu").numpy().astype(dtype, copy=False)
        outputs = self._session.run([o.name for o in self.info.outputs], {self.info.input.name: feed})
        return tuple(torch.from_numpy(np.asarray(o)).to(x.device) for o in outputs)


def concrete_output_dims(info: OnnxFileInfo, hw: Tuple[int, int]) -> List[Tuple[int, ...]]:
    """Every output's shape for one frame at `hw`: from the file where it says them all, else from one run of it
    on ONNX Runtime's CPU provider (a dynamic export names its anchor axis, e.g. ['batch', 84, 'anchors'])."""
    if all(all(isinstance(d, int) for d in o.dims[1:]) for o in info.outputs):
        return [tuple([1] + [int(d) for d in o.dims[1:]]) for o in info.outputs]
    network = OnnxFileNetwork(info, hw)
    dtype = torch.float16 if info.input.dtype == "float16" else torch.float32
    outputs = network(torch.zeros((info.fixed_batch() or 1, 3) + tuple(hw), dtype=dtype))
    return [(1,) + tuple(int(d) for d in o.shape[1:]) for o in outputs]


class OnnxModelAdapter(ModelAdapter):
    """A user's ONNX file. Frames are letterboxed as Ultralytics exports expect (centred, grey 114, RGB, 0..1) and
    boxes mapped back with the same scale and offsets; classifiers get the short side's centred square."""

    name = "onnx"
    weights_available_offline = True
    letterbox = True

    def __init__(self, config):
        super().__init__(config)
        path = config.name
        self.info = inspect_onnx(path)
        self.input_size, size_origin = input_hw(self.info, parse_imgsz(config.imgsz))
        dims = concrete_output_dims(self.info, self.input_size)
        self.decoder = choose_decoder(self.info, dims, config.decoder)
        self.task = "classification" if self.decoder == "classify" else "detection"
        self.n_classes = n_classes_of(self.decoder, dims[0], self.info.metadata)
        self.class_names, names_origin = class_names(self.info, self.n_classes, config.labels)
        self.input_names = (self.info.input.name,)
        self.output_names = tuple(o.name for o in self.info.outputs)
        self.onnx_file = self.info.path
        self.name = os.path.splitext(os.path.basename(path))[0]  # names the engines and exports built from it
        self.batch_limit = self.info.fixed_batch()  # 0: a free batch axis, several sources share a batch
        mean, std = self._mean_std()
        self.mean_255, self.std_255 = mean, std
        log.info("model %s: %s decoder (outputs %s), input %dx%d (%s), %d classes (names: %s), batch %s",
                 os.path.basename(path), self.decoder, describe_outputs(self.info.outputs), self.input_size[0],
                 self.input_size[1], size_origin, self.n_classes, names_origin,
                 "fixed at %d" % self.batch_limit if self.batch_limit else "dynamic")

    def _mean_std(self) -> Tuple[Tuple[float, ...], Tuple[float, ...]]:
        """0..1 scaling, or a classifier's mean / std from the file's metadata (in 0..1 units, as torchvision's)."""
        import ast

        mean, std = UNIT_SCALE
        for key in ("mean", "std"):
            text = self.info.metadata.get(key)
            if not text:
                continue
            try:
                value = [float(v) for v in ast.literal_eval(text)]
            except (ValueError, SyntaxError, TypeError):
                raise WeightsError("%s: its '%s' metadata %r is not a list of 3 numbers" % (self.info.path, key, text))
            if len(value) != 3:
                raise WeightsError("%s: its '%s' metadata %r is not a list of 3 numbers" % (self.info.path, key, text))
            scaled = tuple(v * 255.0 if max(value) <= 1.0 else v for v in value)
            if key == "mean":
                mean = scaled
            else:
                std = scaled
        return mean, std

    def build_network(self) -> torch.nn.Module:
        return OnnxFileNetwork(self.info, self.input_size)

    def example_input(self, device: torch.device = torch.device("cpu"), dtype: torch.dtype = torch.float32):
        return torch.zeros((1, 3) + tuple(self.input_size), device=device, dtype=dtype)

    def describe_weights(self) -> str:
        return "%s (sha256 %s)" % (os.path.basename(self.info.path), self.info.sha256[:12])

    # preprocessing

    def _crop(self, image):
        return centre_crop(image, 1.0) if self.task == "classification" else image

    def preprocess(self, image_bgr: np.ndarray, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
        return prepare(self._crop(image_bgr), self.input_size, device, dtype, self.mean_255, self.std_255, rgb=True,
                       letterbox=self.task == "detection", pad_value=YOLO_PAD)

    @property
    def batched_static(self) -> bool:
        return self.task == "detection" and self.decoder != "end2end"

    def prepare_tensor(self, image_bgr: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        return prepare_tensor(self._crop(image_bgr), self.input_size, dtype, self.mean_255, self.std_255, rgb=True,
                              letterbox=self.task == "detection", pad_value=YOLO_PAD)

    # postprocessing

    def decode_batch(self, outputs: Sequence[torch.Tensor]) -> Tuple[torch.Tensor, torch.Tensor]:
        """Boxes (B, N, 4) xyxy in input pixels and scores (B, N, nc)."""
        return yolo_candidates(outputs[0], self.decoder, self.n_classes)

    def _probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        """Softmax of logits; a head that already gives probabilities (non-negative, summing to 1) is kept as is.
        Decided on the device per frame, without a host sync, so the CUDA graph can capture it."""
        x = logits.float()
        is_prob = (x.min(-1, keepdim=True).values >= 0) & ((x.sum(-1, keepdim=True) - 1).abs() < 1e-3)
        return torch.where(is_prob, x, torch.softmax(x, -1))

    def postprocess(self, outputs: Tuple[torch.Tensor, ...], image_hw: Tuple[int, int]):
        if self.task == "classification":
            probabilities = self._probabilities(outputs[0][0])
            scores, class_ids = probabilities.topk(max(1, min(self.config.topk, probabilities.shape[0])))
            return Classification(class_ids=class_ids.cpu().numpy().astype(np.int64),
                                  scores=scores.cpu().numpy().astype(np.float32), class_names=self.class_names)
        if self.decoder == "end2end":
            return self._end2end(outputs[0][0], image_hw)
        boxes, scores = self.decode_batch([outputs[0][:1]])
        return detect(boxes[0], scores[0], image_hw, self.input_size, self.letterbox, self.config, self.class_names)

    def _end2end(self, rows: torch.Tensor, image_hw: Tuple[int, int]) -> Detections:
        """(N, 6) rows x1, y1, x2, y2, score, class from a head that ran NMS itself: thresholded, best first."""
        rows = rows.float()
        rows = rows[rows[:, 4] > self.config.score_threshold]
        rows = rows[rows[:, 4].argsort(descending=True)][:self.config.max_detections]
        boxes = scale_boxes_back(rows[:, :4], image_hw, self.input_size, letterbox=self.letterbox)
        packed = torch.cat((boxes, rows[:, 4:6]), 1).cpu().numpy()
        return Detections(packed[:, :4].astype(np.float32), packed[:, 4].astype(np.float32),
                          packed[:, 5].round().astype(np.int64), self.class_names)

    def static_postprocess(self, outputs: Tuple[torch.Tensor, ...], image_hw: Tuple[int, int]) -> torch.Tensor:
        if self.task == "classification":
            probabilities = self._probabilities(outputs[0][0])
            scores, class_ids = probabilities.topk(max(1, min(self.config.topk, probabilities.shape[0])))
            return torch.stack((class_ids.float(), scores), 1)
        if self.decoder == "end2end":  # data-dependent sizes: the eager stages run it (fused_stages falls back)
            raise NotImplementedError("an end-to-end head's rows are thresholded on the host")
        boxes, scores = self.decode_batch([outputs[0][:1]])
        return static_detect(boxes[0], scores[0], image_hw, self.input_size, self.letterbox, self.config,
                             self.exact_threshold)

    def static_postprocess_batch(self, outputs: Tuple[torch.Tensor, ...], image_hw: Tuple[int, int]) -> torch.Tensor:
        boxes, scores = self.decode_batch(outputs)
        return static_detect(boxes, scores, image_hw, self.input_size, self.letterbox, self.config,
                             self.exact_threshold)

    def input_geometry(self) -> Optional[Tuple[bool, float]]:
        return (True, YOLO_PAD) if self.task == "detection" else None

    def unpack(self, packed: np.ndarray) -> Optional[object]:
        if self.task == "classification":
            return Classification(class_ids=packed[:, 0].astype(np.int64), scores=packed[:, 1].astype(np.float32),
                                  class_names=self.class_names)
        return unpack_detections(packed, self.class_names)

