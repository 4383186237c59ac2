"""Emission for several sources: each source's HUD, logs rows with its name, its recording, and the mosaic."""
from __future__ import annotations

import os
import queue
import threading
import time
from typing import Callable, List, Optional, Sequence, Tuple

from ..config import Config
from ..inference.stages import Processed
from ..verdict import RollingStats, TimingAccumulator, service_ms
from .emitter import fail, hand_over
from .live_status import MultiLiveStatus
from .logs import PredictionLog, TimingLog
from .mosaic import Mosaic
from .overlay import HudInfo, Overlay
from .sinks.base import NullSink, Sink

QUEUED_BATCHES = 4  # batches waiting for the emitter thread (headless); the inference thread waits beyond that


def per_source_path(path: str, name: str) -> str:
    """rec.mp4 -> rec_<name>.mp4: one file per source."""
    root, ext = os.path.splitext(path)
    return "%s_%s%s" % (root, name, ext)


class SourceTrack:
    """What the emitter keeps per source: its HUD numbers, its timings for the summary and its recording."""

    def __init__(self, name: str, live: bool, target_fps: float, dropped: Callable[[], int],
                 sink: Optional[Sink] = None, captured: Optional[Callable[[], int]] = None):
        self.name = name
        self.live = live
        self.target_fps = target_fps
        self.budget_ms = 1000.0 / target_fps
        self.dropped = dropped
        self.captured = captured  # frames the source delivered so far, for the live page and progress line
        self.sink = sink
        self.rolling = RollingStats(1.0)
        self.accumulated = TimingAccumulator()
        self.overlay = None  # type: Optional[Overlay]
        self.processed = 0
        self.engine_dropped = 0  # frames a remote engine dropped (the server was away)
        self.last_draw_ms = 0.0
        self.last_emitted = None  # type: Optional[float]  # perf_counter of its last frame's result


