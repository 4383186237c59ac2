"""The capture thread and the two hand-off channels: a latest-frame slot (live) and a lossless queue (replay)."""

import collections
import logging
import threading
from typing import Callable, Optional

from ..errors import CaptureTimeout
from ..types import Frame

log = logging.getLogger(__name__)


class LatestFrameSlot:
    """Holds one frame; a new frame overwrites an unread one and the overwrite is counted as a drop."""

    def __init__(self):
        self._cond = threading.Condition()
        self._frame = None  # type: Optional[Frame]
        self._closed = False
        self.dropped = 0

    def put(self, frame: Frame, stop: threading.Event) -> None:
        with self._cond:
            if self._frame is not None:
                self.dropped += 1
            self._frame = frame
            self._cond.notify()

    def get(self, timeout_s: float) -> Optional[Frame]:
        """The newest frame, or None when none came within the timeout (or the channel is closed and empty)."""
        with self._cond:
            if self._frame is None and not self._closed:
                self._cond.wait(timeout_s)
            frame, self._frame = self._frame, None
            return frame

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    @property
    def finished(self) -> bool:
        with self._cond:
            return self._closed and self._frame is None


class LosslessQueue(LatestFrameSlot):
    """A bounded FIFO: the producer waits for room (re-checking `stop`), so no frame is ever dropped."""

    def __init__(self, maxsize: int):
        super().__init__()
        self._items = collections.deque()  # type: collections.deque
        self._maxsize = maxsize

    def put(self, frame: Frame, stop: threading.Event) -> None:
        with self._cond:
            while len(self._items) >= self._maxsize and not stop.is_set():
                self._cond.wait(0.1)
            if not stop.is_set():
                self._items.append(frame)
                self._cond.notify_all()

    def get(self, timeout_s: float) -> Optional[Frame]:
        with self._cond:
            if not self._items and not self._closed:
                self._cond.wait(timeout_s)
            if not self._items:
                return None
            frame = self._items.popleft()
            self._cond.notify_all()
            return frame

    @property
    def finished(self) -> bool:
        with self._cond:
            return self._closed and not self._items


class CaptureThread(threading.Thread):
    """Reads the source until the end of the stream or `stop`; stores its exception for run() to re-raise."""

    def __init__(self, source, stop: threading.Event, queue_size: int,
                 on_frame: Optional[Callable[[Frame], None]] = None, read_timeout_s: float = 0.25):
        super().__init__(name="capture", daemon=True)
        self.source = source
        self.stop = stop
        self.channel = LatestFrameSlot() if source.is_live else LosslessQueue(queue_size)
        self.on_frame = on_frame
        self.read_timeout_s = read_timeout_s
        self.captured = 0
        self.error = None  # type: Optional[BaseException]
        self.end_of_stream = False

    @property
    def dropped(self) -> int:
        return self.channel.dropped

    def run(self) -> None:
        try:
            while not self.stop.is_set():
                try:
                    frame = self.source.read(self.read_timeout_s)
                except CaptureTimeout:
                    continue
                if frame is None:
                    self.end_of_stream = True
                    break
                self.captured += 1
                if self.on_frame is not None:
                    self.on_frame(frame)
                self.channel.put(frame, self.stop)
        except BaseException as e:  # noqa: B902 - stored and re-raised by the pipeline after cleanup
            self.error = e
            self.stop.set()
        finally:
            self.channel.close()
