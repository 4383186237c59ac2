"""--save-input: the frames as captured (before drawing) to an mp4, with a sidecar of their indices and timestamps."""

import csv
import threading
from typing import Any, Optional, Tuple

from ..errors import OutputError
from ..sources.timestamps import SIDECAR_COLUMNS, sidecar_path
from ..types import Frame
from .sinks.video_file import VideoFileSink
from .video.fmp4 import VideoSettings

class InputRecorder:
    """write(frame) queues a copy of frame.image to a VideoFileSink (so later drawing never reaches the
    recording) and appends its index and timestamp to the sidecar, flushed per row. Thread-safe: the
    capture thread may write while the main thread closes."""

    def __init__(self, path: str, fps: float, frame_size: Tuple[int, int], queue_size: int = 64,
                 video: Optional[VideoSettings] = None):
        self.path = path
        self.sidecar = sidecar_path(path)
        self.frames_written = 0
        self._lock = threading.Lock()
        self._closed = False
        self._video = VideoFileSink(path, fps, frame_size, queue_size=queue_size, copy=True, video=video)
        try:
            self._file = open(self.sidecar, "w", newline="", encoding="utf-8")
        except OSError as e:
            self._video.close()
            raise OutputError("cannot write %s (%s); choose a writable path for --save-input"
                              % (self.sidecar, e.strerror or e)) from e
        self._csv = csv.writer(self._file)
        self._csv.writerow(SIDECAR_COLUMNS)
        self._file.flush()

    def write(self, frame: Frame) -> bool:
        """False once closed (a frame arriving during shutdown is not recorded, and not listed either)."""
        with self._lock:
            if self._closed:
                return False
            if not self._video.write(frame.image, frame.index):
                return False
            self._csv.writerow([int(frame.index), "%.6f" % frame.timestamp_s])
            self._file.flush()
            self.frames_written += 1
            return True

    def close(self) -> None:
        """Idempotent: finalises the mp4 (always playable) and closes the sidecar."""
        if self._closed:
            return
        # Set first, then wait for a write in flight: it finishes (the writer thread keeps draining), so its
        # frame and its sidecar row both land, and no later write starts.
        self._closed = True
        with self._lock:
            if self._file.closed:
                return
        try:
            self._video.close()
        finally:
            self._file.close()

    def __enter__(self) -> "InputRecorder":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class LazyInputRecorder:
    """Opens the raw recording on the first captured frame, when the frame size is known."""

    def __init__(self, path: str, fps: float, video: Optional[VideoSettings] = None):
        self.path, self.fps, self.video = path, fps, video
        self._recorder = None

    def write(self, frame) -> None:
        if self._recorder is None:
            self._recorder = InputRecorder(self.path, self.fps, (frame.image.shape[1], frame.image.shape[0]),
                                           video=self.video)
        self._recorder.write(frame)

    def close(self) -> None:
        if self._recorder is not None:
            self._recorder.close()
