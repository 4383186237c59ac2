"""Exact greedy NMS with static shapes: no host sync, no data-dependent sizes, so it can run inside a CUDA graph.

Greedy NMS over candidates sorted best first keeps candidate i exactly when no kept candidate j < i of the
same class overlaps it by more than the IoU threshold. That rule has one solution, and the iteration
`keep <- valid & not any(keep[j] & suppresses[j, i])` reaches it: after t rounds the first t candidates are
settled, and once a round changes nothing the solution is found. A fixed number of rounds runs on the device;
the caller learns whether it converged (it nearly always does in a few rounds) and otherwise falls back to
the dynamic NMS, so the result is always torchvision's.

Results travel back to the host packed in one small float32 tensor:
row 0 = (kept, exact, candidates, 0, 0, 0); rows 1..kept = (x1, y1, x2, y2, score, label), best first.
"""

from typing import Optional, Sequence, Tuple

import numpy as np
import torch

from ...types import Detections

NMS_ROUNDS = 12  # rounds run on the device (one small product each); real chains of suppression are short


def pairwise_iou(boxes: torch.Tensor) -> torch.Tensor:
    """(..., K, K) IoU of (..., K, 4) xyxy boxes with each other: torchvision's box_iou, operation for operation
    (so the same bits), over any leading batch dimensions."""
    area = (boxes[..., 2] - boxes[..., 0]) * (boxes[..., 3] - boxes[..., 1])
    lt = torch.max(boxes[..., :, None, :2], boxes[..., None, :, :2])
    rb = torch.min(boxes[..., :, None, 2:], boxes[..., None, :, 2:])
    wh = (rb - lt).clamp(min=0)
    inter = wh[..., 0] * wh[..., 1]
    union = area[..., :, None] + area[..., None, :] - inter
    return inter / union


def static_batched_nms(boxes: torch.Tensor, scores: torch.Tensor, labels: torch.Tensor, valid: torch.Tensor,
                       iou_threshold: float, rounds: int = NMS_ROUNDS) -> Tuple[torch.Tensor, torch.Tensor]:
    """keep (K,) bool and stable (K,) bool (unchanged by the last round) for candidates sorted best first;
    when all are stable, keep is final (see settled() for the part of it a result needs). Leading batch
    dimensions (B, K, ...) run every frame's NMS at once, each on its own.

    Invalid candidates are never kept and suppress nothing. Same decisions as torchvision.ops.batched_nms
    (IoU > threshold within a class) once converged; only exactly equal scores may be ordered differently.
    """
    del scores  # the order carries the scores
    k = boxes.shape[-2]
    earlier = torch.ones((k, k), dtype=torch.bool, device=boxes.device).triu(1)  # [j, i]: j comes before i
    suppresses = (pairwise_iou(boxes) > iou_threshold) & (labels[..., :, None] == labels[..., None, :]) & earlier
    suppresses = suppresses & valid[..., :, None]
    # Row k is a sentinel, always kept, that suppresses every invalid candidate; entries are 0 or -1, so
    # hits[i] = -(number of kept j that suppress i), small exact integers, and heaviside(hits, 1) is 1 exactly
    # when nothing suppresses i. Each round is then two kernels: one vector-matrix product and one heaviside.
    negated = torch.cat((suppresses, (~valid)[..., None, :]), -2).float().neg()
    ones = torch.ones(valid.shape[:-1] + (1,), dtype=torch.float32, device=boxes.device)
    state = torch.cat((valid.float(), ones), -1)
    keep = state[..., :k]  # a view: each round's heaviside writes the state the next round multiplies
    one = torch.ones((), dtype=torch.float32, device=boxes.device)
    # Traced (ONNX, TorchScript: a Triton model with NMS inside): heaviside has no ONNX symbolic and a trace cannot
    # write into a view, so each round's state is made anew; hits >= 0 is heaviside(hits, 1).
    traced = torch.jit.is_tracing() or torch.onnx.is_in_onnx_export()
    previous = keep
    for round_ in range(rounds):
        if round_ == rounds - 1:
            previous = keep.clone()
        hits = state @ negated if state.dim() == 1 else (state.unsqueeze(-2) @ negated).squeeze(-2)
        if traced:
            keep = (hits >= 0).float()
            state = torch.cat((keep, ones), -1)
        else:
            torch.heaviside(hits, one, out=keep)
    return keep > 0, keep == previous


def settled(keep: torch.Tensor, stable: torch.Tensor, max_detections: int) -> torch.Tensor:
    """bool (one per frame of a batch): the decisions that make the result are final. Candidate i depends only on
    those before it, so a prefix that the last round left unchanged is exact; the prefix that matters ends at the
    max_detections-th kept candidate (or covers everything when fewer are kept)."""
    positions = torch.arange(keep.shape[-1], device=keep.device)
    kept_before = torch.cumsum(keep.to(torch.int64), -1)
    last_needed = torch.where(kept_before >= max_detections, positions, torch.full_like(positions, keep.shape[-1]))
    cutoff = last_needed.min() if keep.dim() == 1 else last_needed.min(-1, keepdim=True).values
    return (stable | (positions > cutoff)).all(-1)


