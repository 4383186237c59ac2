"""Annotated images saved under their own file names in the run folder, each at its own size (like `yolo predict`)."""

import os
from typing import Sequence

import cv2
import numpy as np

from ...errors import OutputError
from .base import Sink


class ImageFilesSink(Sink):
    """Frame i of an image source is written as out_dir/<basename of files[i]>; the input's extension is kept
    (OpenCV picks the encoder from it). Writing into the folder the image came from is refused."""

    def __init__(self, out_dir: str, files: Sequence[str]):
        self.out_dir = out_dir
        self.files = files  # the source's list, filled when it opens
        self.written = 0

    def path_for(self, frame_index: int) -> str:
        return os.path.join(self.out_dir, os.path.basename(self.files[frame_index]))

    def write(self, image_bgr: np.ndarray, frame_index: int) -> None:
        path = self.path_for(frame_index)
        if os.path.abspath(path) == os.path.abspath(self.files[frame_index]):
            raise OutputError("the annotated %s would overwrite its input; choose another --out folder" % path)
        try:
            ok = cv2.imwrite(path, image_bgr)
        except cv2.error as e:
            raise OutputError("cannot write the annotated image %s (%s); check the folder" % (path, e)) from e
        if not ok:
            raise OutputError("cannot write the annotated image %s; check that the folder is writable" % path)
        self.written += 1
