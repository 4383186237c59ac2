"""One source's analytics: its tracker, lines and zones, fed each processed frame in order (on the emitter's
thread, so batching never mixes sources' tracks); what it returns is what is drawn and logged, what it emits is
events.jsonl's rows, and summary() / live() are its counts. process_many() takes a batch's sources at once, their
trackers stepped together (bytetrack.update_many) when they share a TrackStates (sources_states())."""

import collections
import logging
from typing import Any, Callable, Dict, List, NamedTuple, Optional, Sequence, Tuple

import numpy as np

from ..config import TrackerConfig
from ..types import Detections, detection_name
from .bytetrack import ByteTracker, Track, TrackUpdate, update_many
from .lines import LineCounter
from ..regions import LineSpec, ZoneSpec, outside_frame, resolve_points
from .track_states import TrackStates
from .zones import ZoneCounter

log = logging.getLogger(__name__)


class LineView(NamedTuple):
    name: str
    a: Tuple[float, float]
    b: Tuple[float, float]
    in_total: int
    out_total: int


class ZoneView(NamedTuple):
    name: str
    polygon: np.ndarray  # (K, 2) int32 pixels
    occupancy: int
    loitering: int


class TrailView(NamedTuple):
    track_id: int
    label: int
    points: Sequence[Tuple[int, int]]  # pixels, oldest first (the overlay makes the array when it draws)


class SceneSnapshot(NamedTuple):
    lines: Tuple[LineView, ...]
    zones: Tuple[ZoneView, ...]
    trails: Tuple[TrailView, ...]


def anchors(boxes: np.ndarray, anchor: str) -> np.ndarray:
    """(N, 2) the point of each xyxy box that is counted: the bottom centre (where a person stands) or the centre."""
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    x = (boxes[:, 0] + boxes[:, 2]) / 2
    y = boxes[:, 3] if anchor == "bottom_center" else (boxes[:, 1] + boxes[:, 3]) / 2
    return np.stack([x, y], axis=1)


