"""Wiring and lifecycle: source -> capture thread -> preprocess -> engine -> postprocess -> overlay -> sinks -> logs."""
from __future__ import annotations

import collections
import contextlib
import gc
import logging
import os
import sys
import threading
import time
from typing import Any, Dict, List, Optional

from .config import Config, to_dict
from .errors import first_line
from .inference.adapters.base import build_core, create_adapter
from .inference.engines.base import create_engine
from .inference.fused_stages import make_stages
from .inference.stages import Stages
from .output.diskspace import SpaceReserve, write_json_atomic
from .output.emitter import FrameEmitter
from .output.input_recorder import LazyInputRecorder
from .output.sinks.base import build_sinks
from .output.live_status import LiveStatus
from .output.progress import ProgressReporter
from .output.run_folder import prepare_outputs
from .output.sinks.image_files import ImageFilesSink
from .output.sinks.web import WebSink
from .output.sinks.video_file import LazyVideoFileSink
from .output.sinks.window import DisplaySink, display_available
from .sources.capture import CaptureThread
from .sources.spec import create_source, prediction_source
from .stats import StatsPoller
from .verdict import build_summary

log = logging.getLogger(__name__)
DEFAULT_TARGET_FPS = 30.0
GIL_SWITCH_INTERVAL_S = 0.0005


@contextlib.contextmanager
def frozen_heap():
    """Everything alive before the run (torch, the model, the modules) is kept out of the garbage collector's
    full collections during it: one would walk all of it while holding the GIL, and every thread would stop for
    tens of milliseconds (frames dropped; docs/performance.md). What the run allocates is still collected."""
    gc.collect()
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def close_in_reverse(closers: List[Any], error: Optional[BaseException]) -> Optional[BaseException]:
    """Close every resource, last opened first, even when one fails; the error to report (the first one)."""
    for closer in reversed(closers):
        try:
            closer.close()
        except Exception as close_error:  # noqa: BLE001 - keep closing the rest; report the first error
            log.error("closing %s failed: %s", type(closer).__name__, close_error)
            error = error or close_error
    return error


