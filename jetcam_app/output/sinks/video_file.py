"""The annotated mp4, written by a thread of its own so the pipeline never waits for the encoder."""

import logging
import os
import queue
import threading
import time
from typing import Optional, Tuple

import cv2
import numpy as np

from ...errors import OutputError
from ..diskspace import disk_full_error, room_for
from ..video.fmp4 import Fmp4Writer, VideoSettings, av_module, describe_recording
from ..video.gst_recorder import GstWriter, hardware_encoder
from .base import Sink

log = logging.getLogger(__name__)

_SENTINEL = object()
MIN_ENCODE_SIDE = 2  # FFmpeg's mpeg4 / h264 encoders refuse a 1-pixel side
RECORD_HEADROOM_BYTES = 1 << 20  # left free on the disk: the encoder's buffers and the mp4 header
INDEX_BYTES_PER_FRAME = 64  # the mp4 index (moov) holds a few tables of 4-8 bytes per frame


class VideoFileSink(Sink):
    """An mp4 (mp4v) written by its own thread through a bounded queue. Lossless: write() waits for room,
    re-checking the closed flag; close() drains the queue and releases the writer so the file always plays.

    Frames of another size are resized to `frame_size` (cv2.VideoWriter would silently drop them). An odd side is
    padded to even with a copy of the last row or column: OpenCV's writers (mp4v, H.264: 4:2:0 chroma) would
    silently crop it, and a recording of the input must hold every pixel of it (`padded_to`, logged once).
    `copy=True` queues a copy, so the caller may keep drawing on or reusing its array."""

    def __init__(self, path: str, fps: float, frame_size: Tuple[int, int], queue_size: int = 32,
                 fourcc: str = "mp4v", copy: bool = True, stall_timeout_s: float = 10.0,
                 video: Optional[VideoSettings] = None):
        self.path = path
        self.frame_size = (int(frame_size[0]), int(frame_size[1]))
        width, height = self.frame_size
        even = (width + width % 2, height + height % 2)
        self.padded_to = even if even != self.frame_size else None  # type: Optional[Tuple[int, int]]
        self.fps = float(fps) if fps and fps > 0 else 30.0
        self.copy = copy
        self.stall_timeout_s = stall_timeout_s
        self.frames_written = 0
        self.frames_resized = 0
        self.error = None  # type: Optional[BaseException]
        self._error_reported = False
        self._closed = False
        self._close_lock = threading.Lock()
        self._queue = queue.Queue(maxsize=max(1, queue_size))  # type: queue.Queue
        folder = os.path.dirname(os.path.abspath(path))
        try:
            os.makedirs(folder, exist_ok=True)
            with open(path, "wb"):
                pass  # OpenCV's own failure says nothing about why; this gives errno
        except OSError as e:
            raise OutputError("cannot write the video %s (%s); choose a writable path for --record / --save-input"
                              % (path, e.strerror or e)) from e
        if min(self.frame_size) < MIN_ENCODE_SIDE:  # padded, a 1-pixel side would be half invented
            os.remove(path)
            raise OutputError("cannot record %s: the frames are %dx%d, below the encoder's minimum of %dx%d; "
                              "record a larger source" % (path, self.frame_size[0], self.frame_size[1],
                                                          MIN_ENCODE_SIDE, MIN_ENCODE_SIDE))
        encoded_size = self.padded_to or self.frame_size
        video = video or VideoSettings()
        self.fragmented = bool(video.fragmented and path.lower().endswith(".mp4") and av_module() is not None)
        self._writer = self._hardware_writer(path, encoded_size, video)  # a Jetson's NVENC, where there is one
        how = "H.264 on %s, fragmented MP4 (survives a crash)" % self._writer.encoder if self._writer else None
        if self._writer is None and self.fragmented:
            self._writer = Fmp4Writer(path, self.fps, encoded_size, video.bitrate, video.segment_s)
            if video.segment_s:
                os.remove(path)  # the segments are rec_0001.mp4, ...: no empty rec.mp4 beside them
        elif self._writer is None:
            self._writer = _OpenCvWriter(path, fourcc, self.fps, encoded_size)
            if video.fragmented and path.lower().endswith(".mp4"):
                log.warning("%s: PyAV is not installed, so this recording is OpenCV's mp4v, which a crash or kill "
                            "leaves unplayable; fix: pip install av", path)
        self.fragmented = self.fragmented or how is not None
        log.info("recording %s: %s", path, how or describe_recording(self.fragmented, video.bitrate))
        if self.padded_to:
            log.info("%s: %dx%d padded to %dx%d (the encoder needs even sizes)", path, width, height, *self.padded_to)
        self._thread = threading.Thread(target=self._run, name="video-writer", daemon=True)
        self._thread.start()

    def _hardware_writer(self, path: str, size: Tuple[int, int], video: VideoSettings):
        """GStreamer's nvv4l2h264enc where the Jetson has it (and OpenCV has GStreamer), one file (no segments);
        None elsewhere, or where it does not start (an Orin Nano has no encoder engine): then PyAV records."""
        if not (video.fragmented and path.lower().endswith(".mp4") and not video.segment_s):
            return None
        encoder = hardware_encoder()
        if encoder is None:
            return None
        try:
            writer = GstWriter(path, self.fps, size, video.bitrate, encoder)
        except OutputError as e:
            log.warning("%s; recording with %s instead", e, "PyAV" if self.fragmented else "OpenCV's mp4v")
            return None
        writer.encoder = encoder
        return writer

    def _run(self) -> None:
        try:
            while True:
                try:
                    item = self._queue.get(timeout=0.2)
                except queue.Empty:
                    if self._closed:  # close() could not enqueue the sentinel; nothing more can come
                        return
                    continue
                if item is _SENTINEL:
                    return
                image = item
                if (image.shape[1], image.shape[0]) != self.frame_size:
                    image = cv2.resize(image, self.frame_size, interpolation=cv2.INTER_AREA)
                    self.frames_resized += 1
                if self.padded_to:
                    image = cv2.copyMakeBorder(image, 0, self.padded_to[1] - self.frame_size[1], 0,
                                               self.padded_to[0] - self.frame_size[0], cv2.BORDER_REPLICATE)
                self._check_room(image)
                self._writer.write(image)
                self.frames_written += 1
        except BaseException as e:  # stored, re-raised on the caller's thread by write()/close()
            self.error = e
            # keep draining so a blocked write() or close() never waits on a dead consumer
            while True:
                try:
                    if self._queue.get(timeout=0.1) is _SENTINEL:
                        return
                except queue.Empty:
                    if self._closed:
                        return
        finally:
            self._writer.release()  # OpenCV writes the mp4 index (moov) only here; fMP4 finishes its last fragment

    def _check_room(self, image: np.ndarray) -> None:
        """cv2.VideoWriter.write reports nothing when the disk is full, and an mp4 whose index (written by
        release()) does not fit never plays: so the recording stops while a frame and the index still fit."""
        room = room_for(self.path)
        if room is not None and room < RECORD_HEADROOM_BYTES + image.nbytes + INDEX_BYTES_PER_FRAME * self.frames_written:
            raise disk_full_error(self.path, what="the recording")

    def _raise_error(self) -> None:
        if self.error is not None and not self._error_reported:
            self._error_reported = True
            if isinstance(self.error, OutputError):
                raise self.error
            raise OutputError("writing %s failed: %s" % (self.path, self.error)) from self.error

    def write(self, image_bgr: np.ndarray, frame_index: int = -1) -> bool:
        """Queue one frame; False if the sink was closed meanwhile. Raises OutputError if the writer died
        or made no progress for stall_timeout_s (a full disk or a hung filesystem)."""
        self._raise_error()
        if self._closed:
            return False
        if image_bgr.ndim != 3 or image_bgr.shape[2] != 3 or image_bgr.dtype != np.uint8:
            raise OutputError("video sink %s expects HxWx3 uint8 BGR frames, got %s %s"
                              % (self.path, image_bgr.shape, image_bgr.dtype))
        item = image_bgr.copy() if self.copy else image_bgr
        deadline = time.monotonic() + self.stall_timeout_s
        while True:
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                self._raise_error()
                if self._closed:
                    return False
                if time.monotonic() > deadline:
                    raise OutputError("the video writer for %s made no progress for %.0f s (disk full or slow?)"
                                      % (self.path, self.stall_timeout_s))

    def close(self, timeout_s: float = 60.0) -> None:
        """Drain, release and join; idempotent. Raises OutputError once if the writer thread failed."""
        with self._close_lock:
            if self._closed:
                return
            self._closed = True
        deadline = time.monotonic() + timeout_s
        while self._thread.is_alive():
            try:
                self._queue.put(_SENTINEL, timeout=0.1)
                break
            except queue.Full:
                if time.monotonic() > deadline:
                    break
        self._thread.join(max(0.1, deadline - time.monotonic()))
        if self._thread.is_alive():
            log.error("video writer for %s did not finish within %.0f s; the file may not play", self.path, timeout_s)
        self._raise_error()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()


