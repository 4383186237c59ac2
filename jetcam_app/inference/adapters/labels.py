"""Class names: COCO's 91-id map (torchvision detectors), COCO's 80 contiguous classes (NanoDet), ImageNet's 1000.

Read from the package's own lists (torchvision's, written out once): torchvision keeps them in a private module
that its older releases (0.11 on JetPack 4.6) do not have."""
import os
from typing import List

_HERE = os.path.dirname(os.path.abspath(__file__))


def _names(file_name: str) -> List[str]:
    with open(os.path.join(_HERE, file_name), encoding="utf-8") as f:
        return f.read().splitlines()


# torchvision detectors use the original 91 COCO ids: index 0 is background, 'N/A' marks unused ids.
COCO_91 = _names("coco_91.txt")
# NanoDet and most modern detectors use the 80 classes in order, without the gaps.
COCO_80 = [name for name in COCO_91 if name not in ("__background__", "N/A")]
IMAGENET_1000 = _names("imagenet_1000.txt")

assert len(COCO_91) == 91 and len(COCO_80) == 80 and len(IMAGENET_1000) == 1000
