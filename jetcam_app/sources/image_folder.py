"""One image or a folder of images (sorted by name), read as a lossless sequence of frames."""

import logging
import os
import time
from typing import Optional

from ..config import SourceConfig
from ..errors import SourceError
from ..types import Frame
from .base import Source
from .spec import IMAGE_EXTENSIONS

log = logging.getLogger(__name__)


class ImageFolderSource(Source):
    still_images = True

    def __init__(self, spec, config: SourceConfig, buffers=None):
        super().__init__(buffers)
        self.path = spec.location
        self.files = []
        self._index = 0
        self.skipped_frames = 0  # unreadable images of a folder, skipped with a warning
        self.stop_reason = None  # type: Optional[str]

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
        """The next readable image; in a folder an unreadable one is skipped (warned, counted), a single image
        that cannot be read is an error."""
        import cv2

        while self._index < len(self.files):
            path = self.files[self._index]
            index = self._index
            self._index += 1
            image = cv2.imread(path, cv2.IMREAD_COLOR)
            if image is None:
                if len(self.files) == 1:
                    raise SourceError("%s is not an image OpenCV can read; convert it or pass another file" % path)
                self.skipped_frames += 1
                log.warning("skipping %s: not an image OpenCV can read (%d skipped so far)", path, self.skipped_frames)
                continue
            self.frame_size = (image.shape[1], image.shape[0])
            return Frame(image, index, float(index), time.perf_counter(), os.path.basename(path))
        if self.stop_reason is None:
            self.stop_reason = "end of stream" + ("; %d unreadable image(s) skipped" % self.skipped_frames
                                                  if self.skipped_frames else "")
        return None

    def describe(self) -> str:
        return "%s (%d images)" % (self.path, len(self.files))
