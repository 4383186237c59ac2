"""Recorded video replay: lossless by default, or paced at its frame rate (or its recorded timestamps)."""

import logging
import os
import re
import time
from typing import List, Optional, Tuple

from ..config import SourceConfig
from ..errors import SourceError
from ..files import special_kind
from .timestamps import read_sidecar
from ..types import Frame
from .base import Source

log = logging.getLogger(__name__)
# Consecutive failed reads tolerated before the frame count says the file is damaged beyond repair: FFmpeg skips
# to the next keyframe or intact packet, which takes one failed read per broken packet.
MAX_DAMAGED_READS = 250


def check_video_path(path: str) -> None:
    """SourceError naming the fix for a path that is no video file to open: missing, a folder, a pipe."""
    if not os.path.exists(path):
        raise SourceError("video file not found: %s; check the path (or use --source test:// for a synthetic "
                          "pattern)" % path)
    if os.path.isdir(path):
        raise SourceError("%s is a folder; pass it as the source to read its images" % path)
    kind = special_kind(path)
    # a FIFO or socket blocks in open, deaf to Ctrl-C; of the devices only a V4L2 camera (file:///dev/video0,
    # /dev/v4l/by-id/...) is a video
    if kind is not None and not (kind == "a character device"
                                 and re.match(r"^/dev/video\d+$", os.path.realpath(path))):
        raise SourceError("%s is %s, not a regular file; record the stream to a file first, or use --gst for a "
                          "live pipe" % (path, kind))


class VideoFileSource(Source):
    """A video file through OpenCV. `pace` turns it into a camera: frames come out at their recorded
    times and the pipeline applies latest-frame semantics (slow consumers drop frames)."""

    def __init__(self, spec, config: SourceConfig, buffers=None):
        super().__init__(buffers)
        self.path = spec.location
        self.is_live = bool(config.pace)
        self.decode_threads = int(config.decode_threads)
        self._cap = None
        self._first = None
        self._first_shape = None  # type: Optional[Tuple[int, ...]]  # the size of the buffers to decode into
        self._index = 0
        self._start = None  # type: Optional[float]
        self._origin_s = 0.0
        self._timestamps = None  # type: Optional[List[Tuple[int, float]]]
        self._frame_count = 0  # the container's frame count; 0 when unknown
        self.stop_reason = None  # type: Optional[str]
        self.skipped_frames = 0  # frames of the container never decoded (damage)

    def open(self) -> None:
        import cv2

        check_video_path(self.path)
        cap = self._open_capture(cv2)
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
        count = cap.get(cv2.CAP_PROP_FRAME_COUNT)
        self._frame_count = int(count) if count and count > 0 else 0
        self._timestamps = read_sidecar(self.path) or None
        if self._timestamps:
            log.info("replaying %s with the %d capture timestamps of its sidecar", self.path, len(self._timestamps))
        self._index = 0
        self._origin_s = self._frame_time(0)[1]  # paced replay: times are relative to the first frame's
        # Paced replay's clock starts at the first read: a model loading between open() and the capture thread's
        # start would otherwise come out as a burst of frames overwritten (dropped) to catch up.
        self._start = None

    def _open_capture(self, cv2):
        """OpenCV's capture of the file; with decode_threads, FFmpeg's decoder limited to that many threads (it
        takes one per core otherwise: with many sources, far more threads than cores)."""
        if self.decode_threads < 0:
            raise SourceError("%s: decode_threads must be >= 0 (0 = OpenCV's choice), got %d"
                              % (self.path, self.decode_threads))
        if self.decode_threads == 0:
            return cv2.VideoCapture(self.path)
        if not hasattr(cv2, "CAP_PROP_N_THREADS"):  # OpenCV < 4.7 (JetPack 5 ships 4.5): no such setting
            log.warning("%s: this OpenCV (%s) cannot limit decoder threads; decode_threads ignored", self.path,
                        cv2.__version__)
            return cv2.VideoCapture(self.path)
        cap = cv2.VideoCapture(self.path, cv2.CAP_FFMPEG, [cv2.CAP_PROP_N_THREADS, self.decode_threads])
        if cap.isOpened():
            return cap
        log.warning("%s: FFmpeg did not open it with decode_threads; opened with OpenCV's choice", self.path)
        return cv2.VideoCapture(self.path)

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
                image = self._resynchronise()
                if image is None:
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
        return self._frame(image, index, timestamp_s)

    def _frame(self, image, index: int, timestamp_s: float) -> Frame:
        return Frame(image, index, timestamp_s, time.perf_counter())

    def _resynchronise(self):
        """After a failed read: the end when the container's frames are all read, else damage: read on past it
        (counted in skipped_frames); None, with the frame named in stop_reason, when nothing decodes any more."""
        position = self._index
        if not self._frame_count or position >= self._frame_count:
            self.stop_reason = self.stop_reason or "end of stream"
            return None
        log.warning("%s: frame %d of %d does not decode; reading on past the damage", self.path, position,
                    self._frame_count)
        for _ in range(MAX_DAMAGED_READS):
            ok, image = self._read_next()
            if ok and image is not None:
                return image
        # OpenCV drops some damaged frames without a failed read, so here the damage may as well be at the end
        # (a recording cut short) as before it: the stream stops, the summary says where and how many were lost.
        self.skipped_frames = self._frame_count - position
        self.stop_reason = ("decode error: %d of %d frames lost (a damaged or cut-short file); nothing decodes "
                            "after frame %d" % (self.skipped_frames, self._frame_count, position - 1))
        log.warning("%s: %s; the file is damaged or cut short", self.path, self.stop_reason)
        return None

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
        # only a stream read to its end can tell frames were lost; a run stopped early (--max-frames, Ctrl-C) did not
        if self._cap is not None and self._frame_count and self.stop_reason == "end of stream":
            self.skipped_frames = max(0, self._frame_count - self._index)
            if self.skipped_frames:
                self.stop_reason = "end of stream; %d of %d frames did not decode (damaged file)" % (
                    self.skipped_frames, self._frame_count)
                log.warning("%s: %s", self.path, self.stop_reason)
        if self._cap is not None:
            self._cap.release()
            self._cap = None

    def describe(self) -> str:
        return "%s (%s)" % (self.path, "paced" if self.is_live else "lossless replay")