class _OpenCvWriter:
    """OpenCV's writer (mp4v): the fallback without PyAV. Its index is written by release() only."""

    def __init__(self, path: str, fourcc: str, fps: float, size: Tuple[int, int]):
        self._writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*fourcc), fps, size)
        if not self._writer.isOpened():
            os.remove(path)
            raise OutputError("OpenCV cannot encode %s with %s at %dx%d; use a .mp4 path, or an OpenCV built with FFmpeg"
                              % (path, fourcc, size[0], size[1]))

    def write(self, image: np.ndarray) -> None:
        self._writer.write(image)

    def release(self) -> None:
        self._writer.release()


class LazyVideoFileSink:
    """Opens the recording on the first frame, when the frame size is known."""

    def __init__(self, path: str, fps: float, video: Optional[VideoSettings] = None):
        self.path, self.fps, self.video = path, fps, video
        self._sink = None
        self.stop_requested = False
        # Checked now, not at the first frame: a bad path must fail before any log is written.
        existing = os.path.dirname(os.path.abspath(path))
        while not os.path.exists(existing):
            existing = os.path.dirname(existing)
        if not os.path.isdir(existing) or not os.access(existing, os.W_OK):
            raise OutputError("cannot write the recording %s (%s is not a writable folder); pass --record with a "
                              "writable path" % (path, existing))

    def write(self, image, frame_index: int) -> None:
        if self._sink is None:
            # copy=False: the pipeline never touches a frame after handing it to the sinks.
            self._sink = VideoFileSink(self.path, self.fps, (image.shape[1], image.shape[0]), copy=False,
                                       video=self.video)
        self._sink.write(image, frame_index)

    def close(self) -> None:
        if self._sink is not None:
            self._sink.close()
