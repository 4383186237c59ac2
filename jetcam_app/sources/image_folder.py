"""One image or a folder of images (sorted by name), read as a lossless sequence of frames."""

import logging
import os
import time
from typing import Optional

from ..config import SourceConfig
from ..errors import ConfigError, SourceError
from ..files import FileTooLargeError, NotRegularFileError, read_regular, special_kind
from ..types import Frame
from .base import Source
from .image_header import read_header
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
        self.max_image_mp = float(config.max_image_mp)
        if not self.max_image_mp > 0:  # NaN too
            raise ConfigError("source.max_image_mp must be > 0 (megapixels), got %s" % self.max_image_mp)
        self._first = None  # a lone image, read by open() so that its errors come before the model loads

    def open(self) -> None:
        self._first = None
        if os.path.isdir(self.path):
            names = os.listdir(self.path)
            self.files = sorted(os.path.join(self.path, name) for name in names
                                if name.lower().endswith(IMAGE_EXTENSIONS))
            gifs = sum(1 for name in names if name.lower().endswith(".gif"))
            note = "; %d .gif file(s) there are not read (OpenCV reads no GIF): convert them to PNG" % gifs
            if not self.files:
                raise SourceError("folder %s holds no images (%s)%s; put images there or pass a video file"
                                  % (self.path, ", ".join(IMAGE_EXTENSIONS), note if gifs else ""))
            if gifs:
                log.warning("folder %s%s", self.path, note)
        elif os.path.isfile(self.path):
            self.files = [self.path]
        elif special_kind(self.path) is not None:
            raise SourceError("%s is %s, not a regular file; pass an image file or a folder of images"
                              % (self.path, special_kind(self.path)))
        else:
            raise SourceError("image not found: %s; check the path" % self.path)
        self._index = 0
        self.frame_count = len(self.files)
        if len(self.files) == 1:
            image, problem = self._load(self.files[0])
            if image is None:
                raise SourceError("%s is %s" % (self.files[0], problem))
            self._first = image

    def read(self, timeout_s: float = 1.0) -> Optional[Frame]:
        """The next readable image; in a folder an unreadable one is skipped (warned, counted), a single image
        that cannot be read is an error (raised by open())."""
        while self._index < len(self.files):
            path = self.files[self._index]
            index = self._index
            self._index += 1
            image, problem = (self._first, None) if self._first is not None else self._load(path)
            self._first = None
            if image is None:
                self.skipped_frames += 1
                log.warning("skipped %s: %s (%d skipped so far)", os.path.basename(path), problem,
                            self.skipped_frames)
                continue
            self.frame_size = (image.shape[1], image.shape[0])
            return Frame(image, index, float(index), time.perf_counter(), os.path.basename(path))
        if self.stop_reason is None:
            self.stop_reason = "end of stream" + ("; %d unreadable image(s) skipped" % self.skipped_frames
                                                  if self.skipped_frames else "")
        return None

    def _load(self, path: str):
        """(image, None), or (None, what is wrong with it: "a FIFO, not a regular file", too many pixels, cut short,
        not an image OpenCV can read). The bytes are read here, so nothing but a regular file is opened and the
        header is checked before OpenCV decodes a pixel."""
        import cv2
        import numpy as np

        # the largest file an image within the cap can be: 16-bit RGBA uncompressed, plus room for metadata
        max_bytes = int(self.max_image_mp * 1e6 * 8) + (16 << 20)
        try:
            data = read_regular(path, max_bytes)
        except NotRegularFileError as e:
            return None, "%s, not a regular file" % e.kind
        except FileTooLargeError as e:
            return None, ("%d MB, more than any image within source.max_image_mp = %g MP; raise that key to read it"
                          % (e.size >> 20, self.max_image_mp))
        except OSError as e:
            return None, "unreadable (%s)" % (e.strerror or e)
        header = read_header(data)
        if header is not None and header.size_wh is not None:
            width, height = header.size_wh
            if width * height > self.max_image_mp * 1e6:
                return None, ("%dx%d pixels (%.3g MP), over source.max_image_mp = %g MP; raise that key to read it"
                              % (width, height, width * height / 1e6, self.max_image_mp))
        if header is not None and header.missing_end is not None:
            return None, "cut short (no %s): a damaged or partly copied file; copy it again" % header.missing_end
        image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR) if data else None
        if image is None:
            return None, "not an image OpenCV can read; convert it or pass another file"
        return image, None

    def describe(self) -> str:
        return "%s (%d images)" % (self.path, len(self.files))
