"""torchvision's weights and builders for the built-in models, on every torchvision the app runs with: its weights
enums and `weights=` builders (0.13+), or for older releases (0.11 on JetPack 4.6, which has neither) the same files
and preprocessing described here and the `pretrained=` builders."""
import inspect
import os
from typing import Any, Dict, Tuple

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
_BASE = "https://download.pytorch.org/models/"
# enum name -> (its DEFAULT member, file, resize, crop); what torchvision 0.13+ says of each DEFAULT
_DEFAULTS = {
    "MobileNet_V2_Weights": ("IMAGENET1K_V2", "mobilenet_v2-7ebf99e0.pth", 232, 224),
    "AlexNet_Weights": ("IMAGENET1K_V1", "alexnet-owt-7be5be79.pth", 256, 224),
    "ResNet18_Weights": ("IMAGENET1K_V1", "resnet18-f37072fd.pth", 256, 224),
    "SSD300_VGG16_Weights": ("COCO_V1", "ssd300_vgg16_coco-b556d3b4.pth", None, None),
    "SSDLite320_MobileNet_V3_Large_Weights": ("COCO_V1", "ssdlite320_mobilenet_v3_large_coco-a79551df.pth", None, None),
}  # type: Dict[str, Tuple[str, str, Any, Any]]


class _Recipe:
    def __init__(self, resize: int, crop: int):
        self.resize_size, self.crop_size = [resize], [crop]
        self.mean, self.std = list(IMAGENET_MEAN), list(IMAGENET_STD)


class LegacyWeights:
    """The part of a torchvision weights enum member the adapters use: url, transforms(), get_state_dict()."""

    def __init__(self, enum_name: str):
        self.member, file_name, self._resize, self._crop = _DEFAULTS[enum_name]
        self.name = "%s.%s" % (enum_name, self.member)
        self.url = _BASE + file_name

    def __str__(self) -> str:
        return self.name

    def transforms(self) -> _Recipe:
        return _Recipe(self._resize, self._crop)

    def get_state_dict(self, progress: bool = False, check_hash: bool = False, weights_only: bool = True) -> Any:
        """Into torch.hub's cache (checked against the hash in its name where asked), then loaded tensors-only."""
        import torch.hub

        from ..safe_load import load_tensors

        path = os.path.join(torch.hub.get_dir(), "checkpoints", os.path.basename(self.url))
        if not os.path.isfile(path):
            os.makedirs(os.path.dirname(path), exist_ok=True)
            prefix = os.path.basename(self.url).rsplit("-", 1)[-1].split(".")[0] if check_hash else None
            torch.hub.download_url_to_file(self.url, path, hash_prefix=prefix, progress=progress)
        return load_tensors(path)


def default_weights(module: Any, enum_name: str) -> Any:
    """The DEFAULT member of torchvision's weights enum `enum_name` in `module`, or its LegacyWeights."""
    enum = getattr(module, enum_name, None)
    return enum.DEFAULT if enum is not None else LegacyWeights(enum_name)


def build(builder: Any, **kwargs: Any) -> Any:
    """builder(weights=None, [weights_backbone=None,] **kwargs): an untrained model; on torchvision before 0.13
    the same with pretrained=False (and pretrained_backbone=False). Told apart by the builder's signature: a wrong
    guess would build (and download) a pretrained backbone before failing."""
    if "weights" in inspect.signature(builder).parameters:
        return builder(weights=None, **kwargs)
    legacy = {"pretrained": False}
    if "weights_backbone" in kwargs:
        del kwargs["weights_backbone"]
        legacy["pretrained_backbone"] = False
    return builder(**dict(legacy, **kwargs))
