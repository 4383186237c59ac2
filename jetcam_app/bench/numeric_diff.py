"""How far a backend's numbers drift from the reference: raw-output statistics, top-k agreement, box matching."""

import math
import os
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

# |reference| below this is not used for the relative difference: near-zero logits would make it meaningless.
REL_FLOOR = 1e-3
# log10(|difference|) histogram bins shared by every backend; exact zeros are counted apart.
HIST_EDGES = np.linspace(-12.0, 3.0, 61)
MATCH_IOU = 0.5


def load_outputs(folder: str) -> List[np.ndarray]:
    """out_0.npy, out_1.npy, ... of a worker folder, memory-mapped (frames first)."""
    arrays = []
    k = 0
    while os.path.isfile(os.path.join(folder, "out_%d.npy" % k)):
        arrays.append(np.load(os.path.join(folder, "out_%d.npy" % k), mmap_mode="r"))
        k += 1
    return arrays


def compare_raw(reference: Sequence[np.ndarray], outputs: Sequence[np.ndarray]) -> Dict[str, Any]:
    """Max / mean absolute, max relative, cosine similarity per frame over all outputs (frames first)."""
    if len(reference) != len(outputs):
        raise ValueError("the reference has %d outputs, this backend %d" % (len(reference), len(outputs)))
    for k, (ref, out) in enumerate(zip(reference, outputs)):
        if ref.shape[1:] != out.shape[1:]:
            raise ValueError("output %d: reference shape %s, this backend %s" % (k, ref.shape[1:], out.shape[1:]))
    frames = min(ref.shape[0] for ref in reference) if reference else 0
    frames = min([frames] + [out.shape[0] for out in outputs])
    max_abs, sum_abs, count, max_rel = 0.0, 0.0, 0, 0.0
    non_finite = 0
    per_frame_max, per_frame_cos = [], []  # type: List[float], List[float]
    hist = np.zeros(len(HIST_EDGES) - 1, np.int64)
    zeros = 0
    for i in range(frames):
        ref = np.concatenate([np.asarray(r[i], np.float64).ravel() for r in reference])
        out = np.concatenate([np.asarray(o[i], np.float64).ravel() for o in outputs])
        finite = np.isfinite(out) & np.isfinite(ref)
        non_finite += int(finite.size - finite.sum())
        ref, out = ref[finite], out[finite]
        diff = np.abs(out - ref)
        frame_max = float(diff.max()) if diff.size else 0.0
        per_frame_max.append(frame_max)
        max_abs = max(max_abs, frame_max)
        sum_abs += float(diff.sum())
        count += int(diff.size)
        big = np.abs(ref) > REL_FLOOR
        if big.any():
            max_rel = max(max_rel, float((diff[big] / np.abs(ref[big])).max()))
        norm = float(np.linalg.norm(ref) * np.linalg.norm(out))
        per_frame_cos.append(float(np.dot(ref, out) / norm) if norm > 0 else (1.0 if not diff.any() else 0.0))
        nonzero = diff[diff > 0]
        zeros += int(diff.size - nonzero.size)
        hist += np.histogram(np.clip(np.log10(nonzero), HIST_EDGES[0], HIST_EDGES[-1]), HIST_EDGES)[0]
    return {
        "frames": frames,
        "max_abs": max_abs,
        "mean_abs": sum_abs / count if count else 0.0,
        "max_rel": max_rel,
        "cosine_min": min(per_frame_cos) if per_frame_cos else None,
        "cosine_mean": float(np.mean(per_frame_cos)) if per_frame_cos else None,
        "non_finite": non_finite,
        "per_frame_max_abs": per_frame_max,
        "log10_abs_hist": {"edges": [float(e) for e in HIST_EDGES], "counts": [int(c) for c in hist], "zeros": zeros},
    }