def pack_detections(boxes: torch.Tensor, scores: torch.Tensor, labels: torch.Tensor, keep: torch.Tensor,
                    exact: torch.Tensor, candidates: torch.Tensor, max_detections: int) -> torch.Tensor:
    """The kept rows (best first, at most max_detections) under a header row; static shapes throughout (with
    leading batch dimensions, one such block per frame)."""
    if torch.jit.is_tracing() or torch.onnx.is_in_onnx_export():
        return _pack_gathered(boxes, scores, labels, keep, exact, candidates, max_detections)
    order = torch.cumsum(keep.to(torch.int64), -1) - 1
    chosen = keep & (order < max_detections)
    trash = max_detections + 1  # rows not chosen all land in one spare row, dropped below
    slot = torch.where(chosen, order + 1, torch.full_like(order, trash))
    rows = torch.cat((boxes.float(), scores.float()[..., None], labels.float()[..., None]), -1)
    body = torch.zeros(keep.shape[:-1] + (max_detections + 2, 6), dtype=torch.float32, device=boxes.device)
    if keep.dim() == 1:  # one frame: the kernels the single-source graph was measured with
        body.index_copy_(0, slot, rows)
    else:
        body.scatter_(-2, slot[..., None].expand(rows.shape), rows)
    zero = torch.zeros(keep.shape[:-1], dtype=torch.float32, device=boxes.device)
    header = torch.stack((chosen.sum(-1).float(), exact.float(), candidates.float(), zero, zero, zero), -1)
    body[..., 0, :] = header
    return body[..., :max_detections + 1, :]


def _pack_gathered(boxes: torch.Tensor, scores: torch.Tensor, labels: torch.Tensor, keep: torch.Tensor,
                   exact: torch.Tensor, candidates: torch.Tensor, max_detections: int) -> torch.Tensor:
    """pack_detections for a traced graph (a Triton model with NMS inside), the same values: the chosen rows gathered
    by their rank (a top-k) and the block concatenated, since TensorRT's ScatterElements takes no more indices than
    the target has rows, and an in-place header would be a ScatterND."""
    k = keep.shape[-1]
    order = torch.cumsum(keep.to(torch.int64), -1) - 1
    chosen = keep & (order < max_detections)
    positions = torch.arange(k, device=keep.device).expand(keep.shape)
    rank = torch.where(chosen, order, positions + k).float()  # the chosen first, in their order; small exact integers
    n = min(max_detections, k)
    pick = (-rank).topk(n, -1).indices
    rows = torch.cat((boxes.float(), scores.float()[..., None], labels.float()[..., None]), -1)
    picked = torch.gather(rows, -2, pick[..., None].expand(pick.shape + (6,)))
    count = chosen.sum(-1)
    filled = torch.arange(n, device=keep.device) < count[..., None]
    picked = torch.where(filled[..., None], picked, torch.zeros_like(picked))
    if n < max_detections:
        picked = torch.cat((picked, picked.new_zeros(picked.shape[:-2] + (max_detections - n, 6))), -2)
    zero = torch.zeros(keep.shape[:-1], dtype=torch.float32, device=boxes.device)
    header = torch.stack((count.float(), exact.float(), candidates.float(), zero, zero, zero), -1)
    return torch.cat((header[..., None, :], picked), -2)


def nms_and_pack(candidate_boxes: torch.Tensor, out_boxes: torch.Tensor, scores: torch.Tensor, labels: torch.Tensor,
                 valid: torch.Tensor, above: torch.Tensor, iou_threshold: float, max_detections: int) -> torch.Tensor:
    """Static NMS over the best K candidates (sorted best first, `valid` = above the threshold and allowed) and
    the packed result with `out_boxes` (the candidates in frame pixels). Exact, and flagged so in the header,
    when the decisions it needs have settled and either all `above` candidates over the threshold are among
    the K or max_detections were kept from them: the rest scores lower than all K, so it can neither suppress
    them nor come first. Leading batch dimensions: one packed block per frame."""
    keep, stable = static_batched_nms(candidate_boxes, scores, labels, valid, iou_threshold)
    exact = settled(keep, stable, max_detections) & ((above <= keep.shape[-1]) | (keep.sum(-1) >= max_detections))
    return pack_detections(out_boxes, scores, labels, keep, exact, above, max_detections)


def unpack_detections(packed: np.ndarray, class_names: Sequence[str]) -> Optional[Detections]:
    """Detections from pack_detections' rows, or None when the device result was not exact (use the dynamic path)."""
    if packed[0, 1] < 0.5:
        return None
    rows = packed[1:1 + int(packed[0, 0])]
    return Detections(rows[:, :4].astype(np.float32), rows[:, 4].astype(np.float32),
                      rows[:, 5].astype(np.int64), class_names)
