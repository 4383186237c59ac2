"""A bounded queue of messages and the thread that delivers them, so a slow or absent receiver (an MQTT broker, a
webhook's server) is never in the frame's way: put() never blocks; beyond the bound a message is dropped and
counted; close() delivers what is queued within a timeout and counts the rest as dropped."""

import logging
import math
import queue
import threading
import time
from typing import Any, Callable, Dict

log = logging.getLogger(__name__)


class Closing(Exception):
    """Raised by Outbox.wait() in a deliverer when the outbox's drain time is up: the message is dropped."""


class Outbox:
    """`deliver(message)` runs on the outbox's thread, one message at a time, in order; it returns True when the
    message was delivered and False when it was given up (counted as failed); it may sleep through self.wait()
    between attempts, which raises Closing once the drain time is up."""

    def __init__(self, name: str, deliver: Callable[[Any], bool], size: int):
        self.name = name
        self._deliver = deliver
        self._queue = queue.Queue(maxsize=size)  # type: queue.Queue
        self._stop = threading.Event()
        self._deadline = None  # type: Any  # monotonic time at which close() gives up
        self.published = 0
        self.dropped = 0  # over the bound, or still queued when close() gave up
        self.failed = 0  # given up by the deliverer (retries spent, refused)
        self._lock = threading.Lock()
        self._dropped_logged = False
        self._thread = threading.Thread(target=self._work, name="notify-%s" % name, daemon=True)
        self._thread.start()

    def put(self, message: Any) -> bool:
        """Queue a message; False (and counted) when the queue is full or the outbox is closing."""
        if self._deadline is not None:
            self._count_drop(full=False)
            return False
        try:
            self._queue.put_nowait(message)
            return True
        except queue.Full:
            self._count_drop(full=True)
            return False

    def _count_drop(self, full: bool) -> None:
        with self._lock:
            self.dropped += 1
            first = full and not self._dropped_logged
            if full:
                self._dropped_logged = True
        if first:
            log.warning("%s: its queue of %d messages is full (the receiver is away or slow); further messages "
                        "are dropped and counted in summary.json", self.name, self._queue.maxsize)

    def _past_deadline(self) -> bool:
        return self._deadline is not None and time.monotonic() >= self._deadline

    def wait(self, seconds: float) -> None:
        """Sleep between a deliverer's attempts; Closing once close()'s drain time is up."""
        end = time.monotonic() + seconds
        while True:
            if self._past_deadline():
                raise Closing()
            now = time.monotonic()
            if now >= end:
                return
            until = end if self._deadline is None else min(end, self._deadline)
            if self._stop.is_set():  # closing: the deadline is known; sleep towards it
                time.sleep(max(until - now, 0.0))
            else:
                self._stop.wait(until - now)  # close() sets it: the deadline is then looked at again

    @property
    def closing(self) -> bool:
        return self._deadline is not None

    @property
    def closed(self) -> bool:
        """close() has returned: nothing more will be attempted."""
        return self._deadline is not None and self._thread is None

    def time_left(self) -> float:
        """Seconds until close() gives up (a long time while running)."""
        return 3600.0 if self._deadline is None else max(0.0, self._deadline - time.monotonic())

    def _work(self) -> None:
        bug_logged = False
        while True:
            message = self._queue.get()
            if message is _END:
                return
            if self._past_deadline():  # drain time is up: what is left is dropped, not attempted
                self._count_drop(full=False)
                continue
            try:
                ok = self._deliver(message)
            except Closing:
                self._count_drop(full=False)
                continue
            except Exception as e:  # noqa: BLE001 - a delivery bug must not stop the others
                (log.debug if bug_logged else log.warning)("%s: message not delivered (%s)", self.name, e)
                bug_logged, ok = True, False
            with self._lock:
                if ok:
                    self.published += 1
                else:
                    self.failed += 1

    def close(self, timeout_s: float) -> None:
        """Deliver what is queued for up to `timeout_s`, then drop the rest (counted)."""
        if self._thread is None:
            return
        self._deadline = time.monotonic() + timeout_s
        self._stop.set()
        # the end marker goes after everything queued; past the deadline the thread drops without attempting, so
        # room comes quickly
        while True:
            try:
                self._queue.put(_END, timeout=0.05)
                break
            except queue.Full:
                if not self._thread.is_alive():
                    break
        # a deliverer in the middle of an attempt (a request's timeout) is waited for a little beyond the deadline;
        # its message may still arrive after close() returns (it is then counted as published)
        self._thread.join(timeout_s + 1.0)
        self._thread = None

    def counts(self) -> Dict[str, int]:
        with self._lock:
            return {"published": self.published, "dropped": self.dropped, "failed": self.failed,
                    "queued": self._queue.qsize()}


def finite(value: Any) -> Any:
    """The value with every NaN or infinity as None (JSON has neither)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(v) for v in value]
    return value


_END = object()
