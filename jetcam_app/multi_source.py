"""Several sources, one engine: per-source capture threads -> fair batches -> one model -> per-source outputs.

A source that fails to open, raises, stalls or ends is logged and counted and never stops the others (live
sources reconnect inside their own read()). The run ends when every source has ended, on a stop request
(Ctrl-C, SIGTERM, q in the window) or when every source reached --max-frames, which counts per source.
"""
from __future__ import annotations

import collections
import dataclasses
import json
import logging
import os
import sys
import threading
import time
from typing import Any, Dict, List, Optional, Sequence, Tuple

from .config import Config, SourceConfig, to_dict
from .cores import usable_cores
from .errors import JetcamError, first_line
from .inference.adapters.base import build_core, create_adapter
from .inference.batch_stages import batch_example
from .inference.fused_batch_stages import make_batch_stages
from .inference.engines.base import create_engine
from .output.input_recorder import LazyInputRecorder
from .output.multi_emitter import QUEUED_BATCHES, MultiEmitter, SourceTrack, per_source_path
from .output.sinks.base import build_sinks
from .output.live_status import MultiLiveStatus, SourceStatus
from .output.progress import ProgressReporter
from .output.run_folder import prepare_outputs
from .output.sinks.video_file import LazyVideoFileSink
from .output.sinks.web import WebSink
from .output.sinks.window import DisplaySink, display_available
from .pipeline import DEFAULT_TARGET_FPS, GIL_SWITCH_INTERVAL_S, close_in_reverse, frozen_heap
from .sources.mux import Doorbell, Scheduler, SourceFeed
from .sources.spec import create_source
from .stats import StatsPoller
from .verdict import build_summary

log = logging.getLogger(__name__)
SEVERAL_DECODE_THREADS = 2  # the fewest decoder threads a video file gets when several sources share the process


def _emit_batch(emitter: MultiEmitter, batch_sources: List[Tuple[SourceFeed, SourceTrack]],
                results: List[Any]) -> None:
    """The batch's processed frames to the emitter; a frame a remote engine dropped (None) is counted against its
    source (and in the engine's health()) and, as in one-source runs, not towards --max-frames."""
    kept = []
    for (feed, track), done in zip(batch_sources, results):
        if done is None:
            track.engine_dropped += 1
            feed.lost += 1
        else:
            kept.append((track, done))
    if kept:
        emitter.emit(kept)


