"""Class names: COCO's 91-id map (torchvision detectors), COCO's 80 contiguous classes (NanoDet), ImageNet's 1000."""
from __future__ import annotations

from typing import List

from torchvision.models._meta import _COCO_CATEGORIES, _IMAGENET_CATEGORIES

# torchvision detectors use the original 91 COCO ids: index 0 is background, 'N/A' marks unused ids.
COCO_91 = list(_COCO_CATEGORIES)  # type: List[str]
# NanoDet and most modern detectors use the 80 classes in order, without the gaps.
COCO_80 = [name for name in COCO_91 if name not in ("__background__", "N/A")]
IMAGENET_1000 = list(_IMAGENET_CATEGORIES)  # type: List[str]

assert len(COCO_80) == 80 and len(IMAGENET_1000) == 1000
