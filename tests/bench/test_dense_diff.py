"""The bench's pose and mask comparisons on predictions.jsonl records: pixel error, PCK@0.05, mask IoU."""

import numpy as np
import pytest

from jetcam_app.bench.dense_diff import compare_masks, compare_poses
from jetcam_app.bench.numeric_diff import compare_predictions, summary_line
from jetcam_app.dense_results import Mask, Poses


def pose_record(keypoints):
    return Poses(np.asarray(keypoints, np.float32)[None], threshold=0.3).to_json()


def person(dx=0.0, dy=0.0, scores=0.9):
    xy = np.stack([np.linspace(100, 300, 17), np.linspace(50, 250, 17)], 1)  # a 200 x 200 px box
    return np.concatenate([xy + (dx, dy), np.full((17, 1), scores)], 1)


@pytest.mark.parametrize("dx, dy, error, pck", [
    (0, 0, 0.0, 1.0),
    (6, 8, 10.0, 1.0),  # 10 px, the PCK radius is 5 % of 200 px: just inside
    (9, 12, 15.0, 0.0),
])
def test_keypoint_error_and_pck(dx, dy, error, pck):
    diff = compare_poses([pose_record(person())], [pose_record(person(dx, dy))])
    assert diff["keypoints"] == 17 and diff["people"] == 1
    assert diff["px_error_mean"] == pytest.approx(error, abs=0.02) and diff["pck"] == pck


def test_weak_reference_keypoints_are_not_judged_and_missing_people_counted():
    weak = person(scores=0.1)
    weak[:3, 2] = 0.9
    diff = compare_poses([pose_record(weak), pose_record(person())], [pose_record(person(50, 0)), {"poses": []}])
    assert diff["keypoints"] == 3 and diff["missing"] == 1


def mask_record(mask):
    return Mask(np.asarray(mask, bool)).to_json()


def test_mask_iou_from_the_rle():
    a = np.zeros((40, 60), bool)
    a[10:30, 10:30] = True
    b = np.zeros_like(a)
    b[10:30, 20:40] = True  # half overlaps: 200 / 600
    diff = compare_masks([mask_record(a), mask_record(np.zeros_like(a))], [mask_record(b), mask_record(np.zeros_like(a))])
    assert diff["frames"] == 2 and diff["min_iou"] == pytest.approx(1 / 3.0) and diff["mean_iou"] == pytest.approx(2 / 3.0)
    assert diff["area_change_max"] == 0.0


def test_dispatch_and_summary_line():
    poses = compare_predictions("pose", [pose_record(person())], [pose_record(person(3, 4))])
    assert "5.00 px mean, PCK@0.05 100%" in summary_line(None, poses)
    masks = compare_predictions("segmentation", [mask_record(np.ones((4, 4)))], [mask_record(np.ones((4, 4)))])
    assert "mask IoU 1.0000" in summary_line(None, masks)
