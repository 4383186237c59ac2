"""Drawing pose and mask results in place: a COCO skeleton per person, a translucent person mask with its outline.

Sizes follow the frame height, like the boxes' outlines: a limb is 2 px at 240 lines and 8 px at 2160, drawn over a
black edge so it reads on light and dark backgrounds alike.
"""

from typing import Tuple

import cv2
import numpy as np

from ..dense_results import COCO_SKELETON, Mask, Poses

LEFT = (255, 160, 0)  # BGR: the person's left side blue, right side orange, the face and trunk links green
RIGHT = (0, 140, 255)
CENTRE = (60, 220, 60)
JOINT = (255, 255, 255)
EDGE = (0, 0, 0)
MASK_COLOUR = (200, 60, 255)
MASK_ALPHA = 0.4


def limb_width(height: int) -> int:
    return max(2, int(round(height / 270.0)))


def _side(a: int, b: int) -> Tuple[int, int, int]:
    """COCO numbers left joints odd and right ones even (the nose is 0)."""
    if a and b and a % 2 == 1 and b % 2 == 1:
        return LEFT
    if a and b and a % 2 == 0 and b % 2 == 0:
        return RIGHT
    return CENTRE


def draw_poses(image: np.ndarray, poses: Poses) -> None:
    """Limbs between joints both over the poses' threshold, then the joints: dots with a black ring."""
    if not len(poses):
        return
    h = image.shape[0]
    width = limb_width(h)
    radius = width + 1
    for person in poses.keypoints:
        seen = person[:, 2] >= poses.threshold
        points = np.rint(person[:, :2]).astype(np.int32)
        limbs = [(a, b) for a, b in COCO_SKELETON if a < len(person) and b < len(person) and seen[a] and seen[b]]
        for a, b in limbs:
            cv2.line(image, tuple(points[a].tolist()), tuple(points[b].tolist()), EDGE, width + 2, cv2.LINE_AA)
        for a, b in limbs:
            cv2.line(image, tuple(points[a].tolist()), tuple(points[b].tolist()), _side(a, b), width, cv2.LINE_AA)
        for index in np.flatnonzero(seen).tolist():
            centre = tuple(points[index].tolist())
            cv2.circle(image, centre, radius + 1, EDGE, -1, cv2.LINE_AA)
            cv2.circle(image, centre, radius, JOINT if index else CENTRE, -1, cv2.LINE_AA)


def draw_mask(image: np.ndarray, mask: Mask) -> None:
    """The mask's pixels blended with the mask colour (only inside its box: the rest of a 4K frame is not touched),
    and its outline at full strength, so a mask over a similar colour still shows its edge."""
    box = mask.box()
    if box is None or mask.mask.shape[:2] != image.shape[:2]:
        return
    x1, y1, x2, y2 = box
    region = image[y1:y2, x1:x2]
    inside = mask.mask[y1:y2, x1:x2]
    tint = np.empty_like(region)
    tint[...] = MASK_COLOUR
    blended = cv2.addWeighted(region, 1.0 - MASK_ALPHA, tint, MASK_ALPHA, 0.0)
    region[inside] = blended[inside]
    contours, _ = cv2.findContours(inside.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)[-2:]
    cv2.drawContours(region, contours, -1, MASK_COLOUR, max(1, limb_width(image.shape[0]) // 2), cv2.LINE_AA)
