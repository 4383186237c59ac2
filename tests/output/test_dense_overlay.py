"""Skeletons and masks drawn by the overlay: joints under the threshold left out, sizes that follow the frame, the
mask tinted inside and untouched outside."""

import numpy as np
import pytest

from jetcam_app.dense_results import COCO_KEYPOINTS, Mask, Poses
from jetcam_app.output.dense_overlay import CENTRE, JOINT, MASK_ALPHA, MASK_COLOUR, limb_width
from jetcam_app.output.overlay import Overlay


def person(width, height, weak=()):
    """17 keypoints spread over the middle of the frame (a stick figure); the `weak` ones scored under the threshold
    and put in the top-left corner, where nothing else is drawn."""
    rng = np.random.RandomState(0)
    xy = rng.uniform(0.2, 0.8, (17, 2)) * (width, height)
    scores = np.full((17, 1), 0.9)
    for name in weak:
        scores[COCO_KEYPOINTS.index(name)] = 0.1
        xy[COCO_KEYPOINTS.index(name)] = (0.05 * width, 0.05 * height)
    return Poses(np.concatenate((xy, scores), 1)[None].astype(np.float32), threshold=0.3)


@pytest.mark.parametrize("width, height", [(320, 240), (1280, 720), (3840, 2160)])
def test_joints_drawn_and_weak_ones_left_out(width, height):
    poses = person(width, height, weak=("left_wrist",))
    image = np.zeros((height, width, 3), np.uint8)
    Overlay().annotate(image, poses)
    for index, (x, y, score) in enumerate(poses.keypoints[0]):
        if score >= 0.3:
            assert tuple(image[int(round(y)), int(round(x))]) in (JOINT, CENTRE), COCO_KEYPOINTS[index]
    # the weak wrist: no dot, and no limb to it from the elbow
    corner = image[:int(0.15 * height), :int(0.15 * width)]
    assert not corner.any()
    assert limb_width(240) == 2 and limb_width(720) == 3 and limb_width(2160) == 8


def test_no_joint_over_the_threshold_draws_nothing():
    poses = person(640, 480)
    poses.keypoints[..., 2] = 0.05
    image = np.zeros((480, 640, 3), np.uint8)
    Overlay().annotate(image, poses)
    assert not image.any()


def test_mask_tinted_inside_untouched_outside():
    image = np.full((240, 320, 3), 100, np.uint8)
    mask = np.zeros((240, 320), bool)
    mask[60:180, 100:200] = True
    Overlay().annotate(image, Mask(mask))
    want = np.rint(100 * (1 - MASK_ALPHA) + np.array(MASK_COLOUR) * MASK_ALPHA)
    assert np.abs(image[120, 150].astype(int) - want).max() <= 1  # inside, away from the outline
    outside = ~mask
    outside[55:185, 95:205] = False  # the outline may spill a pixel or two
    assert (image[outside] == 100).all()
    assert (image[60, 100:200] != 100).any()  # the outline at full colour on the edge


def test_mask_of_another_size_or_empty_is_not_drawn():
    image = np.full((240, 320, 3), 100, np.uint8)
    Overlay().annotate(image, Mask(np.ones((120, 160), bool)))
    Overlay().annotate(image, Mask(np.zeros((240, 320), bool)))
    assert (image == 100).all()
