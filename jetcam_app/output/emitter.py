"""Emission of processed frames: overlay, sinks and the per-frame logs, inline or on a worker thread."""
from __future__ import annotations

import collections
import os
import queue
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Dict, Optional

from ..config import Config
from ..cores import usable_cores
from ..errors import first_line
from ..inference.stages import Processed
from ..stats import StatsPoller
from ..verdict import RollingStats
from .logs import PredictionLog, TimingLog
from .live_status import LiveStatus
from .overlay import HudInfo, Overlay

DRAW_THREADS = 2  # drawings in parallel on the emitter's pool, where there are cores to spare


def draw_threads(threaded: bool, requested: int = -1, gpu_outlines: bool = False) -> int:
    """Threads drawing in parallel; 0 = draw on the emitter thread. Automatic (-1): a pool only when the emitter
    is threaded, there are 4+ usable cores and the host draws the box outlines. On 2 cores a second drawing thread
    takes CPU time from inference; more than 2 threads wait longer for the GIL each; and with the outlines drawn on
    the GPU what is left (labels, HUD) is cheaper than handing frames to a pool (docs/performance.md)."""
    if not threaded:
        return 0
    if requested >= 0:
        return requested
    return DRAW_THREADS if usable_cores() >= 4 and not gpu_outlines else 0


def hand_over(emitter, work_queue: "queue.Queue", item) -> None:
    """Queue `item` for the emitter's worker thread, waiting for room (nothing is dropped); the worker's error,
    once stored, is raised here the first time (emitter.error, emitter._reported)."""
    while True:
        if emitter.error is not None and not emitter._reported:
            emitter._reported = True
            raise emitter.error
        try:
            work_queue.put(item, timeout=0.1)
            return
        except queue.Full:
            continue


def fail(emitter, e: BaseException) -> None:
    """The emitter's worker failed: keep the error for hand_over() and close() to raise, and report it at once."""
    emitter.error = e
    if emitter._on_error is not None:
        emitter._on_error("error: %s" % first_line(e))