class SourceAnalytics:
    def __init__(self, source: str, tracker: TrackerConfig, lines: Sequence[LineSpec] = (),
                 zones: Sequence[ZoneSpec] = (), fps: float = 30.0, score_threshold: float = 0.0,
                 on_event: Optional[Callable[[Dict[str, Any]], None]] = None,
                 states: Optional[TrackStates] = None):
        self.source = source
        self.config = tracker
        self.tracker = ByteTracker(tracker, fps, states)
        self.line_specs, self.zone_specs = tuple(lines), tuple(zones)
        self.lines = []  # type: List[LineCounter]  # placed on the first frame, when its size is known
        self.zones = []  # type: List[ZoneCounter]
        self.score_threshold = score_threshold
        self.on_event = on_event
        self.events = 0
        self._frame_size = None  # type: Optional[Tuple[int, int]]
        self._reconnects = 0
        self._last = None  # type: Optional[Tuple[int, float]]  # the last frame's index and timestamp
        self._trails = {}  # type: Dict[int, collections.deque]
        self._labels = {}  # type: Dict[int, int]
        self._class_names = ()  # type: Sequence[str]
        self._live = self._counts()
        self._live_events = -1  # rebuilt on the first frame, once the lines and zones are placed

    def _place(self, width: int, height: int) -> None:
        self._frame_size = (width, height)
        for spec in self.line_specs:
            xy = resolve_points(spec.points, width, height)
            if outside_frame(xy, width, height):
                log.warning("source %s: line %s (%s) reaches outside the %dx%d frame; only its part inside can be "
                            "crossed", self.source, spec.name, _points_text(xy), width, height)
            self.lines.append(LineCounter(spec, xy[0], xy[1]))
        for spec in self.zone_specs:
            xy = resolve_points(spec.points, width, height)
            if outside_frame(xy, width, height):
                log.warning("source %s: zone %s (%s) reaches outside the %dx%d frame", self.source, spec.name,
                            _points_text(xy), width, height)
            self.zones.append(ZoneCounter(spec, xy))

    def process(self, frame_index: int, t_s: float, frame_size: Tuple[int, int], det: Detections,
                reconnects: int = 0) -> Tuple[Detections, SceneSnapshot]:
        """The detections above the score threshold with their track IDs, and what the overlay draws."""
        return process_many([(self, frame_index, t_s, frame_size, det, reconnects)])[0]

    def _begin(self, t_s: float, frame_size: Tuple[int, int], reconnects: int) -> List[Track]:
        """Before the tracker's step: the lines and zones placed on the first frame; the tracks a reconnect ended
        (their events wait for _finish, so each source's events stay in order)."""
        if self._frame_size is None:
            self._place(*frame_size)
        ended = []  # type: List[Track]
        # A reconnect, or time running backwards (a camera's clock restarting), ends every track: the objects may
        # have moved meanwhile. IDs and counts go on.
        if reconnects != self._reconnects or (self._last is not None and t_s < self._last[1]):
            self._reconnects = reconnects
            ended = self.tracker.end_all()
        return ended

    def _finish(self, frame_index: int, t_s: float, det: Detections, update: TrackUpdate,
                reconnect_ended: List[Track]) -> Tuple[Detections, SceneSnapshot]:
        """After the tracker's step: events, lines, zones, trails; what is drawn."""
        self._end_tracks(reconnect_ended)
        self._last = (frame_index, t_s)
        self._class_names = det.class_names
        names = det.name_of
        for track in update.started:
            self._emit({"event": "track_started", "track_id": track.track_id, "label": names(track.label),
                        "frame": frame_index, "t_s": t_s, "first_frame": track.first_frame,
                        "first_t_s": track.first_t})
        ids = update.ids
        seen = np.nonzero(ids >= 0)[0]
        if len(seen) and (self.lines or self.zones):
            seen_ids, seen_labels = ids[seen], [names(int(v)) for v in det.labels[seen]]
            points = {}  # type: Dict[str, np.ndarray]
            for counter in self.lines + self.zones:
                anchor = counter.spec.anchor
                if anchor not in points:
                    points[anchor] = anchors(det.boxes[seen], anchor)
                for event in counter.update(seen_ids, points[anchor], seen_labels, frame_index, t_s):
                    self._emit(event)
        elif self.zones:
            for zone in self.zones:
                for event in zone.update(ids[:0], np.zeros((0, 2)), [], frame_index, t_s):
                    self._emit(event)
        self._end_tracks(update.ended)
        trails = self._trail(ids, det)
        if self.events != self._live_events:  # every count changes with an event: rebuilt only then
            self._live, self._live_events = self._counts(), self.events
        keep = det.scores > self.score_threshold
        shown = Detections(det.boxes[keep], det.scores[keep], det.labels[keep], det.class_names,
                           track_ids=ids[keep])
        return shown, self._snapshot(trails)

    def _trail(self, ids: np.ndarray, det: Detections) -> Tuple[TrailView, ...]:
        length = self.config.trail_frames
        if length <= 0:
            return ()
        seen = np.nonzero(ids >= 0)[0]
        # one rounding and one tolist for all of them: per-track numpy calls were most of this method's time
        centres = np.rint(anchors(det.boxes[seen], "center")).astype(np.int64).tolist()
        views = []
        for track_id, label, centre in zip(ids[seen].tolist(), det.labels[seen].tolist(), centres):
            trail = self._trails.get(track_id)
            if trail is None:
                trail = self._trails[track_id] = collections.deque(maxlen=length)
            trail.append(tuple(centre))
            self._labels[track_id] = label
            views.append(TrailView(track_id, label, tuple(trail)))
        return tuple(views)

    def _snapshot(self, trails: Tuple[TrailView, ...]) -> SceneSnapshot:
        lines = tuple(LineView(c.spec.name, (float(c.a[0]), float(c.a[1])), (float(c.b[0]), float(c.b[1])),
                               c.in_total, c.out_total) for c in self.lines)
        zones = tuple(ZoneView(z.spec.name, np.round(z.polygon).astype(np.int32), z.occupancy_total,
                               z.occupants_loitering) for z in self.zones)
        return SceneSnapshot(lines, zones, trails)

    def _end_tracks(self, tracks: Sequence[Track]) -> None:
        for track in tracks:
            for zone in self.zones:
                for event in zone.end_track(track.track_id, track.last_frame, track.last_t):
                    self._emit(event)
            for line in self.lines:
                line.forget(track.track_id)
            self._trails.pop(track.track_id, None)
            self._labels.pop(track.track_id, None)
            self._emit({"event": "track_ended", "track_id": track.track_id,
                        "label": detection_name(self._class_names, track.label), "frame": track.last_frame,
                        "t_s": track.last_t, "duration_s": round(track.last_t - track.first_t, 3)})

    def _emit(self, event: Dict[str, Any]) -> None:
        event["source"] = self.source
        self.events += 1
        if self.on_event is not None:
            self.on_event(event)

    def close(self) -> None:
        """The run ends: every track ends, with its events."""
        self._end_tracks(self.tracker.end_all())
        self._live = self._counts()

    def _counts(self) -> Dict[str, Any]:
        return {"lines": {c.spec.name: c.summary() for c in self.lines},
                "zones": {z.spec.name: z.summary() for z in self.zones},
                "tracks": {"confirmed": self.tracker.confirmed_total, "active": len(self.tracker.active)}}

    def summary(self) -> Dict[str, Any]:
        return self._counts()

    def live(self) -> Dict[str, Any]:
        """The counts as of the last frame: a dict replaced whole each frame, safe to read from other threads."""
        return self._live


Item = Tuple[SourceAnalytics, int, float, Tuple[int, int], Detections, int]  # frame index, t_s, size, det, reconnects


def process_many(items: Sequence[Item]) -> List[Tuple[Detections, SceneSnapshot]]:
    """SourceAnalytics.process for each item (a batch's frames), the trackers that share a TrackStates stepped in
    one update_many; the same results and events, in the same order, as one at a time. A source met twice starts
    another round (the pipeline's batches hold one frame a source)."""
    out = []  # type: List[Tuple[Detections, SceneSnapshot]]
    start = 0
    while start < len(items):
        seen = set()
        end = start
        while end < len(items) and id(items[end][0]) not in seen:
            seen.add(id(items[end][0]))
            end += 1
        out.extend(_process_round(items[start:end]))
        start = end
    return out


def _process_round(items: Sequence[Item]) -> List[Tuple[Detections, SceneSnapshot]]:
    ended = [scene._begin(t_s, size, reconnects) for scene, _, t_s, size, _, reconnects in items]
    groups = collections.OrderedDict()  # type: Dict[int, List[int]]
    for k, item in enumerate(items):
        groups.setdefault(id(item[0].tracker.states), []).append(k)
    updates = [None] * len(items)  # type: List[Any]
    for members in groups.values():
        frames = [(items[k][4].boxes, items[k][4].scores, items[k][4].labels, items[k][1], items[k][2])
                  for k in members]
        for k, update in zip(members, update_many([items[k][0].tracker for k in members], frames)):
            updates[k] = update
    return [scene._finish(index, t_s, det, update, gone)
            for (scene, index, t_s, _, det, _), update, gone in zip(items, updates, ended)]


def _points_text(xy: np.ndarray) -> str:
    return " ".join("%g,%g" % (x, y) for x, y in xy.tolist())
