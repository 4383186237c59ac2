"""The one lifecycle for 1..N sources: a capture thread and lane per source -> fair batches -> preprocess -> engine ->
postprocess -> per source: overlay -> sinks -> logs. One source is a batch of one on the same path.

A source that fails to open, raises, stalls or ends is logged and counted and never stops the others (live sources
reconnect inside their own read()); a lone source's failure is the run's. The run ends when every source has ended,
on a stop request (Ctrl-C, SIGTERM, q in the window) or when every source reached --max-frames, which counts per
source.
"""

import collections
import contextlib
import dataclasses
import gc
import logging
import os
import sys
import threading
import time
from typing import Any, Dict, List, Optional, Sequence, Tuple

from .analytics.wiring import any_tracked, check_task, detector_config, shown_exact, sources_analytics
from .config import MAX_BATCH, Config, SourceConfig, source_name
from .errors import JetcamError, first_line
from .inference.adapters.base import build_core, create_adapter
from .inference.engines.base import create_engine
from .inference.fused_stages import frame_pool, make_stages
from .inference.stages import Stages, batch_example
from .output.diskspace import SpaceReserve
from .output.emitter import QUEUED_BATCHES, FrameEmitter
from .output.events_log import EventLog
from .output.notify.hub import build_notifier
from .output.live_status import LiveStatus, SourceStatus
from .output.progress import ProgressReporter
from .output.run_folder import prepare_outputs
from .output.run_summary import RunFacts, one_source_summary, several_sources_summary, write_summary
from .output import wiring
from .output.sinks.window import display_available
from .sources.lanes import Doorbell, Scheduler, SourceLane
from .sources.spec import create_source, prediction_source
from .stats import StatsPoller, usable_cores

log = logging.getLogger(__name__)
DEFAULT_TARGET_FPS = 30.0
GIL_SWITCH_INTERVAL_S = 0.0005
SEVERAL_DECODE_THREADS = 2  # the fewest decoder threads a video file gets when several sources share the process


def fitted_batch(adapter, wanted: int) -> int:
    """The batch the network runs: `wanted`, or the batch a user's ONNX was exported for (a note says so)."""
    limit = adapter.batch_limit
    if limit and limit != wanted:
        log.info("%s was exported for batches of %d: %s", os.path.basename(adapter.onnx_file or adapter.name), limit,
                 "frames run one at a time (export it with dynamic=True to batch several sources)" if limit == 1
                 else "batches are padded to %d" % limit)
        return limit
    return wanted


@contextlib.contextmanager
def frozen_heap():
    """Everything alive before the run (torch, the model, the modules) is kept out of the garbage collector's
    full collections during it: one would walk all of it while holding the GIL, and every thread would stop for
    tens of milliseconds (frames dropped; docs/performance.md). What the run allocates is still collected. Python 3.6
    (JetPack 4.6) has no gc.freeze(): there the collector runs as usual."""
    freeze = getattr(gc, "freeze", None)
    if freeze is None:
        log.debug("Python %d.%d has no gc.freeze(): the heap is not frozen for the run", *sys.version_info[:2])
        yield
        return
    gc.collect()
    freeze()
    try:
        yield
    finally:
        gc.unfreeze()  # novermin: guarded


def close_in_reverse(closers: List[Any], error: Optional[BaseException]) -> Optional[BaseException]:
    """Close every resource, last opened first, even when one fails; the error to report (the first one)."""
    for closer in reversed(closers):
        try:
            closer.close()
        except Exception as close_error:  # noqa: BLE001 - keep closing the rest; report the first error
            log.error("closing %s failed: %s", type(closer).__name__, close_error)
            error = error or close_error
    return error


