"""Emission of processed frames for 1..N sources: each source's HUD, overlay and own sinks, the shared logs, the
mosaic of several, the live status; inline or on a worker thread."""

import collections
import os
import queue
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from ..analytics.scene import process_many
from ..config import Config
from ..errors import first_line
from ..inference.stages import Processed
from ..dense_results import Mask, Poses
from ..types import Detections
from ..stats import StatsPoller, usable_cores
from ..verdict import service_ms
from .live_status import LiveStatus
from .logs import PredictionLog, TimingLog
from .mask_files import MaskFiles
from .mosaic import Mosaic
from .overlay import HudInfo, Overlay
from .sinks.base import NullSink, Sink

DRAW_THREADS = 2  # drawings in parallel on the emitter's pool, where there are cores to spare
QUEUED_BATCHES = 4  # batches waiting for the emitter thread (headless); the inference thread waits beyond that


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


def _trackable(result: Any) -> Detections:
    """What the tracker takes: detections as they are, poses as one "person" box each (their keypoints' extent)."""
    return result.as_detections() if isinstance(result, Poses) else result


class FrameEmitter:
    """Draws each processed frame (only when something shows or records it: its source's own sinks or the mosaic),
    hands it to the sinks and writes its log rows; with several sources the mosaic of their latest drawings goes to
    `mosaic_sinks` at `mosaic_fps`. Inline, or on a worker thread fed with whole batches through a small bounded
    queue (the inference thread waits when it is full, so nothing is dropped). `lanes`: the sources'
    sources.lanes.SourceLane objects; gpu_outlines: frames may come with their outlines drawn."""

    def __init__(self, config: Config, out_dir: str, adapter, stats: StatsPoller, lanes: Sequence[Any],
                 mosaic_sinks: Optional[Sink] = None, mosaic_fps: float = 0.0, threaded: bool = False,
                 on_error: Optional[Callable[[str], None]] = None, gpu_outlines: bool = False,
                 live_status: Optional[LiveStatus] = None, events: Any = None, notifier: Any = None):
        self.config = config
        self.adapter = adapter
        self.stats = stats
        self.lanes = list(lanes)
        self.live_status = live_status
        self._slot_of = {id(lane): i for i, lane in enumerate(self.lanes)}
        self.several = len(self.lanes) > 1  # the logs name each row's source
        self.mosaic_sinks = mosaic_sinks or NullSink()
        self.mosaic = None if isinstance(self.mosaic_sinks, NullSink) else Mosaic([lane.name for lane in self.lanes])
        self._draws = {id(lane): self.mosaic is not None or not isinstance(lane.sink, (NullSink, type(None)))
                       for lane in self.lanes}
        self._mosaic_period_s = 1.0 / mosaic_fps if mosaic_fps > 0 else 0.0
        self._mosaic_at = 0.0
        self.mosaics = 0
        self.timing_log = TimingLog(os.path.join(out_dir, "timing.csv"),
                                    extra_columns=("source",) if self.several else ())
        self.prediction_log = PredictionLog(os.path.join(out_dir, "predictions.jsonl"))
        self.mask_files = MaskFiles(os.path.join(out_dir, "masks")) if config.output.save_masks else None
        self.events = events  # output.events_log.EventLog where a source is tracked; its lanes' analytics write it
        self.notifier = notifier  # output.notify.hub.Notifier: MQTT and webhooks, told after each frame
        self.processed = 0
        self.error = None  # type: Optional[BaseException]
        self._reported = False
        self._on_error = on_error
        self._overlays = {}  # type: Dict[int, Overlay]  # one per drawing thread: it caches per-frame-size metrics
        self._pool = None  # type: Optional[ThreadPoolExecutor]
        self._pool_size = draw_threads(threaded, config.pipeline.draw_threads, gpu_outlines)
        if self._pool_size:
            self._pool = ThreadPoolExecutor(self._pool_size, thread_name_prefix="draw")
        self._queue = None  # type: Optional[queue.Queue]
        self._thread = None  # type: Optional[threading.Thread]
        if threaded:
            self._queue = queue.Queue(maxsize=QUEUED_BATCHES)
            self._thread = threading.Thread(target=self._work, name="emitter", daemon=True)
            self._thread.start()

    @property
    def stop_requested(self) -> bool:
        """A sink asked to stop (q pressed in the window)."""
        return self.mosaic_sinks.stop_requested or any(lane.sink is not None and lane.sink.stop_requested
                                                       for lane in self.lanes)

    def note(self, lane, text: str) -> None:
        """A source's state on its tile and the live page (ended, failed); from the main thread, between batches."""
        if self.mosaic is not None:
            self.mosaic.note(lane.name, text)
        if self.live_status is not None:
            self.live_status.note(self._slot_of[id(lane)], text)

    def emit(self, batch: List[Tuple[Any, Processed]]) -> None:
        """A batch's processed frames, each with its lane."""
        if self._queue is None:
            self._analyze_remote(batch)
            self._analyze_local(batch)
            for lane, done in batch:
                hud = self._hud(lane, done)
                self._complete(lane, done, hud, self._draw(lane, done, hud))
            return
        while True:  # wait for room (nothing is dropped); the worker's error, once stored, is raised here once
            if self.error is not None and not self._reported:
                self._reported = True
                raise self.error
            try:
                self._queue.put(batch, timeout=0.1)
                return
            except queue.Full:
                continue

    def _work(self) -> None:
        """Frames are drawn by a small pool (OpenCV drawing releases the GIL, so drawings overlap) and written and
        logged here in order; a drawing in progress is waited for as soon as no other batch is queued."""
        pending = collections.deque()  # type: collections.deque
        while True:
            batch = self._queue.get()
            if batch is None:
                break
            if self.error is not None:
                continue  # drain: a failed emitter keeps accepting so the main thread never blocks
            try:
                self._analyze_remote(batch)
                self._analyze_local(batch)
                for lane, done in batch:
                    hud = self._hud(lane, done)
                    if self._pool is None or not self._draws[id(lane)]:
                        self._complete_drawn(pending, until=0)  # rows stay in order
                        self._complete(lane, done, hud, self._draw(lane, done, hud))
                        continue
                    pending.append((lane, done, hud, self._pool.submit(self._draw, lane, done, hud)))
                    self._complete_drawn(pending, until=self._pool_size)
            except BaseException as e:  # noqa: B902 - handed to the main thread by emit() and close()
                self._fail(e)
        try:
            if self.error is None:
                self._complete_drawn(pending, until=0)
        except BaseException as e:  # noqa: B902
            self._fail(e)

    def _fail(self, e: BaseException) -> None:
        """The worker failed: keep the error for emit() and close() to raise, and report it at once."""
        self.error = e
        if self._on_error is not None:
            self._on_error("error: %s" % first_line(e))

    def _complete_drawn(self, pending: collections.deque, until: int) -> None:
        """Write and log drawn frames in order while more than `until` are pending, or any while none is queued."""
        while pending and (len(pending) > until or self._queue.empty()):
            lane, done, hud, drawing = pending.popleft()
            self._complete(lane, done, hud, drawing.result())

    @staticmethod
    def _analyze_remote(batch: List[Tuple[Any, Processed]]) -> None:
        """The batch's sources tracked in worker processes (analytics.pool): all of them at once."""
        remote = [(lane, done) for lane, done in batch
                  if getattr(lane.analytics, "pool", None) is not None and isinstance(done.result, (Detections, Poses))]
        if not remote:
            return
        tracked = [_trackable(done.result) for _, done in remote]
        items = [(lane.name, done.frame.index, done.frame.timestamp_s,
                  done.frame.hw[::-1], det, lane.source.reconnects)
                 for (lane, done), det in zip(remote, tracked)]
        for (lane, done), det, answer in zip(remote, tracked, remote[0][0].analytics.pool.process(items)):
            shown, done.scene = lane.analytics.apply(det, answer)
            done.result = done.result.with_tracks(shown) if isinstance(done.result, Poses) else shown

    @staticmethod
    def _analyze_local(batch: List[Tuple[Any, Processed]]) -> None:
        """Tracks, lines and zones in this process, before the frames are drawn, all of the batch's sources at once
        (their trackers stepped together: analytics.scene.process_many), each in its frame order: the result
        becomes the detections above the score threshold with their track IDs, and the scene what the overlay
        adds."""
        local = [(lane, done) for lane, done in batch
                 if lane.analytics is not None and getattr(lane.analytics, "pool", None) is None
                 and isinstance(done.result, (Detections, Poses))]
        if not local:
            return
        items = [(lane.analytics, done.frame.index, done.frame.timestamp_s, done.frame.hw[::-1],
                  _trackable(done.result), lane.source.reconnects) for lane, done in local]
        for (lane, done), (shown, scene) in zip(local, process_many(items)):
            done.scene = scene
            done.result = done.result.with_tracks(shown) if isinstance(done.result, Poses) else shown

    def _hud(self, lane, done: Processed) -> HudInfo:
        timing, sample, cfg = done.timing, self.stats.latest(), self.config
        p95_ms = lane.rolling.p95_ms()
        return HudInfo(
            fps=lane.rolling.fps(), stage_ms={"pre": timing.pre_ms, "infer": timing.infer_ms, "post": timing.post_ms,
                                              "draw": lane.last_draw_ms},
            rss_mb=sample.rss_mb, ram_used_mb=sample.ram_used_mb, ram_total_mb=sample.ram_total_mb,
            gpu_mb=sample.gpu_mb, model=cfg.model.name, backend=cfg.engine.backend, precision=cfg.engine.precision,
            realtime_ok=None if p95_ms is None else p95_ms <= lane.budget_ms, budget_ms=lane.budget_ms,
            p95_ms=p95_ms, random_weights=self.adapter.random_weights, dropped=lane.dropped(),
            still_images=lane.still_images)

    def _draw(self, lane, done: Processed, hud: HudInfo):
        """(annotated image, draw ms); (None, 0) where nothing shows or records this source's frames."""
        if not self._draws[id(lane)]:
            return None, 0.0
        overlay = self._overlay()
        t0 = time.perf_counter()
        image = overlay.annotate(done.frame.image, done.result, hud, done.outlined, scene=done.scene)
        return image, (time.perf_counter() - t0) * 1e3

    def _overlay(self) -> Overlay:
        """This thread's overlay (it caches per-frame-size metrics)."""
        overlay = self._overlays.get(threading.get_ident())
        if overlay is None:
            overlay = self._overlays[threading.get_ident()] = Overlay(self.config.overlay)
        return overlay

    def _snapshot(self, done: Processed, hud: HudInfo, image) -> Optional[bytes]:
        """The frame as drawn, as a JPEG (drawn now where nothing else drew it): an event's snapshot."""
        import cv2

        if image is None:
            image = self._overlay().annotate(done.frame.image, done.result, hud, done.outlined, scene=done.scene)
        ok, jpeg = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 80])
        return jpeg.tobytes() if ok else None

    def _complete(self, lane, done: Processed, hud: HudInfo, drawn) -> None:
        """Sinks and log rows; the row's memory and drop figures are the ones the frame's HUD shows."""
        image, draw_ms = drawn
        timing, frame = done.timing, done.frame
        t1 = time.perf_counter()
        if image is not None:
            if lane.sink is not None:
                lane.sink.write(image, frame.index)
            if self.mosaic is not None:
                self.mosaic.update(lane.name, image)
        t2 = time.perf_counter()
        timing.draw_ms, timing.sink_ms = draw_ms, (t2 - t1) * 1e3
        timing.latency_ms = (t2 - frame.capture_time) * 1e3
        lane.last_draw_ms = draw_ms
        self.timing_log.write(frame.index, frame.timestamp_s, timing, hud.dropped, hud.rss_mb, hud.gpu_mb,
                              extra=(lane.name,) if self.several else ())
        self.prediction_log.write(frame.index, done.result,
                                  (frame.name or lane.log_name) if lane.frame_names else lane.log_name)
        if self.mask_files is not None and isinstance(done.result, Mask):
            self.mask_files.write((frame.name or lane.name) if lane.frame_names else lane.name, frame.index,
                                  done.result)
        if self.several:  # one source's figures are the whole log's (timing_log.accumulated)
            lane.accumulated.add(timing)
        # The badge follows capture-to-result latency on live sources; in lossless replay frames wait in the queue
        # by design, so there it follows the frame's own processing time.
        lane.rolling.add(t2, timing.latency_ms if lane.live else service_ms(timing))
        lane.processed += 1
        lane.last_emitted = t2
        self.processed += 1
        if self.live_status is not None:
            self.live_status.publish(self._slot_of[id(lane)], hud, lane.processed, frame.index, lane.captured(),
                                     counts=None if lane.analytics is None else lane.analytics.live())
        if self.notifier is not None:
            self.notifier.frame(lane.name, frame.index, done.result, hud,
                                None if lane.analytics is None else lane.analytics.live(),
                                lambda: self._snapshot(done, hud, image))
        if self.mosaic is not None and t2 - self._mosaic_at >= self._mosaic_period_s:
            self._mosaic_at = t2
            self.mosaic_sinks.write(self.mosaic.compose(), self.mosaics)
            self.mosaics += 1

    def close(self) -> None:
        """Emit what is queued, stop the worker, close the sources' sinks, the mosaic's sinks and the logs; re-raise
        the first error (the worker's first)."""
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join()
            self._thread = None
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None
        first = None  # type: Optional[BaseException]
        # the tracks still open end with the run (their track_ended and zone_left events), before the log closes
        closers = [lane.analytics for lane in self.lanes if lane.analytics is not None]  # type: List[Any]
        closers += [lane.sink for lane in self.lanes if lane.sink is not None]
        for closer in closers + [self.mosaic_sinks, self.timing_log, self.prediction_log, self.events]:
            if closer is None:
                continue
            try:
                closer.close()
            except Exception as e:  # noqa: BLE001 - every file gets its close(); the first failure is raised after
                first = first or e
        if self.notifier is not None:  # after the analytics: the tracks ended with the run go out too
            self.notifier.close({lane.name: lane.analytics.live() for lane in self.lanes if lane.analytics is not None})
        if self.error is not None and not self._reported:
            self._reported = True
            raise self.error
        if first is not None:
            raise first
