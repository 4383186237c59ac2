"""One image or a folder of images (sorted by name), read as a lossless sequence of frames."""
from __future__ import annotations

import os
import time
from typing import Optional

from ..config import SourceConfig
from ..errors import SourceError
from ..types import Frame
from .base import Source
from .spec import IMAGE_EXTENSIONS


class ImageFolderSource(Source):
    still_images = True

    def __init__(self, spec, config: SourceConfig, buffers=None):
        super().__init__(buffers)
        self.path = spec.location
        self.files = []
        self._index = 0

    def open(self) -> None:
        if os.path.isdir(self.path):
            self.files = sorted(os.path.join(self.path, name) for name in os.listdir(self.path)
                                if name.lower().endswith(IMAGE_EXTENSIONS))
            if not self.files:
                raise SourceError("folder %s holds no images (%s); put images there or pass a video file"
                                  % (self.path, ", ".join(IMAGE_EXTENSIONS)))
        elif os.path.isfile(self.path):
            self.files = [self.path]
        else:
            raise SourceError("image not found: %s; check the path" % self.path)
        self._index = 0
        self.frame_count = len(self.files)

    def read(self, timeout_s: float = 1.0) -> Optional[Frame]:
        import cv2

        if self._index >= len(self.files):
            return None
        path = self.files[self._index]
        image = cv2.imread(path, cv2.IMREAD_COLOR)
        if image is None:
            raise SourceError("%s is not an image OpenCV can read; remove it from the folder or convert it" % path)
        index = self._index
        self._index += 1
        self.frame_size = (image.shape[1], image.shape[0])
        return Frame(image, index, float(index), time.perf_counter(), os.path.basename(path))

    def describe(self) -> str:
        return "%s (%d images)" % (self.path, len(self.files))
