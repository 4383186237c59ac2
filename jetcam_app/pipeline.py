"""Wiring and lifecycle: source -> capture thread -> preprocess -> engine -> postprocess -> overlay -> sinks -> logs."""
from __future__ import annotations

import collections
import logging
import os
import sys
import threading
import time
from typing import Any, Dict, List, Optional

from .config import Config, to_dict
from .errors import OutputError
from .inference.adapters.base import build_core, create_adapter
from .inference.engines.base import create_engine
from .inference.fused_stages import make_stages
from .output.diskspace import SpaceReserve, write_json_atomic
from .output.emitter import FrameEmitter
from .output.input_recorder import LazyInputRecorder
from .output.sinks.base import build_sinks
from .output.sinks.mjpeg_http import MjpegHttpSink
from .output.sinks.video_file import LazyVideoFileSink
from .output.sinks.window import DisplaySink, display_available
from .sources.capture import CaptureThread
from .sources.spec import create_source
from .stats import StatsPoller
from .verdict import build_summary

log = logging.getLogger(__name__)
DEFAULT_TARGET_FPS = 30.0
GIL_SWITCH_INTERVAL_S = 0.0005


def prepare_out_dir(path: str) -> str:
    try:
        os.makedirs(path, exist_ok=True)
        probe = os.path.join(path, ".write-test")
        with open(probe, "w"):
            pass
        os.remove(probe)
    except OSError as e:
        raise OutputError("cannot write to the output folder %s (%s); pass --out DIR with a writable folder"
                          % (path, e.strerror or e)) from e
    return path


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
        self._stages = None  # type: Any
        self._reserve = None  # type: Optional[SpaceReserve]

    def request_stop(self, reason: str) -> None:
        """Safe from signal handlers and other threads: the main loop ends after the current frame."""
        # an error that comes after another stop (a last frame failing to record) is still the reason to report
        if not self.stop.is_set() or (reason.startswith("error") and not self.stop_reason.startswith("error")):
            self.stop_reason = reason
        self.stop.set()

    def run(self) -> Dict[str, Any]:
        cfg = self.config
        out_dir = prepare_out_dir(cfg.output.out_dir)
        adapter = self._adapter or create_adapter(cfg.model)
        engine = self._engine or create_engine(cfg.engine)  # BackendUnavailable before any work
        source = self._source or create_source(cfg.source)
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
            self._stages = make_stages(adapter, engine, outline_boxes=cfg.overlay.enabled,
                                       in_flight=cfg.pipeline.in_flight)
            source.buffers = getattr(self._stages, "host_buffers", None)
            prepare = getattr(self._stages, "prepare", None)
            if prepare is not None and source.frame_size:
                # every source here delivers 3-channel BGR frames; a frame of another shape is captured on sight
                prepare((source.frame_size[1], source.frame_size[0], 3))
            # Logs open only once the source, model and engine are known to work: a run that fails
            # earlier leaves an earlier run's logs untouched.
            target_fps = cfg.pipeline.target_fps or source.nominal_fps or DEFAULT_TARGET_FPS
            stats = StatsPoller(cfg.stats.interval_s, engine.device.type)
            stats.start()
            headless = cfg.output.headless if cfg.output.headless is not None else not display_available()
            sinks = self._make_sinks(target_fps, headless)
            closers.append(sinks)
            # HighGUI wants its window on the main thread; headless, drawing and writing get a thread of
            # their own and overlap with the next frame's inference.
            emitter = FrameEmitter(cfg, out_dir, adapter, stats, 1000.0 / target_fps, sinks,
                                   threaded=headless, on_error=self.request_stop,
                                   gpu_outlines=getattr(self._stages, "outline_boxes", False))
            closers.append(emitter)
            input_recorder = self._make_input_recorder(source, target_fps)
            if input_recorder is not None:
                closers.append(input_recorder)
            capture = CaptureThread(source, self.stop, cfg.pipeline.queue_size,
                                    on_frame=input_recorder.write if input_recorder else None)
            emitter.capture = capture
            emitter.live = source.is_live
            log.info("source %s -> %s on %s (%s); %s", source.describe(), cfg.model.name, cfg.engine.backend,
                     cfg.engine.precision, stats.provider_report())
            started = time.perf_counter()
            capture.start()
            self._loop(self._stages, capture, emitter)
        except BaseException as e:  # noqa: B902 - re-raised below, after every resource is closed
            error = e
            self.request_stop("error: %s" % (str(e).splitlines()[0] if str(e) else type(e).__name__))
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
            for closer in reversed(closers):
                try:
                    closer.close()
                except Exception as close_error:  # noqa: BLE001 - keep closing the rest; report the first error
                    log.error("closing %s failed: %s", type(closer).__name__, close_error)
                    error = error or close_error
            if capture is not None and capture.error is not None:
                self.request_stop("error: %s" % (str(capture.error).splitlines() or [type(capture.error).__name__])[0])
            if emitter is not None:
                self.summary = self._write_summary(out_dir, capture, emitter.processed, wall_s,
                                                   emitter.timing_log.accumulated, target_fps, source, adapter, stats)
            self._reserve.release()
        if error is None and capture is not None and capture.error is not None:
            error = capture.error
        if error is not None:
            raise error
        return self.summary

    def _loop(self, stages, capture: CaptureThread, emitter: "FrameEmitter") -> None:
        """Up to `stages.depth` frames are in flight: on CUDA frame n + 1 is uploaded and queued while the GPU
        still works on frame n; then frame n is finished and handed to the emitter (drawn, written and logged
        on its own thread when headless). Frames in flight when the run stops are finished and emitted."""
        max_frames = self.config.pipeline.max_frames
        inflight = collections.deque()  # type: collections.deque
        submitted = 0
        try:
            while not self.stop.is_set():
                frame = None
                if not (max_frames and submitted >= max_frames):
                    frame = capture.channel.get(0.0 if inflight else 0.1)
                if frame is not None:
                    submitted += 1
                    inflight.append(stages.submit(frame))
                if inflight and (frame is None or len(inflight) >= stages.depth):
                    emitter.emit(stages.finish(inflight.popleft()))
                    if emitter.sinks.stop_requested:
                        self.request_stop("q pressed in the window")
                elif frame is None and not inflight:
                    if max_frames and submitted >= max_frames:
                        self.request_stop("--max-frames %d reached" % max_frames)
                    elif capture.channel.finished:
                        self.request_stop("end of stream" if capture.end_of_stream else "capture stopped")
        finally:
            failing = sys.exc_info()[0] is not None
            while inflight:
                try:
                    emitter.emit(stages.finish(inflight.popleft()))
                except Exception as e:  # noqa: BLE001 - the error already propagating is the one to report
                    if not failing:
                        raise
                    log.debug("frame in flight lost after the error: %s", e)

    def _make_sinks(self, fps: float, headless: bool):
        cfg = self.config.output
        sinks = []
        if not headless:
            sinks.append(DisplaySink("jetcam_app"))
        if cfg.record:
            sinks.append(LazyVideoFileSink(cfg.record, fps))
        if cfg.http_port:
            sinks.append(MjpegHttpSink(cfg.http_port))
            log.info("streaming MJPEG on http://127.0.0.1:%d/", cfg.http_port)
        return build_sinks(sinks)

    def _make_input_recorder(self, source, fps: float):
        if not self.config.output.save_input:
            return None
        return LazyInputRecorder(self.config.output.save_input, source.nominal_fps or fps)

    def _write_summary(self, out_dir, capture, processed, wall_s, timings, target_fps, source, adapter, stats):
        captured = capture.captured if capture is not None else 0
        dropped = capture.dropped if capture is not None else 0
        summary = build_summary(captured, processed, dropped, wall_s, timings, target_fps, {
            "unprocessed_at_stop": max(0, captured - processed - dropped),
            "stop_reason": self.stop_reason, "source": source.describe(), "reconnects": source.reconnects,
            "source_stop_reason": getattr(source, "stop_reason", None),
            "source_skipped_frames": getattr(source, "skipped_frames", 0),
            "model": self.config.model.name, "weights": adapter.describe_weights(),
            "backend": self.config.engine.backend, "precision": self.config.engine.precision,
            "stats_provider": stats.provider_report() if stats is not None else None,
            # frames whose fused-graph result was not provably exact and went through the dynamic postprocessing
            "graph_fallbacks": getattr(self._stages, "fallbacks", None),
            "config": to_dict(self.config),
        })
        path = os.path.join(out_dir, "summary.json")
        try:
            write_json_atomic(path, summary, self._reserve)
        except OSError as e:
            log.error("could not write %s: %s", path, e)
        return summary