class Pipeline:
    """Owns the run's threads and resources; components may be injected (tests, the benchmark)."""

    def __init__(self, config: Config, source=None, engine=None, adapter=None):
        self.config = config
        self.stop = threading.Event()
        self.stop_reason = ""
        self._source = source
        self._engine = engine
        self._adapter = adapter
        self.summary = {}  # type: Dict[str, Any]
        self.out_dir = None  # type: Optional[str]  # the run folder, once created
        self.started_unix = None  # type: Optional[float]  # time.time() when the clock started
        self._stages = None  # type: Optional[Stages]
        self._reserve = None  # type: Optional[SpaceReserve]

    def request_stop(self, reason: str) -> None:
        """Safe from signal handlers and other threads: the main loop ends after the current frame."""
        # an error that comes after another stop (a last frame failing to record) is still the reason to report
        if not self.stop.is_set() or (reason.startswith("error") and not self.stop_reason.startswith("error")):
            self.stop_reason = reason
        self.stop.set()

    def run(self) -> Dict[str, Any]:
        cfg = self.config
        out_dir = self.out_dir = prepare_outputs(cfg.output)
        log.info("results go to %s", out_dir)
        adapter = self._adapter or create_adapter(cfg.model)
        engine = self._engine or create_engine(cfg.engine)  # BackendUnavailable before any work
        # The stages come first (nothing is loaded yet): the source is built with their frame buffers.
        stages = self._stages = make_stages(adapter, engine, cuda_graph=cfg.pipeline.cuda_graph,
                                            outline_boxes=cfg.overlay.enabled, in_flight=cfg.pipeline.in_flight)
        source = self._source or create_source(cfg.source, buffers=stages.host_buffers)
        closers = []  # type: List[Any]  # closed in reverse order, always
        # Python hands the GIL over every 5 ms by default: each time the main thread releases it (a CUDA sync,
        # a frame read), a drawing or capture thread may keep it up to 5 ms. A shorter interval keeps the
        # inference thread from queueing behind them.
        switch_interval_s = sys.getswitchinterval()
        sys.setswitchinterval(GIL_SWITCH_INTERVAL_S)
        capture = stats = emitter = None
        started = time.perf_counter()
        error = None  # type: Optional[BaseException]
        self._reserve = SpaceReserve(out_dir)  # room for summary.json should the disk fill during the run
        try:
            source.open()
            closers.append(source)
            engine.load(build_core(adapter), adapter.example_input(), cfg.model.name)
            closers.append(engine)
            if source.frame_size:
                # every source here delivers 3-channel BGR frames; a frame of another shape is captured on sight
                stages.prepare((source.frame_size[1], source.frame_size[0], 3))
            # Logs open only once the source, model and engine are known to work: a run that fails
            # earlier leaves an earlier run's logs untouched.
            target_fps = cfg.pipeline.target_fps or source.nominal_fps or DEFAULT_TARGET_FPS
            stats = StatsPoller(cfg.stats.interval_s, engine.device.type)
            stats.start()
            headless = cfg.output.headless if cfg.output.headless is not None else not display_available()
            status = LiveStatus({"source": source.describe(), "model": cfg.model.name, "backend": cfg.engine.backend,
                                 "precision": cfg.engine.precision}, self._total_frames(source))
            sinks = self._make_sinks(target_fps, headless, source, out_dir, status)
            closers.append(sinks)
            closers.append(ProgressReporter(status).start())  # closed after the emitter: the last count shows
            input_recorder = self._make_input_recorder(source, target_fps)
            if input_recorder is not None:
                closers.append(input_recorder)
            capture = CaptureThread(source, self.stop, cfg.pipeline.queue_size,
                                    on_frame=input_recorder.write if input_recorder else None)
            # HighGUI wants its window on the main thread; headless, drawing and writing get a thread of
            # their own and overlap with the next frame's inference.
            emitter = FrameEmitter(cfg, out_dir, adapter, stats, 1000.0 / target_fps, sinks,
                                   threaded=headless, on_error=self.request_stop,
                                   gpu_outlines=stages.outlines_on_device, dropped=lambda: capture.dropped,
                                   live=source.is_live, captured=lambda: capture.captured,
                                   source_name=prediction_source(cfg.source), live_status=status,
                                   still_images=source.still_images)
            closers.append(emitter)
            log.info("source %s -> %s on %s (%s); %s", source.describe(), cfg.model.name, cfg.engine.backend,
                     cfg.engine.precision, stats.provider_report())
            with frozen_heap():
                started = emitter.timing_log.clock_start = time.perf_counter()
                self.started_unix = time.time()
                capture.start()
                self._loop(stages, capture, emitter)
        except BaseException as e:  # noqa: B902 - re-raised below, after every resource is closed
            error = e
            self.request_stop("error: %s" % first_line(e))
        finally:
            wall_s = time.perf_counter() - started
            sys.setswitchinterval(switch_interval_s)
            self.stop.set()
            if capture is not None and capture.ident is not None:  # started
                capture.join(5.0)
                if capture.is_alive():
                    source.close()  # unblocks a read stuck in the source
                    capture.join(5.0)
            if stats is not None:
                stats.stop()
            error = close_in_reverse(closers, error)
            if capture is not None and capture.error is not None:
                self.request_stop("error: %s" % first_line(capture.error))
            if emitter is not None:
                self.summary = self._write_summary(out_dir, capture, emitter.processed, wall_s,
                                                   emitter.timing_log.accumulated, target_fps, source, adapter, stats,
                                                   engine.health())
            self._reserve.release()
        if error is None and capture is not None and capture.error is not None:
            error = capture.error
        if error is not None:
            raise error
        return self.summary

    def _loop(self, stages: Stages, capture: CaptureThread, emitter: FrameEmitter) -> None:
        """Up to `stages.in_flight` frames are in flight: on CUDA frame n + 1 is uploaded and queued while the GPU
        still works on frame n; then frame n is finished and handed to the emitter (drawn, written and logged
        on its own thread when headless). Frames in flight when the run stops are finished and emitted."""
        max_frames = self.config.pipeline.max_frames
        in_flight = collections.deque()  # type: collections.deque
        submitted = 0
        try:
            while not self.stop.is_set():
                frame = None
                if not (max_frames and submitted >= max_frames):
                    frame = capture.channel.get(0.0 if in_flight else 0.1)
                if frame is not None:
                    submitted += 1
                    in_flight.append(stages.submit(frame))
                if in_flight and (frame is None or len(in_flight) >= stages.in_flight):
                    if not self._emit(emitter, stages.finish(in_flight.popleft())):
                        submitted -= 1  # --max-frames counts processed frames, not those a remote engine dropped
                    if emitter.stop_requested:
                        self.request_stop("q pressed in the window")
                elif frame is None and not in_flight:
                    if max_frames and submitted >= max_frames:
                        self.request_stop("--max-frames %d reached" % max_frames)
                    elif capture.channel.finished:
                        self.request_stop("end of stream" if capture.end_of_stream else "capture stopped")
        finally:
            failing = sys.exc_info()[0] is not None
            while in_flight:
                try:
                    self._emit(emitter, stages.finish(in_flight.popleft()))
                except Exception as e:  # noqa: BLE001 - the error already propagating is the one to report
                    if not failing:
                        raise
                    log.debug("frame in flight lost after the error: %s", e)

    @staticmethod
    def _emit(emitter: "FrameEmitter", processed) -> bool:
        if processed is None:  # a remote engine dropped the frame (counted in its health())
            return False
        emitter.emit(processed)
        return True

    def _total_frames(self, source) -> Optional[int]:
        counts = [n for n in (source.frame_count, self.config.pipeline.max_frames) if n]
        return min(counts) if counts else None

    def _make_sinks(self, fps: float, headless: bool, source, out_dir: str, status: LiveStatus):
        cfg = self.config.output
        sinks = []
        if not headless:
            sinks.append(DisplaySink("jetcam_app"))
        # --save (the default for images): annotated images under their own names; a video as <run>/annotated.mp4
        if source.still_images and cfg.save is not False:
            sinks.append(ImageFilesSink(out_dir, source.files))
        elif cfg.save and not cfg.record:
            sinks.append(LazyVideoFileSink(os.path.join(out_dir, "annotated.mp4"), fps))
        if cfg.record:
            if source.still_images:
                log.warning("--record makes one video of the images, each resized to the first one's size; the "
                            "annotated images themselves are saved in %s", out_dir)
            sinks.append(LazyVideoFileSink(cfg.record, fps))
        if cfg.http_port:
            web = WebSink(cfg.http_port, cfg.http_host, cfg.http_token, status)
            sinks.append(web)
            log.info("live page on %s%s", web.url, "?token=..." if cfg.http_token else "")
        return build_sinks(sinks)

    def _make_input_recorder(self, source, fps: float):
        if not self.config.output.save_input:
            return None
        return LazyInputRecorder(self.config.output.save_input, source.nominal_fps or fps)

    def _write_summary(self, out_dir, capture, processed, wall_s, timings, target_fps, source, adapter, stats,
                       engine_health=None):
        captured = capture.captured if capture is not None else 0
        engine_health = dict(engine_health or {})
        # frames a remote engine lost (server gone, request timed out) count as dropped, like a camera's overwrites
        dropped = (capture.dropped if capture is not None else 0) + int(engine_health.get("engine_dropped_frames", 0))
        summary = build_summary(captured, processed, dropped, wall_s, timings, target_fps, dict({
            "unprocessed_at_stop": max(0, captured - processed - dropped),
            "stop_reason": self.stop_reason, "source": source.describe(), "reconnects": source.reconnects,
            "out_dir": out_dir, "started_unix": self.started_unix,
            "source_stop_reason": source.stop_reason, "source_skipped_frames": source.skipped_frames,
            "model": self.config.model.name, "weights": adapter.describe_weights(),
            "backend": self.config.engine.backend, "precision": self.config.engine.precision,
            "stats_provider": stats.provider_report() if stats is not None else None,
            # frames whose fused-graph result was not provably exact and went through the dynamic postprocessing
            "graph_fallbacks": self._stages.fallbacks if self._stages is not None else None,
            "config": to_dict(self.config),
        }, **engine_health))
        path = os.path.join(out_dir, "summary.json")
        try:
            write_json_atomic(path, summary, self._reserve)
        except OSError as e:
            log.error("could not write %s: %s", path, e)
        return summary
