"""Recorded video replay: lossless by default, or paced at its frame rate (or its recorded timestamps)."""
from __future__ import annotations

import logging
import os
import time
from typing import List, Optional, Tuple

from ..config import SourceConfig
from ..errors import SourceError
from .timestamps import read_sidecar
from ..types import Frame
from .base import Source

log = logging.getLogger(__name__)


class VideoFileSource(Source):
    """A video file through OpenCV. `pace` turns it into a camera: frames come out at their recorded
    times and the pipeline applies latest-frame semantics (slow consumers drop frames)."""

    def __init__(self, spec, config: SourceConfig, buffers=None):
        super().__init__(buffers)
        self.path = spec.location
        self.is_live = bool(config.pace)
        self._cap = None
        self._first = None
        self._first_shape = None  # type: Optional[Tuple[int, ...]]  # the size of the buffers to decode into
        self._index = 0
        self._start = None  # type: Optional[float]
        self._origin_s = 0.0
        self._timestamps = None  # type: Optional[List[Tuple[int, float]]]

    def open(self) -> None:
        import cv2

        if not os.path.exists(self.path):
            raise SourceError("video file not found: %s; check the path (or use --source test:// for a synthetic "
                              "pattern)" % self.path)
        if os.path.isdir(self.path):
            raise SourceError("%s is a folder; pass it as the source to read its images" % self.path)
        cap = cv2.VideoCapture(self.path)
        ok, first = cap.read() if cap.isOpened() else (False, None)
        if not ok or first is None:
            cap.release()
            raise SourceError("%s is not a video OpenCV can decode; give an .mp4/.avi/.mkv file, an image or a "
                              "folder of images" % self.path)
        self._cap = cap
        self._first = first
        fps = cap.get(cv2.CAP_PROP_FPS)
        self.nominal_fps = fps if fps and fps > 0 else None
        self.frame_size = (first.shape[1], first.shape[0])
        count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        self.frame_count = count if count > 0 else None
        self._first_shape = first.shape
        self._timestamps = read_sidecar(self.path) or None
        if self._timestamps:
            log.info("replaying %s with the %d capture timestamps of its sidecar", self.path, len(self._timestamps))
        self._index = 0
        self._origin_s = self._frame_time(0)[1]  # paced replay: times are relative to the first frame's
        # Paced replay's clock starts at the first read: a model loading between open() and the capture thread's
        # start would otherwise come out as a burst of frames overwritten (dropped) to catch up.
        self._start = None

    def _frame_time(self, position: int) -> Tuple[int, float]:
        if self._timestamps is not None and position < len(self._timestamps):
            return self._timestamps[position]
        return position, position / (self.nominal_fps or 30.0)

    def read(self, timeout_s: float = 1.0) -> Optional[Frame]:
        if self._cap is None:
            return None
        if self._first is not None:
            image, self._first = self._first, None
        else:
            ok, image = self._read_next()
            if not ok:
                return None
        position = self._index
        self._index += 1
        index, timestamp_s = self._frame_time(position)
        if self.is_live:
            if self._start is None:
                self._start = time.perf_counter()
            delay = self._start + (timestamp_s - self._origin_s) - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
        return Frame(image, index, timestamp_s, time.perf_counter())

    def _read_next(self):
        """cap.read(), into a buffer of the pipeline's pool where it has one (see host_buffers.py)."""
        buffer = self.buffers.take(self._first_shape) if self.buffers is not None else None
        if buffer is None:
            return self._cap.read()
        ok, image = self._cap.read(buffer)
        if image is not buffer:  # the video changed size mid-stream: OpenCV allocated anew
            self.buffers.forget(buffer)
            if ok and image is not None:
                self._first_shape = image.shape  # the buffers taken from now on have the new size
        return ok, image

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None

    def describe(self) -> str:
        return "%s (%s)" % (self.path, "paced" if self.is_live else "lossless replay")