def compare_classifications(reference: Sequence[Dict[str, Any]], predictions: Sequence[Dict[str, Any]]) -> Dict[str, Any]:
    """Top-1 agreement (same best class), top-5 agreement (the best class within the reference's top 5),
    top-5 overlap (shared classes / 5) and the top-1 probability difference, per predictions.jsonl record."""
    top1, top5, overlap, score_diff = [], [], [], []  # type: List[float], List[float], List[float], List[float]
    for ref, pred in zip(reference, predictions):
        ref_ids = [c["id"] for c in ref.get("topk", [])]
        ids = [c["id"] for c in pred.get("topk", [])]
        if not ref_ids or not ids:
            continue
        top1.append(float(ref_ids[0] == ids[0]))
        top5.append(float(ids[0] in ref_ids[:5]))
        overlap.append(len(set(ref_ids[:5]) & set(ids[:5])) / float(min(5, len(ref_ids))))
        score_diff.append(abs(ref["topk"][0]["score"] - pred["topk"][0]["score"]))
    n = len(top1)
    return {
        "frames": n,
        "top1_agreement": sum(top1) / n if n else None,
        "top5_agreement": sum(top5) / n if n else None,
        "top5_overlap": sum(overlap) / n if n else None,
        "top1_score_diff_max": max(score_diff) if score_diff else None,
        "top1_score_diff_mean": sum(score_diff) / n if n else None,
    }


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU matrix (len(a), len(b)) of xyxy boxes."""
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)))
    x1 = np.maximum(a[:, None, 0], b[None, :, 0])
    y1 = np.maximum(a[:, None, 1], b[None, :, 1])
    x2 = np.minimum(a[:, None, 2], b[None, :, 2])
    y2 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def match_boxes(ref_boxes: np.ndarray, boxes: np.ndarray, iou_threshold: float = MATCH_IOU) -> List[tuple]:
    """Greedy one-to-one matching, highest IoU first, label-agnostic: (ref index, index, IoU) pairs."""
    iou = box_iou(ref_boxes, boxes)
    pairs = []
    if iou.size == 0:
        return pairs
    order = np.dstack(np.unravel_index(np.argsort(-iou, axis=None), iou.shape))[0]
    used_ref, used = set(), set()
    for r, c in order:
        if iou[r, c] < iou_threshold:
            break
        if r in used_ref or c in used:
            continue
        used_ref.add(int(r))
        used.add(int(c))
        pairs.append((int(r), int(c), float(iou[r, c])))
    return pairs


def compare_detections(reference: Sequence[Dict[str, Any]], predictions: Sequence[Dict[str, Any]],
                       iou_threshold: float = MATCH_IOU) -> Dict[str, Any]:
    """Boxes matched at IoU >= iou_threshold: their mean / min IoU, label agreement and score difference;
    reference boxes with no match are `missing`, this backend's unmatched boxes are `extra`."""
    ious, label_same, score_diff = [], [], []  # type: List[float], List[float], List[float]
    missing = extra = ref_total = 0
    identical_frames = 0
    for ref, pred in zip(reference, predictions):
        ref_boxes = np.asarray(ref.get("boxes", []), np.float64).reshape(-1, 4)
        boxes = np.asarray(pred.get("boxes", []), np.float64).reshape(-1, 4)
        pairs = match_boxes(ref_boxes, boxes, iou_threshold)
        ref_total += len(ref_boxes)
        missing += len(ref_boxes) - len(pairs)
        extra += len(boxes) - len(pairs)
        for r, c, iou in pairs:
            ious.append(iou)
            label_same.append(float(ref["labels"][r] == pred["labels"][c]))
            score_diff.append(abs(ref["scores"][r] - pred["scores"][c]))
        if ref.get("boxes") == pred.get("boxes") and ref.get("labels") == pred.get("labels"):
            identical_frames += 1
    frames = min(len(reference), len(predictions))
    return {
        "frames": frames,
        "reference_boxes": ref_total,
        "matched": len(ious),
        "missing": missing,
        "extra": extra,
        "mean_iou": float(np.mean(ious)) if ious else None,
        "min_iou": float(np.min(ious)) if ious else None,
        "label_agreement": float(np.mean(label_same)) if label_same else None,
        "score_diff_mean": float(np.mean(score_diff)) if score_diff else None,
        "score_diff_max": float(np.max(score_diff)) if score_diff else None,
        "identical_frames": identical_frames,
    }


def compare_predictions(task: str, reference: Sequence[Dict[str, Any]],
                        predictions: Sequence[Dict[str, Any]]) -> Dict[str, Any]:
    if task == "classification":
        return compare_classifications(reference, predictions)
    if task in ("pose", "segmentation"):
        from .dense_diff import compare_masks, compare_poses

        return (compare_poses if task == "pose" else compare_masks)(reference, predictions)
    return compare_detections(reference, predictions)


def summary_line(raw: Optional[Dict[str, Any]], task_diff: Optional[Dict[str, Any]]) -> str:
    """One line for the tables: the figures a reader checks first."""
    parts = []
    if raw:
        parts.append("max abs %.3g, mean abs %.3g, cos %.6f" % (raw["max_abs"], raw["mean_abs"],
                                                                  raw["cosine_min"] if raw["cosine_min"] is not None else math.nan))
    if task_diff and "top1_agreement" in task_diff and task_diff["top1_agreement"] is not None:
        parts.append("top-1 %.0f%%, top-5 %.0f%%" % (100 * task_diff["top1_agreement"], 100 * task_diff["top5_agreement"]))
    elif task_diff and "pck" in task_diff:
        parts.append("keypoints %s px mean, PCK@0.05 %s" % (
            "-" if task_diff["px_error_mean"] is None else "%.2f" % task_diff["px_error_mean"],
            "-" if task_diff["pck"] is None else "%.0f%%" % (100 * task_diff["pck"])))
    elif task_diff and "area_change_max" in task_diff:
        parts.append("mask IoU %s" % ("-" if task_diff["mean_iou"] is None else "%.4f" % task_diff["mean_iou"]))
    elif task_diff and "matched" in task_diff:
        parts.append("%d matched, %d missing, %d extra" % (task_diff["matched"], task_diff["missing"], task_diff["extra"]))
    return "; ".join(parts) or "-"
