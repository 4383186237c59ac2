"""Emission of processed frames: overlay, sinks and the per-frame logs, inline or on a worker thread."""
from __future__ import annotations

import os
import queue
import threading
import time
from typing import Callable, Optional

from .capture import CaptureThread
from .config import Config
from .overlay import HudInfo, Overlay
from .stages import Processed
from .stats import StatsPoller
from .timing import PredictionLog, RollingStats, TimingLog


class FrameEmitter:
    """Draws a processed frame, hands it to the sinks and writes its log rows: inline, or on a worker thread
    fed through a small bounded queue (the main thread waits when it is full, so nothing is dropped)."""

    def __init__(self, config: Config, out_dir: str, adapter, stats: StatsPoller, budget_ms: float, sinks,
                 threaded: bool = False, on_error: Optional[Callable[[str], None]] = None):
        self.config = config
        self.adapter = adapter
        self.stats = stats
        self.budget_ms = budget_ms
        self.overlay = Overlay(config.overlay)
        self.rolling = RollingStats(1.0)
        self.timing_log = TimingLog(os.path.join(out_dir, "timing.csv"))
        self.prediction_log = PredictionLog(os.path.join(out_dir, "predictions.jsonl"))
        self.sinks = sinks
        self.capture = None  # type: Optional[CaptureThread]
        self.live = False
        self.processed = 0
        self.error = None  # type: Optional[BaseException]
        self._reported = False
        self._last_draw_ms = 0.0
        self._on_error = on_error
        self._queue = None  # type: Optional[queue.Queue]
        self._thread = None  # type: Optional[threading.Thread]
        if threaded:
            self._queue = queue.Queue(maxsize=4)
            self._thread = threading.Thread(target=self._work, name="emitter", daemon=True)
            self._thread.start()

    def emit(self, done: Processed) -> None:
        if self._queue is None:
            self._emit(done)
            return
        while True:
            if self.error is not None and not self._reported:
                self._reported = True
                raise self.error
            try:
                self._queue.put(done, timeout=0.1)
                return
            except queue.Full:
                continue

    def _work(self) -> None:
        while True:
            done = self._queue.get()
            if done is None:
                return
            if self.error is not None:
                continue  # drain: a failed emitter keeps accepting so the main thread never blocks
            try:
                self._emit(done)
            except BaseException as e:  # noqa: B902 - handed to the main thread by emit() and close()
                self.error = e
                if self._on_error is not None:
                    self._on_error("error: %s" % (str(e).splitlines()[0] if str(e) else type(e).__name__))

    def _emit(self, done: Processed) -> None:
        timing, frame = done.timing, done.frame
        sample = self.stats.latest()
        p95_ms = self.rolling.p95_ms()
        dropped = self.capture.dropped if self.capture is not None else 0
        cfg = self.config
        t0 = time.perf_counter()
        hud = HudInfo(
            fps=self.rolling.fps(), stage_ms={"pre": timing.pre_ms, "infer": timing.infer_ms,
                                              "post": timing.post_ms, "draw": self._last_draw_ms},
            rss_mb=sample.rss_mb, ram_used_mb=sample.ram_used_mb, ram_total_mb=sample.ram_total_mb,
            gpu_mb=sample.gpu_mb, model=cfg.model.name, backend=cfg.engine.backend, precision=cfg.engine.precision,
            realtime_ok=None if p95_ms is None else p95_ms <= self.budget_ms, budget_ms=self.budget_ms,
            p95_ms=p95_ms, random_weights=self.adapter.random_weights, dropped=dropped)
        image = self.overlay.annotate(frame.image, done.result, hud)
        t1 = time.perf_counter()
        self.sinks.write(image, frame.index)
        t2 = time.perf_counter()
        timing.draw_ms, timing.sink_ms = (t1 - t0) * 1e3, (t2 - t1) * 1e3
        timing.latency_ms = (t2 - frame.capture_time) * 1e3
        self._last_draw_ms = timing.draw_ms
        self.timing_log.write(frame.index, frame.timestamp_s, timing, dropped, sample.rss_mb, sample.gpu_mb)
        self.prediction_log.write(frame.index, done.result)
        # The badge follows capture-to-result latency on live sources; in lossless replay frames wait in the
        # queue by design, so there it follows the frame's own processing time.
        service_ms = timing.pre_ms + timing.infer_ms + timing.post_ms + timing.draw_ms + timing.sink_ms
        self.rolling.add(t2, timing.latency_ms if self.live else service_ms)
        self.processed += 1

    def close(self) -> None:
        """Emit what is queued, stop the worker, close the logs; re-raise the worker's error."""
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join()
            self._thread = None
        self.timing_log.close()
        self.prediction_log.close()
        if self.error is not None and not self._reported:
            self._reported = True
            raise self.error
