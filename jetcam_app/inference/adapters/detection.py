"""torchvision's SSD300-VGG16 and SSDlite320-MobileNetV3 split into an exportable core and torch-side decoding + NMS."""

from typing import Dict, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import nn
from torchvision.models.detection import _utils as det_utils
from torchvision.models.detection.image_list import ImageList
from torchvision.ops import boxes as box_ops

from ...config import ModelConfig
from ...types import Detections
from .base import ModelAdapter
from .labels import COCO_91
from .preprocess import prepare, prepare_tensor
from .static_nms import nms_and_pack, unpack_detections
from .tv_weights import build, default_weights
from .weights import describe_source, load_into, resolve_state_dict, seeded_init


class SsdCore(nn.Module):
    """Backbone + head of a torchvision SSD: a fixed-size batch in, (bbox_regression, cls_logits) out.

    bbox_regression is (N, anchors, 4) box-coder offsets; cls_logits is (N, anchors, 91) raw logits.
    Submodules keep torchvision's names, so a full SSD state dict also loads into the core.
    """

    def __init__(self, backbone: nn.Module, head: nn.Module):
        super().__init__()
        self.backbone = backbone
        self.head = head

    def forward(self, images: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        features = self.backbone(images)
        if isinstance(features, torch.Tensor):
            features = [features]
        else:
            features = list(features.values())
        out = self.head(features)
        return out["bbox_regression"], out["cls_logits"]


STATIC_TOPK = 512  # candidates the device path considers; the frame falls back to postprocess() if too few


def decode_boxes(box_coder: det_utils.BoxCoder, rel_codes: torch.Tensor, anchors: torch.Tensor) -> torch.Tensor:
    """BoxCoder.decode_single without its per-call host-to-device constants (a CUDA graph cannot capture those);
    the same operations in the same order, so the boxes are bit-identical. rel_codes (A, 4), or (B, A, 4) for a
    batch."""
    widths = anchors[:, 2] - anchors[:, 0]
    heights = anchors[:, 3] - anchors[:, 1]
    ctr_x = anchors[:, 0] + 0.5 * widths
    ctr_y = anchors[:, 1] + 0.5 * heights
    wx, wy, ww, wh = box_coder.weights
    dx = rel_codes[..., 0::4] / wx
    dy = rel_codes[..., 1::4] / wy
    dw = torch.clamp(rel_codes[..., 2::4] / ww, max=box_coder.bbox_xform_clip)
    dh = torch.clamp(rel_codes[..., 3::4] / wh, max=box_coder.bbox_xform_clip)
    pred_ctr_x = dx * widths[:, None] + ctr_x[:, None]
    pred_ctr_y = dy * heights[:, None] + ctr_y[:, None]
    half_w = 0.5 * (torch.exp(dw) * widths[:, None])
    half_h = 0.5 * (torch.exp(dh) * heights[:, None])
    return torch.stack((pred_ctr_x - half_w, pred_ctr_y - half_h, pred_ctr_x + half_w, pred_ctr_y + half_h),
                       dim=-1).flatten(-2)


class _TorchvisionSsdAdapter(ModelAdapter):
    """The shared split: torchvision's GeneralizedRCNNTransform + SSD.postprocess_detections, re-done outside the core.

    Preprocessing resizes first (uint8 on the CPU) and normalises second; torchvision normalises then resizes.
    Both are linear, so the two orders differ only by the uint8 rounding of the resized frame.
    """

    task = "detection"
    input_names = ("images",)
    output_names = ("bbox_regression", "cls_logits")
    weights_enum_name = ""  # torchvision.models.detection.<enum>
    builder_name = ""  # torchvision.models.detection.<builder>
    image_mean = (0.0, 0.0, 0.0)  # torchvision's defaults for the model, 0-1 scale
    image_std = (1.0, 1.0, 1.0)
    topk_candidates = 400  # per class, before NMS (torchvision's default for the model)

    def __init__(self, config: ModelConfig):
        super().__init__(config)
        self.class_names = list(COCO_91)
        self.box_coder = det_utils.BoxCoder(weights=(10.0, 10.0, 5.0, 5.0))
        self.anchors: Optional[torch.Tensor] = None
        self._anchors_by_device: Dict[torch.device, torch.Tensor] = {}
        self._box_scales: Dict[Tuple[int, int, torch.device], torch.Tensor] = {}
        self._mean_255 = [255.0 * m for m in self.image_mean]
        self._std_255 = [255.0 * s for s in self.image_std]

    def _tv_weights(self):
        import torchvision.models.detection as tvd

        return default_weights(tvd, self.weights_enum_name)

    def build_reference(self, **kwargs) -> nn.Module:
        """torchvision's whole SSD with this adapter's weights (random when config.random_weights).

        `weights_backbone=None` keeps torchvision from fetching ImageNet backbone weights that a full
        state dict overwrites anyway (and, for SSDlite, selects the reduced tail the COCO weights use).
        """
        import torchvision.models.detection as tvd

        tv_weights = self._tv_weights()
        state = resolve_state_dict(self.config, self.name, tv_weights, check_hash=True)
        with seeded_init():
            model = build(getattr(tvd, self.builder_name), weights_backbone=None, num_classes=91, **kwargs)
            if state is None:
                self._random_init(model)
        if state is not None:
            load_into(model, state, describe_source(self.config, self.name, tv_weights), self.name)
        return model.eval()

    def _random_init(self, model: nn.Module) -> None:
        """Hook for models whose default random init is degenerate (see SsdLite320Adapter)."""

    def build_network(self) -> nn.Module:
        return self.split(self.build_reference())

    def split(self, model: nn.Module) -> SsdCore:
        """The core of a torchvision SSD (sharing its modules); computes the anchors for postprocess."""
        core = SsdCore(model.backbone, model.head).eval()
        self.anchors = self._compute_anchors(core, model.anchor_generator)
        self._anchors_by_device = {}
        return core

    def describe_weights(self) -> str:
        return describe_source(self.config, self.name, self._tv_weights())

    def _compute_anchors(self, core: SsdCore, anchor_generator: nn.Module) -> torch.Tensor:
        """The default boxes (anchors, 4) in input pixels, xyxy: one pass of the backbone gives the grid sizes."""
        example = self.example_input()
        with torch.inference_mode():
            features = core.backbone(example)
        features = [features] if isinstance(features, torch.Tensor) else list(features.values())
        shapes_only = [torch.empty((1, 0) + tuple(f.shape[-2:])) for f in features]
        h, w = self.input_size
        return anchor_generator(ImageList(example, [(h, w)]), shapes_only)[0].float()

    def _anchors_on(self, device: torch.device) -> torch.Tensor:
        if self.anchors is None:
            raise RuntimeError("build_network() must run before postprocess()")
        if device not in self._anchors_by_device:
            self._anchors_by_device[device] = self.anchors.to(device)
        return self._anchors_by_device[device]

    def _box_scale(self, image_hw: Tuple[int, int], device: torch.device) -> torch.Tensor:
        """(w, h, w, h) ratios frame / input, as float32 quotients like resize_boxes, so boxes match to the bit."""
        key = (int(image_hw[0]), int(image_hw[1]), device)
        if key not in self._box_scales:
            in_h, in_w = self.input_size
            ratio_h = torch.tensor(key[0], dtype=torch.float32) / torch.tensor(in_h, dtype=torch.float32)
            ratio_w = torch.tensor(key[1], dtype=torch.float32) / torch.tensor(in_w, dtype=torch.float32)
            self._box_scales[key] = torch.stack((ratio_w, ratio_h, ratio_w, ratio_h)).to(device)
        return self._box_scales[key]

    def preprocess(self, image_bgr: np.ndarray, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
        return prepare(image_bgr, self.input_size, device, dtype, self._mean_255, self._std_255, rgb=True)

    def postprocess(self, outputs: Sequence[torch.Tensor], image_hw: Tuple[int, int]) -> Detections:
        """SSD.postprocess_detections + GeneralizedRCNNTransform.postprocess for the first image, on its device.

        Per class: scores above the threshold, the best topk_candidates of them; then batched NMS and
        max_detections. The per-class loop is vectorised (one top-k over all classes: a few device syncs
        instead of ~180 on CUDA) and keeps torchvision's candidate order (class by class, best first); only
        exactly equal scores may come out in another order.
        """
        bbox_regression, cls_logits = outputs[0], outputs[1]
        regression = bbox_regression[0].float()
        scores = torch.softmax(cls_logits[0].float(), dim=-1)[:, 1:]  # drop the background column
        anchors = self._anchors_on(regression.device)
        in_h, in_w = self.input_size
        boxes = self.box_coder.decode_single(regression, anchors)
        boxes = box_ops.clip_boxes_to_image(boxes, (in_h, in_w))

        k = min(self.topk_candidates, scores.shape[0])
        top_scores, top_anchor = scores.topk(k, dim=0)  # (k, classes-1), best first per class
        top_scores, top_anchor = top_scores.t(), top_anchor.t()  # class-major, as torchvision concatenates
        keep = top_scores > self.config.score_threshold
        cand_scores = top_scores[keep]
        cand_boxes = boxes[top_anchor[keep]]
        cand_labels = keep.nonzero()[:, 0] + 1
        kept = box_ops.batched_nms(cand_boxes, cand_scores, cand_labels, self.config.iou_threshold)
        kept = kept[: self.config.max_detections]

        out_boxes = cand_boxes[kept] * self._box_scale(image_hw, cand_boxes.device)
        # One transfer (one device sync); labels < 91 are exact in float32.
        packed = torch.cat((out_boxes, cand_scores[kept, None], cand_labels[kept, None].float()), 1).cpu().numpy()
        return Detections(
            boxes=packed[:, :4].astype(np.float32),
            scores=packed[:, 4].astype(np.float32),
            labels=packed[:, 5].astype(np.int64),
            class_names=self.class_names,
        )

    batched_static = True  # prepare_tensor() takes a batch; static_postprocess_batch() below

    def prepare_tensor(self, image_bgr: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        return prepare_tensor(image_bgr, self.input_size, dtype, self._mean_255, self._std_255, rgb=True)

    def static_postprocess(self, outputs: Sequence[torch.Tensor], image_hw: Tuple[int, int]) -> torch.Tensor:
        """postprocess() with static shapes. The best STATIC_TOPK (anchor, class) pairs overall, each class capped
        at topk_candidates by its rank among them, then static NMS (static_nms.nms_and_pack says when that is
        exact; a class's rank among them is its rank overall, its better candidates being among them too)."""
        regression = outputs[0][0].float()
        scores = torch.softmax(outputs[1][0].float(), dim=-1)[:, 1:]
        boxes = decode_boxes(self.box_coder, regression, self._anchors_on(regression.device))
        boxes = box_ops.clip_boxes_to_image(boxes, tuple(self.input_size))
        classes = scores.shape[1]
        flat = scores.flatten()
        top_scores, top = flat.topk(min(STATIC_TOPK, flat.numel()))
        labels = top % classes + 1
        cand_boxes = boxes[torch.div(top, classes, rounding_mode="floor")]
        class_rank = (labels[:, None] == labels[None, :]).tril(-1).sum(1)  # better candidates of the same class
        valid = (top_scores > self.config.score_threshold) & (class_rank < self.topk_candidates)
        out_boxes = cand_boxes * self._box_scale(image_hw, cand_boxes.device)
        return nms_and_pack(cand_boxes, out_boxes, top_scores, labels, valid, (flat > self.exact_threshold).sum(),
                            self.config.iou_threshold, self.config.max_detections)

    def static_postprocess_batch(self, outputs: Sequence[torch.Tensor], image_hw: Tuple[int, int]) -> torch.Tensor:
        """static_postprocess() of every frame of a batch of frames of one size at once: (B, ...) packed rows."""
        regression = outputs[0].float()
        scores = torch.softmax(outputs[1].float(), dim=-1)[..., 1:]
        boxes = decode_boxes(self.box_coder, regression, self._anchors_on(regression.device))
        boxes = box_ops.clip_boxes_to_image(boxes, tuple(self.input_size))
        classes = scores.shape[-1]
        flat = scores.flatten(-2)
        top_scores, top = flat.topk(min(STATIC_TOPK, flat.shape[-1]), dim=-1)
        labels = top % classes + 1
        cand_boxes = torch.gather(boxes, 1, torch.div(top, classes, rounding_mode="floor").unsqueeze(-1).expand(top.shape + (4,)))
        class_rank = (labels[..., :, None] == labels[..., None, :]).tril(-1).sum(-1)
        valid = (top_scores > self.config.score_threshold) & (class_rank < self.topk_candidates)
        out_boxes = cand_boxes * self._box_scale(image_hw, cand_boxes.device)
        return nms_and_pack(cand_boxes, out_boxes, top_scores, labels, valid,
                            (flat > self.exact_threshold).sum(-1), self.config.iou_threshold,
                            self.config.max_detections)

    def unpack(self, packed: np.ndarray) -> Optional[Detections]:
        return unpack_detections(packed, self.class_names)

    def input_geometry(self) -> Optional[Tuple[bool, float]]:
        return False, 0.0  # stretched

    def boxes_to_frame(self, boxes: torch.Tensor, image_hw: Tuple[int, int]) -> torch.Tensor:
        return boxes.float() * self._box_scale(image_hw, boxes.device)


class Ssd300Vgg16Adapter(_TorchvisionSsdAdapter):
    """SSD300 with a VGG16 backbone (COCO mAP 25.1, 35.6 GFLOPs)."""

    name = "ssd300_vgg16"
    input_size = (300, 300)
    weights_enum_name = "SSD300_VGG16_Weights"
    builder_name = "ssd300_vgg16"
    # torchvision subtracts the mean in 0-1 units and divides by 1/255, i.e. works in 0-255 units
    image_mean = (0.48235, 0.45882, 0.40784)
    image_std = (1.0 / 255.0, 1.0 / 255.0, 1.0 / 255.0)
    topk_candidates = 400


class SsdLite320Adapter(_TorchvisionSsdAdapter):
    """SSDlite320 with a MobileNetV3-Large backbone (COCO mAP 21.3, 0.58 GFLOPs)."""

    name = "ssdlite320_mobilenet_v3_large"
    input_size = (320, 320)
    weights_enum_name = "SSDLite320_MobileNet_V3_Large_Weights"
    builder_name = "ssdlite320_mobilenet_v3_large"
    image_mean = (0.5, 0.5, 0.5)
    image_std = (0.5, 0.5, 0.5)
    topk_candidates = 300

    def _random_init(self, model: nn.Module) -> None:
        # torchvision's N(0, 0.03) init without a pretrained backbone shrinks activations by ~100x per stage
        # (features ~1e-20, all scores exactly 1/91): random-weight runs would draw nothing and backend
        # comparisons would compare zeros. He init keeps activations O(1) at the same cost.
        for module in model.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
