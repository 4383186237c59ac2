"""Tracking many sources in worker processes: each source's SourceAnalytics lives in one worker (sources dealt out
in turn), the emitter sends a batch's detections to every worker at once and waits for their answers, its process
free meanwhile. In one process the trackers' Python holds the GIL that decoding and inference need
(docs/performance.md, Tracking). The results are the in-process ones exactly (same class, same order); the
events come back with them and are written by the app's process."""

import logging
import multiprocessing
import threading
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from ..config import TrackerConfig
from ..errors import JetcamError
from ..types import Detections
from .scene import SceneSnapshot, SourceAnalytics, process_many
from .track_states import TrackStates

log = logging.getLogger(__name__)
# automatic (tracker.workers: -1): processes only from this many tracked sources; below it the app's process loses
# fewer frames (H100, 16 cores: docs/performance.md, "Trackers in worker processes") ...
AUTO_MIN_SOURCES = 32
AUTO_MIN_CORES = 8  # ... on a machine with this many usable cores; one worker per 4 cores, at most 4
AUTO_MAX_WORKERS = 4


def worker_count(requested: int, tracked_sources: int, cores: int) -> int:
    """Worker processes for `tracked_sources`: the requested number (0 = none), or automatically none below
    AUTO_MIN_SOURCES sources or AUTO_MIN_CORES cores (a process's pipes cost more than the trackers save there)."""
    if requested >= 0:
        return min(requested, tracked_sources)
    if tracked_sources < AUTO_MIN_SOURCES or cores < AUTO_MIN_CORES:
        return 0
    return max(1, min(AUTO_MAX_WORKERS, cores // 4, tracked_sources))


def _serve(conn, specs: Sequence[Tuple[Any, ...]]) -> None:
    """A worker: its sources' analytics (specs: spec_of()), fed batches until told to close."""
    events = {spec[0]: [] for spec in specs}  # type: Dict[str, List[Dict[str, Any]]]
    states = TrackStates()  # the worker's sources are stepped together, as in the app's process
    analytics = {spec[0]: SourceAnalytics(*spec, on_event=events[spec[0]].append, states=states) for spec in specs}
    names = {}  # type: Dict[str, Sequence[str]]
    seen = {}  # type: Dict[str, int]  # the event count each source's counts were last sent at
    while True:
        message = conn.recv()
        if message[0] == "batch":
            items = []
            for name, index, t_s, size, boxes, scores, labels, class_names, reconnects in message[1]:
                if class_names is not None:
                    names[name] = class_names
                items.append((analytics[name], index, t_s, size, Detections(boxes, scores, labels, names[name]),
                              reconnects))
            out = []
            for (scene, *_), (shown, snapshot) in zip(items, process_many(items)):
                name = scene.source
                live = None
                if scene.events != seen.get(name):
                    seen[name], live = scene.events, scene.live()
                out.append((shown.track_ids, snapshot, events[name][:], live))
                del events[name][:]
            conn.send(out)
        elif message[0] == "close":
            out = []
            for name, scene in analytics.items():
                scene.close()
                out.append((name, events[name][:], scene.summary(), scene.live()))
                del events[name][:]
            conn.send(out)
            return


class AnalyticsPool:
    def __init__(self, specs: Sequence[Tuple[Any, ...]], workers: int):
        context = multiprocessing.get_context("spawn")  # never fork a process that holds CUDA
        self._shard = {}  # type: Dict[str, int]
        groups = [[] for _ in range(workers)]  # type: List[List[Tuple[Any, ...]]]
        for i, spec in enumerate(specs):
            self._shard[spec[0]] = i % workers
            groups[i % workers].append(tuple(spec))
        self._conns, self._procs = [], []
        for group in groups:
            ours, theirs = context.Pipe()
            proc = context.Process(target=_serve, args=(theirs, group), name="jetcam-tracking", daemon=True)
            proc.start()
            theirs.close()
            self._conns.append(ours)
            self._procs.append(proc)
        self._names_sent = {}  # type: Dict[str, Any]
        self._lock = threading.Lock()
        self.closed = None  # type: Optional[Dict[str, Tuple[List[Dict[str, Any]], Dict[str, Any], Dict[str, Any]]]]
        log.info("tracking %d sources in %d worker processes", len(specs), workers)

    def process(self, items: Sequence[Tuple[str, int, float, Tuple[int, int], Detections, int]]
                ) -> List[Tuple[np.ndarray, SceneSnapshot, List[Dict[str, Any]], Optional[Dict[str, Any]]]]:
        """(track IDs of every detection, the scene, the events, the counts where they changed) per item."""
        parts = [[] for _ in self._conns]  # type: List[List[Any]]
        where = []
        for name, index, t_s, size, det, reconnects in items:
            names = det.class_names
            if self._names_sent.get(name) is not names:  # sent once per source (and again should they change)
                self._names_sent[name] = names
            else:
                names = None
            shard = self._shard[name]
            where.append((shard, len(parts[shard])))
            parts[shard].append((name, index, t_s, size, det.boxes, det.scores, det.labels, names, reconnects))
        try:
            for conn, part in zip(self._conns, parts):
                if part:
                    conn.send(("batch", part))
            answers = [conn.recv() if part else [] for conn, part in zip(self._conns, parts)]
        except (EOFError, OSError) as e:
            raise JetcamError("a tracking worker process ended (%s); set tracker.workers: 0 to track in the app's "
                              "process" % (e or "its pipe closed")) from e
        return [answers[shard][k] for shard, k in where]

    def close(self) -> Dict[str, Tuple[List[Dict[str, Any]], Dict[str, Any], Dict[str, Any]]]:
        """Every source's last events (its tracks end), summary and counts; the workers exit."""
        with self._lock:
            if self.closed is not None:
                return self.closed
            self.closed = {}
            for conn, proc in zip(self._conns, self._procs):
                try:
                    conn.send(("close",))
                    for name, events, summary, live in conn.recv():
                        self.closed[name] = (events, summary, live)
                except (EOFError, OSError) as e:
                    log.warning("a tracking worker ended before the run did (%s): its sources' last events are "
                                "lost", e)
                conn.close()
                proc.join(5)
                if proc.is_alive():
                    proc.kill()
            return self.closed


class RemoteAnalytics:
    """A source's analytics as the emitter and the summary see them, computed in a worker."""

    def __init__(self, pool: AnalyticsPool, name: str, score_threshold: float,
                 on_event: Optional[Callable[[Dict[str, Any]], None]]):
        self.pool, self.source = pool, name
        self.score_threshold = score_threshold
        self.on_event = on_event
        self.events = 0  # as SourceAnalytics.events: every event this source emitted
        self._live = {}  # type: Dict[str, Any]
        self._summary = None  # type: Optional[Dict[str, Any]]

    def apply(self, det: Detections, answer) -> Tuple[Detections, SceneSnapshot]:
        ids, snapshot, events, live = answer
        self.events += len(events)
        for event in events:
            if self.on_event is not None:
                self.on_event(event)
        if live is not None:
            self._live = live
        keep = det.scores > self.score_threshold  # as the worker kept them: `ids` are the kept ones'
        return Detections(det.boxes[keep], det.scores[keep], det.labels[keep], det.class_names,
                          track_ids=ids), snapshot

    def close(self) -> None:
        events, summary, live = self.pool.close().get(self.source, ([], self._live, self._live))
        if self._summary is None:
            self.events += len(events)
            for event in events:
                if self.on_event is not None:
                    self.on_event(event)
            self._summary, self._live = summary, live

    def summary(self) -> Dict[str, Any]:
        return self._summary if self._summary is not None else self._live

    def live(self) -> Dict[str, Any]:
        return self._live


def remote_sources(specs: Sequence[Tuple[Any, ...]], workers: int, score_threshold: float,
                   on_event: Optional[Callable[[Dict[str, Any]], None]]) -> Dict[str, RemoteAnalytics]:
    pool = AnalyticsPool(specs, workers)
    return {spec[0]: RemoteAnalytics(pool, spec[0], score_threshold, on_event) for spec in specs}


def spec_of(name: str, tracker: TrackerConfig, lines, zones, fps: float, score_threshold: float) -> Tuple[Any, ...]:
    return (name, tracker, tuple(lines), tuple(zones), fps, score_threshold)
