"""Render a pose skeleton and a person mask on scikit-image's cameraman photo, for docs/screenshots/:

    python scripts/pose_screenshots.py docs/screenshots

The photo cropped to frames of 320x240, 1280x720 and 3840x2160; MoveNet Lightning and Selfie run on each frame as
the app runs them (CPU), the skeleton drawn over the mask. The 4K PNG is saved at
half size to stay small (--full: at full size); frames above 320x240 are JPEGs.
"""

import argparse
import os
import sys

import cv2
import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from jetcam_app.config import load_config  # noqa: E402
from jetcam_app.inference.adapters.movenet import MoveNetAdapter  # noqa: E402
from jetcam_app.inference.adapters.selfie import SelfieAdapter  # noqa: E402
from jetcam_app.output.overlay import Overlay  # noqa: E402

SIZES = ((320, 240), (1280, 720), (3840, 2160))


def scene(width: int, height: int) -> np.ndarray:
    """The cameraman cropped to the frame's aspect ratio (from the top: his head stays in) and scaled to it."""
    from skimage import data

    photo = np.stack([data.camera()] * 3, -1)
    h, w = photo.shape[:2]
    crop_h = min(h, int(round(w * height / float(width))))
    top = min(h - crop_h, 40)
    return cv2.resize(photo[top:top + crop_h], (width, height), interpolation=cv2.INTER_AREA)


def run(adapter, network, image):
    with torch.no_grad():
        return adapter.postprocess(network(adapter.preprocess(image, torch.device("cpu"), torch.float32)),
                                   image.shape[:2])


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("out_dir")
    p.add_argument("--full", action="store_true", help="save the 4K frame at full size")
    args = p.parse_args()
    pose = MoveNetAdapter(load_config(overrides={"model.name": "movenet", "model.score_threshold": 0.3}).model)
    mask = SelfieAdapter(load_config(overrides={"model.name": "selfie"}).model)
    pose_net, mask_net = pose.build_network(), mask.build_network()
    overlay = Overlay()
    os.makedirs(args.out_dir, exist_ok=True)
    for width, height in SIZES:
        frame = scene(width, height)
        drawn = frame.copy()
        overlay.annotate(drawn, run(mask, mask_net, frame))
        overlay.annotate(drawn, run(pose, pose_net, frame))
        if width > 2000 and not args.full:
            drawn = cv2.resize(drawn, (width // 2, height // 2), interpolation=cv2.INTER_AREA)
        # the grass makes big PNGs (1.1 MB at 720p): JPEG above 320x240
        path = os.path.join(args.out_dir, "pose_mask_%dx%d.%s" % (width, height, "png" if width <= 320 else "jpg"))
        cv2.imwrite(path, drawn, [int(cv2.IMWRITE_JPEG_QUALITY), 88] if path.endswith(".jpg") else [])
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