class MultiEmitter:
    """Draws each frame on its own tile (only when something shows or records: a headless run without
    --record draws nothing), writes the shared logs, and shows or records the mosaic at `mosaic_fps`.
    Inline, or on a worker thread fed with whole batches through a small bounded queue (nothing is dropped)."""

    def __init__(self, config: Config, out_dir: str, adapter, stats, tracks: Sequence[SourceTrack],
                 mosaic_sinks: Sink, mosaic_fps: float, threaded: bool = False,
                 on_error: Optional[Callable[[str], None]] = None, live_status: Optional[MultiLiveStatus] = None):
        self.config = config
        self.live_status = live_status
        self._slot_of = {t.name: live_status.slot(t.name) for t in tracks} if live_status is not None else {}
        self.adapter = adapter
        self.stats = stats
        self.tracks = list(tracks)
        self.mosaic_sinks = mosaic_sinks
        self.mosaic = None if isinstance(mosaic_sinks, NullSink) else Mosaic([t.name for t in self.tracks])
        self.draws = self.mosaic is not None or any(t.sink is not None for t in self.tracks)
        self._mosaic_period_s = 1.0 / mosaic_fps if mosaic_fps > 0 else 0.0
        self._mosaic_at = 0.0
        self.mosaics = 0
        self.timing_log = TimingLog(os.path.join(out_dir, "timing.csv"), extra_columns=("source",))
        self.prediction_log = PredictionLog(os.path.join(out_dir, "predictions.jsonl"))
        self.processed = 0
        self.error = None  # type: Optional[BaseException]
        self._reported = False
        self._on_error = on_error
        self._queue = None  # type: Optional[queue.Queue]
        self._thread = None  # type: Optional[threading.Thread]
        if threaded:
            self._queue = queue.Queue(maxsize=QUEUED_BATCHES)
            self._thread = threading.Thread(target=self._work, name="emitter", daemon=True)
            self._thread.start()

    @property
    def stop_requested(self) -> bool:
        return self.mosaic_sinks.stop_requested

    def note(self, track: SourceTrack, text: str) -> None:
        """A source's state on its tile and the live page (ended, failed); from the main thread, between batches."""
        if self.mosaic is not None:
            self.mosaic.note(track.name, text)
        if self.live_status is not None:
            self.live_status.note(track.name, text)

    def emit(self, batch: List[Tuple[SourceTrack, Processed]]) -> None:
        if self._queue is None:
            self._emit(batch)
            return
        hand_over(self, self._queue, batch)

    def _work(self) -> None:
        while True:
            batch = self._queue.get()
            if batch is None:
                break
            if self.error is not None:
                continue  # drain: a failed emitter keeps accepting so the main thread never blocks
            try:
                self._emit(batch)
            except BaseException as e:  # noqa: B902 - handed to the main thread by emit() and close()
                fail(self, e)

    def _emit(self, batch: List[Tuple[SourceTrack, Processed]]) -> None:
        for track, done in batch:
            hud = self._emit_one(track, done)
            if self.live_status is not None:
                self.live_status.publish_source(self._slot_of[track.name], hud, track.processed,
                                                done.frame.index, track.captured() if track.captured is not None
                                                else track.processed)
        now = time.perf_counter()
        if self.mosaic is not None and now - self._mosaic_at >= self._mosaic_period_s:
            self._mosaic_at = now
            self.mosaic_sinks.write(self.mosaic.compose(), self.mosaics)
            self.mosaics += 1

    def _hud(self, track: SourceTrack, done: Processed) -> HudInfo:
        timing, sample, cfg = done.timing, self.stats.latest(), self.config
        p95_ms = track.rolling.p95_ms()
        return HudInfo(
            fps=track.rolling.fps(), stage_ms={"pre": timing.pre_ms, "infer": timing.infer_ms, "post": timing.post_ms,
                                               "draw": track.last_draw_ms},
            rss_mb=sample.rss_mb, ram_used_mb=sample.ram_used_mb, ram_total_mb=sample.ram_total_mb,
            gpu_mb=sample.gpu_mb, model=cfg.model.name, backend=cfg.engine.backend, precision=cfg.engine.precision,
            realtime_ok=None if p95_ms is None else p95_ms <= track.budget_ms, budget_ms=track.budget_ms,
            p95_ms=p95_ms, random_weights=self.adapter.random_weights, dropped=track.dropped())

    def _emit_one(self, track: SourceTrack, done: Processed) -> HudInfo:
        hud = self._hud(track, done)
        timing, frame = done.timing, done.frame
        t0 = t1 = time.perf_counter()
        if self.draws:
            if track.overlay is None:
                track.overlay = Overlay(self.config.overlay)  # one per source: it caches per-frame-size metrics
            image = track.overlay.annotate(frame.image, done.result, hud, done.outlined)
            t1 = time.perf_counter()
            if track.sink is not None:
                track.sink.write(image, frame.index)
            if self.mosaic is not None:
                self.mosaic.update(track.name, image)
        t2 = time.perf_counter()
        timing.draw_ms, timing.sink_ms = (t1 - t0) * 1e3, (t2 - t1) * 1e3
        timing.latency_ms = (t2 - frame.capture_time) * 1e3
        track.last_draw_ms = timing.draw_ms
        self.timing_log.write(frame.index, frame.timestamp_s, timing, hud.dropped, hud.rss_mb, hud.gpu_mb,
                              extra=(track.name,))
        self.prediction_log.write(frame.index, done.result, track.name)
        track.accumulated.add(timing)
        # As for one source: the badge follows capture-to-result latency when live, the frame's own work in replay.
        track.rolling.add(t2, timing.latency_ms if track.live else service_ms(timing))
        track.processed += 1
        track.last_emitted = t2
        self.processed += 1
        return hud

    def close(self) -> None:
        """Emit what is queued, stop the worker, close the recordings, the mosaic's sinks and the logs; re-raise the
        first error (the worker's first)."""
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join()
            self._thread = None
        first = None  # type: Optional[BaseException]
        for closer in [t.sink for t in self.tracks if t.sink is not None] + [self.mosaic_sinks, self.timing_log,
                                                                           self.prediction_log]:
            try:
                closer.close()
            except Exception as e:  # noqa: BLE001 - every file gets its close(); the first failure is raised after
                first = first or e
        if self.error is not None and not self._reported:
            self._reported = True
            raise self.error
        if first is not None:
            raise first
