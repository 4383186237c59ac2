"""--save-masks: each frame's person mask as a PNG (255 = person) in the run folder's masks/, named by its source."""

import os
import re

import cv2
import numpy as np

from ..dense_results import Mask
from ..errors import OutputError


def mask_stem(source_name: str) -> str:
    """A file-name-safe stem of a source's name (a path, a URI, an image's file name)."""
    stem = os.path.splitext(os.path.basename(str(source_name).rstrip("/")))[0] or "source"
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", stem)


class MaskFiles:
    """masks/<source>_<frame>.png per processed frame of a segmentation model; lossless, one byte a pixel."""

    def __init__(self, folder: str):
        self.folder = folder
        self.written = 0
        try:
            os.makedirs(folder, exist_ok=True)
        except OSError as e:
            raise OutputError("cannot create the mask folder %s (%s); choose a writable --out DIR"
                              % (folder, e.strerror or e)) from e

    def write(self, source_name: str, frame_index: int, mask: Mask) -> str:
        path = os.path.join(self.folder, "%s_%06d.png" % (mask_stem(source_name), int(frame_index)))
        if not cv2.imwrite(path, mask.mask.astype(np.uint8) * 255):
            raise OutputError("cannot write the mask %s; check the free space of %s" % (path, self.folder))
        self.written += 1
        return path
