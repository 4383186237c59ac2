"""Dense detector heads -> Detections: every candidate box with a score per class, thresholded, NMS'd per class and
mapped back to the frame. Shared by NanoDet and a user's YOLO file, eager (postprocess) and static (CUDA graph)."""

from typing import List, Tuple

import numpy as np
import torch
import torchvision

from ...types import Detections
from .preprocess import scale_boxes_back
from .static_nms import nms_and_pack

PRE_NMS_TOPK = 1000  # candidates kept before NMS; bounds the NMS cost on cluttered frames
STATIC_TOPK = 256  # candidates the device path considers; the frame falls back to postprocess() if too few


def detect(boxes: torch.Tensor, scores: torch.Tensor, image_hw: Tuple[int, int], input_hw: Tuple[int, int],
           letterbox: bool, config, class_names: List[str]) -> Detections:
    """One frame: boxes (M, 4) xyxy in input pixels, scores (M, nc) -> the kept boxes in frame pixels, best first."""
    n_classes = scores.shape[-1]
    flat = scores.flatten()
    candidates = torch.nonzero(flat > config.score_threshold).squeeze(1)
    if candidates.numel() == 0:
        return Detections.empty(class_names)
    if candidates.numel() > PRE_NMS_TOPK:
        candidates = candidates[flat[candidates].topk(PRE_NMS_TOPK).indices]
    box_index, labels = torch.div(candidates, n_classes, rounding_mode="floor"), candidates % n_classes
    kept_boxes, kept_scores = boxes[box_index], flat[candidates]
    keep = torchvision.ops.batched_nms(kept_boxes, kept_scores, labels, config.iou_threshold)
    keep = keep[:config.max_detections]
    frame_boxes = scale_boxes_back(kept_boxes[keep], image_hw, input_hw, letterbox=letterbox)
    # One transfer (one device sync) for boxes, scores and labels; labels below 2**24 are exact in float32.
    packed = torch.cat((frame_boxes, kept_scores[keep, None].float(), labels[keep, None].float()), 1).cpu().numpy()
    return Detections(packed[:, :4].astype(np.float32), packed[:, 4].astype(np.float32),
                      packed[:, 5].astype(np.int64), class_names)


def static_detect(boxes: torch.Tensor, scores: torch.Tensor, image_hw: Tuple[int, int], input_hw: Tuple[int, int],
                  letterbox: bool, config, exact_threshold: float) -> torch.Tensor:
    """detect() with static shapes, for one frame ((M, 4), (M, nc)) or a batch ((B, M, 4), (B, M, nc)): the best
    STATIC_TOPK (box, class) pairs, invalid below the threshold, then static NMS (static_nms.nms_and_pack says when
    that is exact)."""
    n_classes = scores.shape[-1]
    flat = scores.flatten(-2)
    top_scores, top = flat.topk(min(STATIC_TOPK, flat.shape[-1]), dim=-1)
    index = torch.div(top, n_classes, rounding_mode="floor")
    if boxes.dim() == 2:
        cand_boxes = boxes[index]
    else:
        cand_boxes = torch.gather(boxes, 1, index.unsqueeze(-1).expand(index.shape + (4,)))
    frame_boxes = scale_boxes_back(cand_boxes, image_hw, input_hw, letterbox=letterbox)
    return nms_and_pack(cand_boxes, frame_boxes, top_scores, top % n_classes,
                        top_scores > config.score_threshold, (flat > exact_threshold).sum(-1),
                        config.iou_threshold, config.max_detections)
