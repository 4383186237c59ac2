"""Several sources, each on its own capture thread and hand-off channel, gathered fairly into batches."""
from __future__ import annotations

import logging
import threading
from typing import Callable, List, Optional, Sequence, Tuple

from ..errors import first_line
from ..types import Frame
from .capture import CaptureThread, LatestFrameSlot, LosslessQueue

log = logging.getLogger(__name__)


class Doorbell:
    """Rung by every channel on a new frame or on its end, so the scheduler sleeps until something is ready."""

    def __init__(self):
        self._cond = threading.Condition()
        self._rings = 0

    def ring(self) -> None:
        with self._cond:
            self._rings += 1
            self._cond.notify_all()

    @property
    def rings(self) -> int:
        with self._cond:
            return self._rings

    def wait(self, seen: int, timeout_s: float) -> int:
        """Wait until rung after `seen` rings (or the timeout); the ring count now."""
        with self._cond:
            if self._rings == seen:
                self._cond.wait(timeout_s)
            return self._rings


class _Ringing:
    """A channel that rings the scheduler's doorbell on every frame and at its close."""

    _bell = None  # type: Doorbell

    def put(self, frame: Frame, stop: threading.Event) -> None:
        super().put(frame, stop)  # type: ignore[misc]
        self._bell.ring()

    def close(self) -> None:
        super().close()  # type: ignore[misc]
        self._bell.ring()


class _RingingSlot(_Ringing, LatestFrameSlot):
    def __init__(self, bell: Doorbell):
        LatestFrameSlot.__init__(self)
        self._bell = bell


class _RingingQueue(_Ringing, LosslessQueue):
    def __init__(self, maxsize: int, bell: Doorbell):
        LosslessQueue.__init__(self, maxsize)
        self._bell = bell


class SourceFeed:
    """One source of several: its capture thread with a stop event of its own (a failure ends this source only),
    its channel, and what the scheduler took from it."""

    def __init__(self, name: str, source, bell: Doorbell, queue_size: int, max_frames: int = 0,
                 on_frame: Optional[Callable[[Frame], None]] = None):
        self.name = name
        self.source = source
        self.stop = threading.Event()
        self.capture = CaptureThread(source, self.stop, queue_size, on_frame=on_frame)
        self.capture.name = "capture-%s" % name
        # The same kind of channel CaptureThread chose, ringing the scheduler's doorbell; set before the thread starts.
        self.capture.channel = _RingingSlot(bell) if source.is_live else _RingingQueue(queue_size, bell)
        self.max_frames = max_frames
        self.taken = 0
        self.lost = 0  # frames taken that a remote engine dropped (multi_source._emit_batch counts them)
        self.done = False
        self.end_reason = ""

    @property
    def channel(self):
        return self.capture.channel

    def take(self) -> Optional[Frame]:
        """The next frame if one is ready (never waits); marks the feed done at its end or its frame limit."""
        if self.done:
            return None
        frame = self.channel.get(0.0)
        if frame is not None:
            self.taken += 1
            # a frame a remote engine drops later does not count (lost); one dropped after the limit is not replaced
            if self.max_frames and self.taken - self.lost >= self.max_frames:
                self.finish("--max-frames %d reached" % self.max_frames)
            return frame
        if self.channel.finished:
            capture = self.capture
            if capture.error is not None:
                reason = "failed: %s" % first_line(capture.error)
                log.error("source %s %s; the other sources go on", self.name, reason)
            else:
                reason = "end of stream" if capture.end_of_stream else "capture stopped"
                log.info("source %s: %s", self.name, reason)
            self.finish(reason)
        return None

    def finish(self, reason: str) -> None:
        if not self.done:
            self.done, self.end_reason = True, reason
            self.stop.set()


class Scheduler:
    """Gathers ready frames across feeds, at most one per feed per round and at most `max_batch` in all. The
    round starts one past the last feed served, so when the batch is full the feeds left out go first next time:
    a fast file never starves a camera, and a lossless file adds at most one frame per batch."""

    def __init__(self, feeds: Sequence[SourceFeed], bell: Doorbell, max_batch: int):
        self.feeds = list(feeds)
        self.bell = bell
        self.max_batch = max(1, int(max_batch))
        self._next = 0
        self._seen = 0

    @property
    def finished(self) -> bool:
        return all(feed.done for feed in self.feeds)

    def gather(self, timeout_s: float) -> List[Tuple[SourceFeed, Frame]]:
        """Up to max_batch (feed, frame) pairs; waits up to `timeout_s` for a first frame (0 = never waits)."""
        batch = self._round()
        if not batch and timeout_s > 0 and not self.finished:
            self._seen = self.bell.wait(self._seen, timeout_s)
            batch = self._round()
        return batch

    def _round(self) -> List[Tuple[SourceFeed, Frame]]:
        self._seen = self.bell.rings  # anything rung from here on wakes the next wait
        n, start = len(self.feeds), self._next
        batch = []  # type: List[Tuple[SourceFeed, Frame]]
        for k in range(n):
            if len(batch) >= self.max_batch:
                break
            i = (start + k) % n
            frame = self.feeds[i].take()
            if frame is not None:
                batch.append((self.feeds[i], frame))
                self._next = (i + 1) % n
        return batch