def several_decoders(configs: Sequence[SourceConfig], cores: Optional[int] = None) -> List[SourceConfig]:
    """With several sources, a video file left at decode_threads 0 gets its share of the cores, at least
    SEVERAL_DECODE_THREADS: OpenCV's choice (one thread per core, up to 16, for each file) puts hundreds of decoder
    threads on the cores at 32 sources, and a fixed 2 starves 2 sources on a 16-core machine."""
    if len(configs) < 2:
        return list(configs)
    share = max(SEVERAL_DECODE_THREADS, min(16, (cores or usable_cores()) // len(configs)))
    return [dataclasses.replace(c, decode_threads=c.decode_threads or share) for c in configs]


def reserve_buffers(stages: Any, sources: Sequence[Any], queue_size: int) -> None:
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


class Pipeline:
    """Owns the run's threads and resources. `sources` may be injected as (name, Source) pairs, or one `source`
    (tests, the benchmark); otherwise the configured sources are created. `stop` may be shared with a caller that
    owns the signal handlers."""

    def __init__(self, config: Config, sources: Optional[Sequence[Tuple[str, Any]]] = None, engine=None,
                 adapter=None, stop: Optional[threading.Event] = None, source=None):
        # the decoder threads each source gets, so the summary's config says what ran
        self.config = dataclasses.replace(config, sources=tuple(several_decoders(config.sources)))
        self.source_configs = self.config.sources or (self.config.source,)
        if source is not None:
            sources = [(self._name(self.config.source), source)]
        self.stop = stop or threading.Event()
        self.stop_reason = ""
        self._sources = list(sources) if sources is not None else None
        self._engine = engine
        self._adapter = adapter
        self.summary = {}  # type: Dict[str, Any]
        self.notifier = None  # type: Any  # output.notify.hub.Notifier where MQTT or webhooks are asked for
        self.failed_to_open = {}  # type: Dict[str, str]
        self.out_dir = None  # type: Optional[str]  # the run folder, once created
        self.started_unix = None  # type: Optional[float]  # time.time() when the clock started
        self.several = len(self._sources if self._sources is not None else self.source_configs) > 1

    @staticmethod
    def _name(config: SourceConfig) -> str:
        return config.name or source_name("gst://" if config.gst else config.uri)

    def request_stop(self, reason: str) -> None:
        """Safe from signal handlers and other threads: the loop ends after the current batch."""
        # an error that comes after another stop (a last frame failing to record) is still the reason to report
        if not self.stop.is_set() or (reason.startswith("error") and not self.stop_reason.startswith("error")):
            self.stop_reason = reason
        self.stop.set()

    def _open_sources(self, pool, device) -> List[Tuple[str, Any]]:
        """Every source that opens; one that does not is logged and left out, unless none opens. `device`: the
        engine's, where video files may decode (source.decode)."""
        pairs = self._sources
        if pairs is None:
            pairs = [(self._name(c), create_source(c, buffers=pool, device=device)) for c in self.source_configs]
        for _, source in pairs:  # a source the caller built without buffers decodes into the pool too
            if source.buffers is None:
                source.buffers = pool
        if not self.several:  # a lone source's failure is the run's
            try:
                pairs[0][1].open()
            except BaseException:  # noqa: B902 - closed, then re-raised
                pairs[0][1].close()
                raise
            return list(pairs)
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
        # the folder is locked for this run's life: a second run at once refuses instead of mixing its rows in
        out_dir, folder_lock = prepare_outputs(cfg.output)
        self.out_dir = out_dir
        log.info("results go to %s", out_dir)
        try:
            # tracked sources: the detector keeps the low-score boxes ByteTrack's second match needs
            adapter = self._adapter or shown_exact(create_adapter(detector_config(cfg, self.source_configs)), cfg)
            check_task(cfg, self.source_configs, adapter.task)
            # BackendUnavailable before any work
            engine = self._engine or create_engine(cfg.engine, onnx_file=adapter.onnx_file is not None)
        except BaseException:  # noqa: B902 - the folder is free again, then re-raised
            folder_lock.release()
            raise
        closers = []  # type: List[Any]  # closed in reverse order, always
        # Python hands the GIL over every 5 ms by default: each time the main thread releases it (a CUDA sync,
        # a frame read), a drawing or capture thread may keep it up to 5 ms. A shorter interval keeps the
        # inference thread from queueing behind them.
        switch_interval_s = sys.getswitchinterval()
        sys.setswitchinterval(GIL_SWITCH_INTERVAL_S)
        lanes = []  # type: List[SourceLane]
        stages = stats = emitter = None
        started = time.perf_counter()
        error = None  # type: Optional[BaseException]
        reserve = SpaceReserve(out_dir)  # room for summary.json should the disk fill during the run
        try:
            # the sources decode into the page-locked buffers the fused stages upload from (given at construction)
            pool = frame_pool(engine, cfg.pipeline.cuda_graph, len(self.source_configs))
            opened = self._open_sources(pool, engine.device)
            closers.extend(source for _, source in opened)
            max_batch = cfg.pipeline.max_batch or min(len(opened), MAX_BATCH)  # more sources share the batches
            max_batch = fitted_batch(adapter, max_batch)
            # Fixed-shape engines are built for the largest batch and smaller ones padded (stages.py).
            engine.load(build_core(adapter), batch_example(adapter, max_batch), adapter.name)
            closers.append(engine)
            stages = make_stages(adapter, engine, cfg.pipeline.cuda_graph, max_batch,
                                 # outlines drawn on the GPU would show the low-score boxes kept for tracking
                                 outline_boxes=cfg.overlay.enabled and not any_tracked(cfg, self.source_configs),
                                 in_flight=cfg.pipeline.in_flight,
                                 host_buffers=pool)
            stages.warm_up()
            # every source here delivers 3-channel BGR frames; a frame of another shape is captured on sight
            for shape in sorted({(s.frame_size[1], s.frame_size[0], 3) for _, s in opened if s.frame_size}):
                stages.prepare(shape)  # graphs captured now, not on a camera's first frames
            reserve_buffers(stages, [source for _, source in opened], cfg.pipeline.queue_size)
            # Logs open only once the sources, model and engine are known to work: a run that fails
            # earlier leaves an earlier run's logs untouched.
            stats = StatsPoller(cfg.stats.interval_s, engine.device.type)
            stats.start()
            headless = cfg.output.headless if cfg.output.headless is not None else not display_available()
            lanes, emitter = self._outputs(opened, out_dir, adapter, stats, stages, headless, closers)
            closers.append(emitter)
            log.info("%s -> %s on %s (%s)%s; %s", self._describe(opened), cfg.model.name, cfg.engine.backend,
                     cfg.engine.precision, ", batches of up to %d%s" % (max_batch,  " padded" if stages.padded_batch
                                                          else "") if self.several else "", stats.provider_report())
            with frozen_heap():
                started = emitter.timing_log.clock_start = time.perf_counter()
                self.started_unix = time.time()
                for lane in lanes:
                    lane.capture.start()
                self._loop(stages, Scheduler(lanes, lanes[0].bell, max_batch), emitter)
        except BaseException as e:  # noqa: B902 - re-raised below, after every resource is closed
            error = e
            self.request_stop("error: %s" % first_line(e))
        finally:
            wall_s = time.perf_counter() - started
            sys.setswitchinterval(switch_interval_s)
            self.stop.set()
            self._join_captures(lanes)
            if stats is not None:
                stats.stop()
            error = close_in_reverse(closers, error)
            lone = lanes[0] if len(lanes) == 1 and not self.several else None
            if lone is not None and lone.capture.error is not None:
                self.request_stop("error: %s" % first_line(lone.capture.error))
                error = error or lone.capture.error
            if emitter is not None:
                facts = RunFacts(cfg, out_dir, wall_s, started, self.started_unix, self.stop_reason,
                                 adapter.describe_weights(), stats.provider_report() if stats is not None else None,
                                 engine.health(), stages, self.failed_to_open)
                self.summary = (one_source_summary(facts, lone, emitter.timing_log.accumulated) if lone is not None
                                else several_sources_summary(facts, lanes, emitter.processed,
                                                             emitter.timing_log.accumulated))
                if self.notifier is not None:  # published, dropped and reconnects per output
                    self.summary["outputs"] = self.notifier.summary()
                write_summary(self.summary, out_dir, reserve)
            reserve.release()
            folder_lock.release()
        if error is not None:
            raise error
        return self.summary

    def _describe(self, opened: Sequence[Tuple[str, Any]]) -> str:
        if self.several:
            return "%d sources (%s)" % (len(opened), ", ".join(name for name, _ in opened))
        return "source %s" % opened[0][1].describe()

    def _outputs(self, opened, out_dir: str, adapter, stats, stages: Stages, headless: bool, closers: List[Any]):
        """Each source's lane with its own outputs, and the emitter they share (with the live status and page)."""
        cfg, several = self.config, self.several
        targets = [cfg.pipeline.target_fps or source.nominal_fps or DEFAULT_TARGET_FPS for _, source in opened]
        statuses = []
        for name, source in opened:
            counts = [n for n in (source.frame_count, cfg.pipeline.max_frames) if n]
            statuses.append(SourceStatus(name, lambda source=source: source.reconnects, min(counts) if counts else None))
        info = {"source": ", ".join(name for name, _ in opened) if several else opened[0][1].describe(),
                "model": cfg.model.name, "backend": cfg.engine.backend, "precision": cfg.engine.precision}
        status = LiveStatus(info, statuses)
        # one H.264 encoder per picture, shared by the page's H.264 views and RTSP out, encoding only while watched
        live = wiring.live_video(cfg.output, [name for name, _ in opened], max(targets))
        if live is not None:
            closers.append(live)
        web = wiring.web_sink(cfg.output, status, [name for name, _ in opened], live)
        if web is not None:
            closers.append(web)  # closed again, harmlessly, with the sinks it is part of
        closers.append(ProgressReporter(status).start())  # closed after the emitter: the last count shows
        bell = Doorbell()
        lanes = []
        events = None
        configs = {self._name(c): c for c in self.source_configs}
        if any_tracked(cfg, self.source_configs):
            events = EventLog(os.path.join(out_dir, "events.jsonl"))
            closers.append(events)  # closed by the emitter; here too should the run fail before the emitter exists
        # MQTT and webhooks: a broker that is down is a warning and retried; the cameras go on
        self.notifier = build_notifier(cfg.output.mqtt, cfg.output.webhooks, [
            (name, [spec.name for spec in configs.get(name, cfg.source).lines],
             [spec.name for spec in configs.get(name, cfg.source).zones]) for name, _ in opened])
        if self.notifier is not None:
            closers.append(self.notifier)  # closed by the emitter, after the tracks that end with the run
        on_event = _fan_out(events, self.notifier)
        for (name, source), target_fps in zip(opened, targets):
            recorder = wiring.input_recorder(cfg.output, several, name, source.nominal_fps or target_fps)
            if recorder is not None:
                closers.append(recorder)
            sink = wiring.source_sinks(cfg.output, several, name, source, out_dir, target_fps, headless, web, live)
            closers.append(sink)  # closed by the emitter; here too should the run fail before the emitter exists
            lanes.append(SourceLane(name, source, bell, cfg.pipeline.queue_size, target_fps,
                                    max_frames=cfg.pipeline.max_frames,
                                    on_frame=recorder.write if recorder is not None else None, sink=sink,
                                    log_name=None if several else prediction_source(self.source_configs[0]),
                                    frame_names=not several))
        analytics = sources_analytics(cfg, [(name, configs.get(name, cfg.source), source.nominal_fps or fps)
                                             for (name, source), fps in zip(opened, targets)], on_event, usable_cores())
        for lane in lanes:
            lane.analytics = analytics[lane.name]
        pools = {id(a.pool): a.pool for a in analytics.values() if getattr(a, "pool", None) is not None}
        closers.extend(pools.values())  # the workers end should the run fail before the emitter exists
        mosaic_fps = max(targets)
        # HighGUI wants its window on the main thread; headless, drawing and writing get a thread of their own and
        # overlap with the next batch's inference.
        emitter = FrameEmitter(cfg, out_dir, adapter, stats, lanes,
                               wiring.mosaic_sinks(cfg.output, several, headless, mosaic_fps, web, live), mosaic_fps,
                               threaded=headless, on_error=self.request_stop, gpu_outlines=stages.outlines_on_device,
                               live_status=status, events=events, notifier=self.notifier)
        return lanes, emitter

    def _loop(self, stages: Stages, scheduler: Scheduler, emitter: FrameEmitter) -> None:
        """Up to `stages.in_flight` batches are in flight: on CUDA batch n + 1 is uploaded and queued while the GPU
        still works on batch n; then batch n is finished and handed to the emitter (drawn, written and logged on its
        own thread when headless). Batches in flight when the run stops are finished and emitted."""
        inflight = collections.deque()  # type: collections.deque
        ended = set()  # type: set
        try:
            while not self.stop.is_set():
                batch = scheduler.gather(0.0 if inflight else 0.1)
                for lane in scheduler.lanes:
                    if lane.done and lane not in ended:
                        ended.add(lane)
                        emitter.note(lane, "failed" if lane.capture.error is not None else "ended")
                if batch:
                    inflight.append(([lane for lane, _ in batch], stages.submit([frame for _, frame in batch])))
                if inflight and (not batch or len(inflight) >= stages.in_flight):
                    batch_lanes, work = inflight.popleft()
                    _emit_batch(emitter, batch_lanes, stages.finish(work))
                    if emitter.stop_requested:
                        self.request_stop("q pressed in the window")
                elif not batch and not inflight and scheduler.finished:
                    lanes = scheduler.lanes
                    self.request_stop(lanes[0].end_reason if len(lanes) == 1 else "every source ended")
        finally:
            failing = sys.exc_info()[0] is not None
            while inflight:
                batch_lanes, work = inflight.popleft()
                try:
                    _emit_batch(emitter, batch_lanes, stages.finish(work))
                except Exception as e:  # noqa: BLE001 - the error already propagating is the one to report
                    if not failing:
                        raise
                    log.debug("batch in flight lost after the error: %s", e)

    def _join_captures(self, lanes: Sequence[SourceLane]) -> None:
        """Every capture thread stops together; one stuck in a read has its source closed to unblock it."""
        for lane in lanes:
            lane.stop.set()
        deadline = time.perf_counter() + 5.0
        for lane in lanes:
            if lane.capture.ident is not None:
                lane.capture.join(max(0.0, deadline - time.perf_counter()))
        for lane in lanes:
            if lane.capture.is_alive():
                lane.source.close()
                lane.capture.join(5.0)


def _fan_out(events: Any, notifier: Any) -> Any:
    """The analytics' event callback: events.jsonl first (the durable record), then MQTT and webhooks."""
    if notifier is None:
        return events.write if events is not None else None

    def on_event(event: Dict[str, Any]) -> None:
        if events is not None:
            events.write(event)
        notifier.event(event)
    return on_event


def _emit_batch(emitter: FrameEmitter, lanes: List[SourceLane], results: List[Any]) -> None:
    """The batch's processed frames to the emitter; a frame a remote engine dropped (None) is counted against its
    source (and in the engine's health()) and not towards --max-frames."""
    kept = []
    for lane, done in zip(lanes, results):
        lane.settle(done is not None)
        if done is not None:
            kept.append((lane, done))
    if kept:
        emitter.emit(kept)
