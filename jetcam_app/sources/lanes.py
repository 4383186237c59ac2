"""One lane per source (its capture thread, hand-off channel, counts and outputs), and the scheduler that gathers the
lanes' ready frames fairly into batches. One source is one lane: the same path as thirty-two."""

import logging
import threading
from typing import Any, Callable, List, Optional, Sequence, Tuple

from ..errors import first_line
from ..types import Frame
from ..verdict import RollingStats, TimingAccumulator
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


class SourceLane:
    """Everything that belongs to one source, shared by the scheduler, the emitter and the summary: its capture thread
    with a stop event of its own (a failure ends this source only), its channel, what the scheduler took from it, its
    own outputs (`sink`: its recording, its picture on the page), the name its log rows carry, and its figures.

    log_name: predictions.jsonl's "source" for its frames; with `frame_names`, an image's own file name comes first.
    target_fps: the rate its real-time verdict is judged against."""

    def __init__(self, name: str, source, bell: Doorbell, queue_size: int, target_fps: float, max_frames: int = 0,
                 on_frame: Optional[Callable[[Frame], None]] = None, sink: Any = None,
                 log_name: Optional[str] = None, frame_names: bool = False):
        self.name = name
        self.source = source
        self.bell = bell
        self.stop = threading.Event()
        self.capture = CaptureThread(source, self.stop, queue_size, on_frame=on_frame)
        self.capture.name = "capture-%s" % name
        # The same kind of channel CaptureThread chose, ringing the scheduler's doorbell; set before the thread starts.
        self.capture.channel = _RingingSlot(bell) if source.is_live else _RingingQueue(queue_size, bell)
        self.max_frames = max_frames
        self.taken = 0
        self.lost = 0  # frames taken that a remote engine dropped (the server was away): counted as dropped
        self.pending = 0  # frames taken and not yet emitted or lost
        self.done = False
        self.end_reason = ""
        # the emitter's side
        self.live = bool(source.is_live)
        self.still_images = bool(source.still_images)
        self.target_fps = target_fps
        self.budget_ms = 1000.0 / target_fps
        self.sink = sink
        self.log_name = name if log_name is None else log_name
        self.frame_names = frame_names
        self.rolling = RollingStats(1.0)
        self.accumulated = TimingAccumulator()
        self.processed = 0
        self.last_draw_ms = 0.0
        self.last_emitted = None  # type: Optional[float]  # perf_counter of its last frame's result
        self.analytics = None  # type: Any  # analytics.scene.SourceAnalytics when this source is tracked

    @property
    def channel(self):
        return self.capture.channel

    def dropped(self) -> int:
        """Frames overwritten before they were taken (live sources)."""
        return self.capture.channel.dropped

    def captured(self) -> int:
        return self.capture.captured

    def take(self) -> Optional[Frame]:
        """The next frame if one is ready (never waits); marks the lane done at its end or its frame limit (once the
        frames taken are settled: a frame a remote engine drops is replaced, as --max-frames counts processed ones)."""
        if self.done:
            return None
        if self.max_frames and self.taken - self.lost >= self.max_frames:
            if not self.pending:
                self.finish("--max-frames %d reached" % self.max_frames)
            return None
        frame = self.channel.get(0.0)
        if frame is not None:
            self.taken += 1
            self.pending += 1
            return frame
        if self.channel.finished:
            capture = self.capture
            if capture.error is not None:
                reason = "failed: %s" % first_line(capture.error)
                log.error("source %s %s", self.name, reason)
            else:
                reason = "end of stream" if capture.end_of_stream else "capture stopped"
                log.info("source %s: %s", self.name, reason)
            self.finish(reason)
        return None

    def settle(self, emitted: bool) -> None:
        """A frame taken from this lane came back: emitted, or lost by a remote engine."""
        self.pending -= 1
        if not emitted:
            self.lost += 1

    def finish(self, reason: str) -> None:
        if not self.done:
            self.done, self.end_reason = True, reason
            self.stop.set()


class Scheduler:
    """Gathers ready frames across lanes, at most one per lane per round and at most `max_batch` in all. The round
    starts one past the last lane served, so when the batch is full the lanes left out go first next time: a fast
    file never starves a camera, and a lossless file adds at most one frame per batch."""

    def __init__(self, lanes: Sequence[SourceLane], bell: Doorbell, max_batch: int):
        self.lanes = list(lanes)
        self.bell = bell
        self.max_batch = max(1, int(max_batch))
        self._next = 0
        self._seen = 0

    @property
    def finished(self) -> bool:
        return all(lane.done for lane in self.lanes)

    def gather(self, timeout_s: float) -> List[Tuple[SourceLane, Frame]]:
        """Up to max_batch (lane, frame) pairs; waits up to `timeout_s` for a first frame (0 = never waits)."""
        batch = self._round()
        if not batch and timeout_s > 0 and not self.finished:
            self._seen = self.bell.wait(self._seen, timeout_s)
            batch = self._round()
        return batch

    def _round(self) -> List[Tuple[SourceLane, Frame]]:
        self._seen = self.bell.rings  # anything rung from here on wakes the next wait
        n, start = len(self.lanes), self._next
        batch = []  # type: List[Tuple[SourceLane, Frame]]
        for k in range(n):
            if len(batch) >= self.max_batch:
                break
            i = (start + k) % n
            frame = self.lanes[i].take()
            if frame is not None:
                batch.append((self.lanes[i], frame))
                self._next = (i + 1) % n
        return batch