class FrameEmitter:
    """Draws a processed frame, hands it to the sinks and writes its log rows: inline, or on a worker thread
    fed through a small bounded queue (the main thread waits when it is full, so nothing is dropped).

    dropped: the frames the capture dropped so far (shown on the HUD, logged per row); live: the source is live,
    so the badge follows capture-to-result latency; gpu_outlines: frames may come with their outlines drawn."""

    def __init__(self, config: Config, out_dir: str, adapter, stats: StatsPoller, budget_ms: float, sinks,
                 threaded: bool = False, on_error: Optional[Callable[[str], None]] = None, gpu_outlines: bool = False,
                 dropped: Callable[[], int] = lambda: 0, live: bool = False, captured: Optional[Callable[[], int]] = None,
                 source_name: Optional[str] = None, live_status: Optional[LiveStatus] = None, still_images: bool = False):
        self.config = config
        self.source_name = source_name  # predictions.jsonl's "source" for frames without a file name of their own
        self.live_status = live_status
        self.still_images = still_images
        self.adapter = adapter
        self.stats = stats
        self.budget_ms = budget_ms
        self.rolling = RollingStats(1.0)
        self.timing_log = TimingLog(os.path.join(out_dir, "timing.csv"))
        self.prediction_log = PredictionLog(os.path.join(out_dir, "predictions.jsonl"))
        self.sinks = sinks
        self.dropped = dropped
        self.live = live
        self.captured = captured  # frames the source delivered so far, for the live page and progress line
        self.processed = 0
        self.error = None  # type: Optional[BaseException]
        self._reported = False
        self._last_draw_ms = 0.0
        self._on_error = on_error
        self._queue = None  # type: Optional[queue.Queue]
        self._thread = None  # type: Optional[threading.Thread]
        self._overlays = {}  # type: Dict[int, Overlay]
        self._pool = None  # type: Optional[ThreadPoolExecutor]
        self._pool_size = draw_threads(threaded, config.pipeline.draw_threads, gpu_outlines)
        if self._pool_size:
            self._pool = ThreadPoolExecutor(self._pool_size, thread_name_prefix="draw")
        if threaded:
            self._queue = queue.Queue(maxsize=4)
            self._thread = threading.Thread(target=self._work, name="emitter", daemon=True)
            self._thread.start()

    def emit(self, done: Processed) -> None:
        if self._queue is None:
            self._emit(done)
            return
        hand_over(self, self._queue, done)

    def _work(self) -> None:
        """Frames are drawn by a small pool (OpenCV drawing releases the GIL, so drawings overlap) and written
        and logged here in order; a drawing in progress is waited for as soon as no other frame is queued."""
        pending = collections.deque()  # type: collections.deque
        while True:
            done = self._queue.get()
            if done is None:
                break
            if self.error is not None:
                continue  # drain: a failed emitter keeps accepting so the main thread never blocks
            try:
                hud = self._hud(done)
                if self._pool is None:
                    self._complete(done, hud, self._draw(done, hud))
                    continue
                pending.append((done, hud, self._pool.submit(self._draw, done, hud)))
                self._complete_drawn(pending, until=self._pool_size)
            except BaseException as e:  # noqa: B902 - handed to the main thread by emit() and close()
                fail(self, e)
        try:
            if self.error is None:
                self._complete_drawn(pending, until=0)
        except BaseException as e:  # noqa: B902
            fail(self, e)

    def _complete_drawn(self, pending: collections.deque, until: int) -> None:
        """Write and log drawn frames in order while more than `until` are pending, or any while none is queued."""
        while pending and (len(pending) > until or self._queue.empty()):
            done, hud, drawing = pending.popleft()
            self._complete(done, hud, drawing.result())

    def _emit(self, done: Processed) -> None:
        hud = self._hud(done)
        self._complete(done, hud, self._draw(done, hud))

    def _hud(self, done: Processed) -> HudInfo:
        timing = done.timing
        sample = self.stats.latest()
        p95_ms = self.rolling.p95_ms()
        cfg = self.config
        return HudInfo(
            fps=self.rolling.fps(), stage_ms={"pre": timing.pre_ms, "infer": timing.infer_ms,
                                              "post": timing.post_ms, "draw": self._last_draw_ms},
            rss_mb=sample.rss_mb, ram_used_mb=sample.ram_used_mb, ram_total_mb=sample.ram_total_mb,
            gpu_mb=sample.gpu_mb, model=cfg.model.name, backend=cfg.engine.backend, precision=cfg.engine.precision,
            realtime_ok=None if p95_ms is None else p95_ms <= self.budget_ms, budget_ms=self.budget_ms,
            p95_ms=p95_ms, random_weights=self.adapter.random_weights,
            dropped=self.dropped(), still_images=self.still_images)

    def _draw(self, done: Processed, hud: HudInfo):
        """(annotated image, draw ms); an Overlay per drawing thread (it caches per-frame-size metrics)."""
        overlay = self._overlays.get(threading.get_ident())
        if overlay is None:
            overlay = self._overlays[threading.get_ident()] = Overlay(self.config.overlay)
        t0 = time.perf_counter()
        image = overlay.annotate(done.frame.image, done.result, hud, done.outlined)
        return image, (time.perf_counter() - t0) * 1e3

    def _complete(self, done: Processed, hud: HudInfo, drawn) -> None:
        """Sinks and log rows; the row's memory and drop figures are the ones the frame's HUD shows."""
        image, draw_ms = drawn
        timing, frame = done.timing, done.frame
        t1 = time.perf_counter()
        self.sinks.write(image, frame.index)
        t2 = time.perf_counter()
        timing.draw_ms, timing.sink_ms = draw_ms, (t2 - t1) * 1e3
        timing.latency_ms = (t2 - frame.capture_time) * 1e3
        self._last_draw_ms = timing.draw_ms
        self.timing_log.write(frame.index, frame.timestamp_s, timing, hud.dropped, hud.rss_mb, hud.gpu_mb)
        self.prediction_log.write(frame.index, done.result, frame.name or self.source_name)
        # The badge follows capture-to-result latency on live sources; in lossless replay frames wait in the
        # queue by design, so there it follows the frame's own processing time.
        service_ms = timing.pre_ms + timing.infer_ms + timing.post_ms + timing.draw_ms + timing.sink_ms
        self.rolling.add(t2, timing.latency_ms if self.live else service_ms)
        self.processed += 1
        if self.live_status is not None:
            self.live_status.publish(hud, self.processed, frame.index,
                                     self.captured() if self.captured is not None else self.processed)

    @property
    def stop_requested(self) -> bool:
        """A sink asked to stop (q pressed in the window)."""
        return self.sinks.stop_requested

    def close(self) -> None:
        """Emit what is queued, stop the worker, close the logs; re-raise the worker's error."""
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join()
            self._thread = None
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None
        self.timing_log.close()
        self.prediction_log.close()
        if self.error is not None and not self._reported:
            self._reported = True
            raise self.error
