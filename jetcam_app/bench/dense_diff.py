"""How far a backend's poses and masks drift from the reference's: keypoint error in pixels, PCK@0.05, mask IoU."""

from typing import Any, Dict, List, Sequence

import numpy as np

from ..dense_results import rle_decode

PCK_FRACTION = 0.05  # a keypoint is correct within 5 % of the larger side of the reference person's box
KEYPOINT_SCORE = 0.3  # the reference's keypoints under this score are not judged (the overlay leaves them out too)


def compare_poses(reference: Sequence[Dict[str, Any]], predictions: Sequence[Dict[str, Any]],
                  min_score: float = KEYPOINT_SCORE) -> Dict[str, Any]:
    """Per person (in order; single-person models give one), over the reference's keypoints scoring >= min_score:
    the pixel distance to this backend's, PCK@0.05 (the share within PCK_FRACTION of the reference box's larger
    side) and the score difference of every keypoint."""
    errors, correct, score_diff = [], [], []  # type: List[float], List[float], List[float]
    people = missing = 0
    for ref, pred in zip(reference, predictions):
        ref_people, got_people = ref.get("poses", []), pred.get("poses", [])
        missing += max(0, len(ref_people) - len(got_people))
        for ref_person, person in zip(ref_people, got_people):
            people += 1
            a = np.asarray(ref_person["keypoints"], np.float64).reshape(-1, 3)
            b = np.asarray(person["keypoints"], np.float64).reshape(-1, 3)
            score_diff += np.abs(a[:, 2] - b[:, 2]).tolist()
            x1, y1, x2, y2 = ref_person.get("box", [0, 0, 0, 0])
            size = max(x2 - x1, y2 - y1)
            judged = a[:, 2] >= min_score
            distance = np.hypot(*(a[judged, :2] - b[judged, :2]).T) if judged.any() else np.zeros(0)
            errors += distance.tolist()
            if size > 0:
                correct += (distance <= PCK_FRACTION * size).astype(np.float64).tolist()
    return {
        "frames": min(len(reference), len(predictions)),
        "people": people,
        "missing": missing,
        "keypoints": len(errors),
        "px_error_mean": float(np.mean(errors)) if errors else None,
        "px_error_max": float(np.max(errors)) if errors else None,
        "pck": float(np.mean(correct)) if correct else None,
        "score_diff_max": float(np.max(score_diff)) if score_diff else None,
    }


def _mask_of(record: Dict[str, Any]) -> np.ndarray:
    mask = record.get("mask") or {}
    size = mask.get("size") or [0, 0]
    return rle_decode(mask.get("counts") or [int(size[0]) * int(size[1])], (int(size[0]), int(size[1])))


def compare_masks(reference: Sequence[Dict[str, Any]], predictions: Sequence[Dict[str, Any]]) -> Dict[str, Any]:
    """Mask IoU per frame (two empty masks agree: 1.0), from the run-length encodings in predictions.jsonl, and the
    area's relative change."""
    ious, area_change = [], []  # type: List[float], List[float]
    for ref, pred in zip(reference, predictions):
        a, b = _mask_of(ref), _mask_of(pred)
        if a.shape != b.shape:
            ious.append(0.0)
            continue
        union = int(np.count_nonzero(a | b))
        ious.append(float(np.count_nonzero(a & b)) / union if union else 1.0)
        ref_area = int(np.count_nonzero(a))
        if ref_area:
            area_change.append(abs(int(np.count_nonzero(b)) - ref_area) / float(ref_area))
    return {
        "frames": len(ious),
        "mean_iou": float(np.mean(ious)) if ious else None,
        "min_iou": float(np.min(ious)) if ious else None,
        "area_change_max": float(np.max(area_change)) if area_change else None,
    }