def several_decoders(configs: Sequence[SourceConfig], cores: Optional[int] = None) -> List[SourceConfig]:
    """With several sources, a video file left at decode_threads 0 gets its share of the cores, at least
    SEVERAL_DECODE_THREADS: OpenCV's choice (one thread per core, up to 16, for each file) puts hundreds of decoder
    threads on the cores at 32 sources, and a fixed 2 starves 2 sources on a 16-core machine."""
    if len(configs) < 2:
        return list(configs)
    share = max(SEVERAL_DECODE_THREADS, min(16, (cores or usable_cores()) // len(configs)))
    return [dataclasses.replace(c, decode_threads=c.decode_threads or share) for c in configs]


def _reserve_buffers(stages: Any, sources: Sequence[Any], queue_size: int) -> None:
    """Page-locked buffers for every frame the sources can hold at once, allocated before the clock starts: its
    channel's (a lossless queue, or a live source's one slot), the one being decoded, one in each batch in flight,
    in the emitter's queue and being emitted."""
    pool = stages.host_buffers
    if pool is None:
        return
    counts = collections.Counter()  # type: collections.Counter
    for source in sources:
        if source.frame_size and source.buffers is pool:
            held = (1 if source.is_live else queue_size) + 1 + stages.in_flight + QUEUED_BATCHES + 1
            counts[(source.frame_size[1], source.frame_size[0], 3)] += held
    for shape, count in counts.items():
        if pool.reserve(shape, count) < count:
            log.info("page-locked frame buffers for %dx%d: the pool's %d MB hold fewer than the %d the sources may "
                     "use at once; the others are copied", shape[1], shape[0], pool.limit_bytes >> 20, count)


class MultiSourcePipeline:
    """Owns the run's threads and resources. `sources` may be injected as (name, Source) pairs (tests, bench);
    otherwise config.sources are created. `stop` may be shared with a caller that owns the signal handlers."""

    def __init__(self, config: Config, sources: Optional[Sequence[Tuple[str, Any]]] = None, engine=None,
                 adapter=None, stop: Optional[threading.Event] = None):
        # the decoder threads each source gets, so the summary's config says what ran
        self.config = dataclasses.replace(config, sources=tuple(several_decoders(config.sources)))
        self.stop = stop or threading.Event()
        self.stop_reason = ""
        self._sources = list(sources) if sources is not None else None
        self._engine = engine
        self._adapter = adapter
        self.summary = {}  # type: Dict[str, Any]
        self.failed_to_open = {}  # type: Dict[str, str]
        self._padded = 0  # batch slots a fixed-shape engine ran without a frame
        self.out_dir = None  # type: Optional[str]  # the run folder, once created
        self.started_unix = None  # type: Optional[float]  # time.time() when the clock started
        self._fallbacks = None  # type: Optional[int]  # frames the fused graph's result was not exact for
        self._copied = None  # type: Optional[int]  # frames the fused graph copied on the inference thread

    def request_stop(self, reason: str) -> None:
        """Safe from signal handlers and other threads: the loop ends after the current batch."""
        if not self.stop.is_set():
            self.stop_reason = reason
        self.stop.set()

    def _open_sources(self) -> List[Tuple[str, Any]]:
        """Every source that opens; one that does not is logged and left out, unless none opens."""
        pairs = self._sources
        if pairs is None:
            pairs = [(c.name, create_source(c)) for c in self.config.sources]
        opened, first_error = [], None
        for name, source in pairs:
            try:
                source.open()
                opened.append((name, source))
            except JetcamError as e:
                first_error = first_error or e
                self.failed_to_open[name] = first_line(e)
                log.error("source %s did not open: %s; the other sources go on", name, self.failed_to_open[name])
                source.close()
        if not opened and first_error is not None:
            raise first_error
        return opened

    def run(self) -> Dict[str, Any]:
        cfg = self.config
        out_dir = self.out_dir = prepare_outputs(cfg.output)
        log.info("results go to %s", out_dir)
        adapter = self._adapter or create_adapter(cfg.model)
        engine = self._engine or create_engine(cfg.engine)
        closers = []  # type: List[Any]
        switch_interval_s = sys.getswitchinterval()
        sys.setswitchinterval(GIL_SWITCH_INTERVAL_S)  # as pipeline.py: the inference thread waits less for the GIL
        feeds = []  # type: List[SourceFeed]
        tracks = []  # type: List[SourceTrack]
        stats = emitter = None
        started = time.perf_counter()
        error = None  # type: Optional[BaseException]
        try:
            opened = self._open_sources()
            closers.extend(source for _, source in opened)
            max_batch = cfg.pipeline.max_batch or len(opened)
            # Fixed-shape engines are built for the largest batch and smaller ones padded (batch_stages.py).
            engine.load(build_core(adapter), batch_example(adapter, max_batch), cfg.model.name)
            closers.append(engine)
            stages = make_batch_stages(adapter, engine, max_batch, cfg.pipeline.cuda_graph, cfg.pipeline.in_flight)
            stages.warm_up()
            for _, source in opened:  # before their threads start: frames decode into the stages' upload buffers
                if source.buffers is None:
                    source.buffers = stages.host_buffers
            for shape in sorted({(s.frame_size[1], s.frame_size[0], 3) for _, s in opened if s.frame_size}):
                stages.prepare(shape)  # graphs captured now, not on a camera's first frames
            _reserve_buffers(stages, [source for _, source in opened], cfg.pipeline.queue_size)
            stats = StatsPoller(cfg.stats.interval_s, engine.device.type)
            stats.start()
            headless = cfg.output.headless if cfg.output.headless is not None else not display_available()
            bell = Doorbell()
            targets = [cfg.pipeline.target_fps or source.nominal_fps or DEFAULT_TARGET_FPS for _, source in opened]
            status = self._live_status(opened)
            web = self._web_sink(status, [name for name, _ in opened])
            if web is not None:
                closers.append(web)  # closed again, harmlessly, with the mosaic's sinks
            closers.append(ProgressReporter(status).start())  # closed after the emitter: the last count shows
            for (name, source), target_fps in zip(opened, targets):
                recorder = None
                if cfg.output.save_input:
                    recorder = LazyInputRecorder(per_source_path(cfg.output.save_input, name),
                                                 source.nominal_fps or target_fps)
                    closers.append(recorder)
                feed = SourceFeed(name, source, bell, cfg.pipeline.queue_size, cfg.pipeline.max_frames,
                                  on_frame=recorder.write if recorder is not None else None)
                feeds.append(feed)
                own = []  # type: List[Any]  # this source's own outputs: its recording, its picture on the page
                if cfg.output.record and not cfg.output.mosaic:
                    own.append(LazyVideoFileSink(per_source_path(cfg.output.record, name), target_fps))
                if web is not None:
                    own.append(web.source_sink(name))
                tracks.append(SourceTrack(name, source.is_live, target_fps,
                                          lambda capture=feed.capture: capture.dropped,
                                          build_sinks(own) if own else None,
                                          captured=lambda capture=feed.capture: capture.captured))
            mosaic_fps = max(targets)
            emitter = MultiEmitter(cfg, out_dir, adapter, stats, tracks, self._mosaic_sinks(headless, mosaic_fps, web),
                                   mosaic_fps, threaded=headless, on_error=self.request_stop, live_status=status)
            closers.append(emitter)
            log.info("%d sources (%s) -> %s on %s (%s), batches of up to %d%s; %s", len(feeds),
                     ", ".join(f.name for f in feeds), cfg.model.name, cfg.engine.backend, cfg.engine.precision,
                     max_batch, " padded" if stages.padded_batch else "", stats.provider_report())
            try:
                with frozen_heap():
                    started = emitter.timing_log.clock_start = time.perf_counter()
                    self.started_unix = time.time()
                    for feed in feeds:
                        feed.capture.start()
                    self._loop(stages, Scheduler(feeds, bell, max_batch), dict(zip(feeds, tracks)), emitter)
            finally:
                self._padded = stages.padded_frames
                self._fallbacks = stages.fallbacks
                self._copied = stages.copied_frames
        except BaseException as e:  # noqa: B902 - re-raised below, after every resource is closed
            error = e
            self.request_stop("error: %s" % first_line(e))
        finally:
            wall_s = time.perf_counter() - started
            sys.setswitchinterval(switch_interval_s)
            self.stop.set()
            self._join_captures(feeds)
            if stats is not None:
                stats.stop()
            error = close_in_reverse(closers, error)
            if emitter is not None:
                self.summary = self._write_summary(out_dir, feeds, tracks, emitter, wall_s, started, adapter, stats,
                                                   engine.health() if engine is not None else {})
        if error is not None:
            raise error
        return self.summary

    def _loop(self, stages: Any, scheduler: Scheduler, track_of: Dict[SourceFeed, SourceTrack],
              emitter: MultiEmitter) -> None:
        """As pipeline.py's loop, a batch at a time: up to `stages.in_flight` batches are submitted before the
        oldest is finished; batches in flight when the run stops are finished and emitted."""
        inflight = collections.deque()  # type: collections.deque
        ended = set()  # type: set
        try:
            while not self.stop.is_set():
                batch = scheduler.gather(0.0 if inflight else 0.1)
                for feed in scheduler.feeds:
                    if feed.done and feed not in ended:
                        ended.add(feed)
                        emitter.note(track_of[feed], "failed" if feed.capture.error is not None else "ended")
                if batch:
                    batch_sources = [(feed, track_of[feed]) for feed, _ in batch]
                    inflight.append((batch_sources, stages.submit([frame for _, frame in batch])))
                if inflight and (not batch or len(inflight) >= stages.in_flight):
                    batch_sources, work = inflight.popleft()
                    _emit_batch(emitter, batch_sources, stages.finish(work))
                    if emitter.stop_requested:
                        self.request_stop("q pressed in the window")
                elif not batch and not inflight and scheduler.finished:
                    self.request_stop("every source ended")
        finally:
            failing = sys.exc_info()[0] is not None
            while inflight:
                batch_sources, work = inflight.popleft()
                try:
                    _emit_batch(emitter, batch_sources, stages.finish(work))
                except Exception as e:  # noqa: BLE001 - the error already propagating is the one to report
                    if not failing:
                        raise
                    log.debug("batch in flight lost after the error: %s", e)

    def _join_captures(self, feeds: Sequence[SourceFeed]) -> None:
        """Every capture thread stops together; one stuck in a read has its source closed to unblock it."""
        for feed in feeds:
            feed.stop.set()
        deadline = time.perf_counter() + 5.0
        for feed in feeds:
            if feed.capture.ident is not None:
                feed.capture.join(max(0.0, deadline - time.perf_counter()))
        for feed in feeds:
            if feed.capture.is_alive():
                feed.source.close()
                feed.capture.join(5.0)

    def _live_status(self, opened: Sequence[Tuple[str, Any]]) -> MultiLiveStatus:
        """Each opened source's live figures and the aggregate, for the page and the progress line."""
        cfg = self.config
        sources = []
        for name, source in opened:
            counts = [n for n in (source.frame_count, cfg.pipeline.max_frames) if n]
            sources.append(SourceStatus(name, lambda source=source: source.reconnects, min(counts) if counts else None))
        return MultiLiveStatus({"source": ", ".join(name for name, _ in opened), "model": cfg.model.name,
                                "backend": cfg.engine.backend, "precision": cfg.engine.precision}, sources)

    def _web_sink(self, status: MultiLiveStatus, names: Sequence[str]) -> Optional[WebSink]:
        """The live page (the mosaic, each source's own stream, the figures), when --http asks for it."""
        cfg = self.config.output
        if not cfg.http_port:
            return None
        web = WebSink(cfg.http_port, cfg.http_host, cfg.http_token, status, sources=names)
        log.info("live page (the mosaic and each source's own stream) on %s%s", web.url,
                 "?token=..." if cfg.http_token else "")
        return web

    def _mosaic_sinks(self, headless: bool, fps: float, web: Optional[WebSink]):
        cfg = self.config.output
        sinks = []  # type: List[Any]
        if not headless:
            sinks.append(DisplaySink("jetcam_app"))
        if cfg.record and cfg.mosaic:
            sinks.append(LazyVideoFileSink(cfg.record, fps))
        if web is not None:
            sinks.append(web)
        return build_sinks(sinks)

    def _write_summary(self, out_dir, feeds, tracks, emitter, wall_s, started, adapter, stats,
                       engine_health: Dict[str, Any]) -> Dict[str, Any]:
        cfg = self.config
        sections = {}  # type: Dict[str, Any]
        for feed, track in zip(feeds, tracks):
            capture, source = feed.capture, feed.source
            # Its own wall time: a short file that ended early is judged on the time it ran.
            own_wall_s = (track.last_emitted - started) if track.last_emitted is not None else wall_s
            dropped = capture.dropped + track.engine_dropped
            sections[feed.name] = build_summary(capture.captured, track.processed, dropped, own_wall_s,
                                                track.accumulated, track.target_fps, {
                "source": source.describe(), "live": bool(source.is_live), "reconnects": source.reconnects,
                "end_reason": feed.end_reason or self.stop_reason,
                "error": None if capture.error is None else first_line(capture.error),
                "source_stop_reason": source.stop_reason, "source_skipped_frames": source.skipped_frames,
                "unprocessed_at_stop": max(0, capture.captured - track.processed - dropped),
                "engine_dropped_frames": track.engine_dropped,
            })
        for name, reason in self.failed_to_open.items():
            sections[name] = {"error": reason, "opened": False}
        ok = [s["realtime"]["ok"] for s in sections.values() if "realtime" in s]
        target_fps = cfg.pipeline.target_fps or (tracks[0].target_fps if tracks else DEFAULT_TARGET_FPS)
        summary = build_summary(sum(f.capture.captured for f in feeds), emitter.processed,
                                sum(f.capture.dropped for f in feeds) + sum(t.engine_dropped for t in tracks), wall_s,
                                emitter.timing_log.accumulated, target_fps, dict(engine_health, **{
            "stop_reason": self.stop_reason, "model": cfg.model.name, "weights": adapter.describe_weights(),
            "backend": cfg.engine.backend, "precision": cfg.engine.precision,
            "stats_provider": stats.provider_report() if stats is not None else None,
            "sources": sections, "padded_batch_slots": self._padded,
            "graph_fallbacks": self._fallbacks, "copied_frames": self._copied, "config": to_dict(cfg),
            "started_unix": self.started_unix,
        }))
        bad = [name for name, s in sections.items() if not s.get("realtime", {}).get("ok", False)]
        summary["realtime"]["ok"] = bool(ok) and not bad
        summary["realtime"]["rule"] = "every source real-time by its own verdict"
        summary["verdict"] = "all %d sources real-time: %s" % (len(sections), "yes" if not bad else
                                                                "no (%s)" % ", ".join(bad))
        path = os.path.join(out_dir, "summary.json")
        try:
            with open(path + ".tmp", "w") as f:
                json.dump(summary, f, indent=2, sort_keys=True, default=str)
            os.replace(path + ".tmp", path)
        except OSError as e:
            log.error("could not write %s: %s", path, e)
        return summary
