"""Zone occupancy of confirmed tracks: an entry counts after `min_frames` frames inside (an exit after as many
outside: Frigate's inertia), dwell time is measured by the source's timestamps (a paced and a lossless replay give
the same dwell), a track lost inside stays an occupant until the tracker gives it up, and `loiter_s` raises one
loitering event per visit."""

import collections
from typing import Any, Dict, List, Sequence

import numpy as np

from ..regions import ZoneSpec


def inside_polygon(points: np.ndarray, polygon: np.ndarray) -> np.ndarray:
    """(K,) bool: which points lie inside the polygon (even-odd rule, every edge at once)."""
    return _Edges(polygon).inside(points)


class _Edges:
    """A polygon's edges, prepared once: a zone tests its points every frame."""

    def __init__(self, polygon: np.ndarray):
        polygon = np.asarray(polygon, np.float64)
        self.x1, self.y1 = polygon[:, 0][None, :], polygon[:, 1][None, :]
        x2, y2 = np.roll(polygon[:, 0], -1)[None, :], np.roll(polygon[:, 1], -1)[None, :]
        self.y2 = y2
        with np.errstate(divide="ignore", invalid="ignore"):
            self.slope = (x2 - self.x1) / (y2 - self.y1)  # x per y; inf on flat edges, which never straddle

    def inside(self, points: np.ndarray) -> np.ndarray:
        if not len(points):
            return np.zeros(0, bool)
        x, y = points[:, 0:1], points[:, 1:2]
        straddles = (self.y1 > y) != (self.y2 > y)
        with np.errstate(invalid="ignore"):
            cross_x = self.x1 + (y - self.y1) * self.slope
        return (straddles & (x < cross_x)).sum(axis=1) % 2 == 1


class _Visit:
    __slots__ = ("label", "inside", "entered_t", "pending_count", "pending_t", "loitered")

    def __init__(self, label: str):
        self.label = label
        self.inside = False
        self.entered_t = 0.0
        self.pending_count = 0  # frames in a row on the other side of the boundary
        self.pending_t = 0.0  # the timestamp of the first of them: when it really entered or left
        self.loitered = False


class ZoneCounter:
    """One zone of one source, in pixels."""

    def __init__(self, spec: ZoneSpec, polygon: np.ndarray):
        self.spec = spec
        self.polygon = np.asarray(polygon, np.float64)
        self._edges = _Edges(self.polygon)
        self.entries = collections.Counter()  # type: collections.Counter
        self.exits = collections.Counter()  # type: collections.Counter
        self.max_occupancy = collections.Counter()  # type: collections.Counter
        self.loitering = 0
        self._dwell_sum = 0.0
        self._visits_done = 0
        self._tracks = {}  # type: Dict[int, _Visit]

    def occupancy(self) -> Dict[str, int]:
        now = collections.Counter(v.label for v in self._tracks.values() if v.inside)
        return dict(sorted(now.items()))

    @property
    def occupancy_total(self) -> int:
        return sum(1 for v in self._tracks.values() if v.inside)

    def update(self, ids: np.ndarray, points: np.ndarray, labels: Sequence[str], frame: int,
               t_s: float) -> List[Dict[str, Any]]:
        """This frame's confirmed tracks; the entries, exits and loitering events completed now."""
        events = []
        inside = self._edges.inside(points) if len(ids) else np.zeros(0, bool)
        classes = self.spec.classes
        for track_id, now_inside, label in zip(ids.tolist(), inside.tolist(), labels):
            if classes and label not in classes:
                continue
            visit = self._tracks.get(track_id)
            if visit is None:
                if not now_inside:
                    continue
                visit = self._tracks[track_id] = _Visit(label)
            if now_inside == visit.inside:
                visit.pending_count = 0
                continue
            if visit.pending_count == 0:
                visit.pending_t = t_s
            visit.pending_count += 1
            if visit.pending_count < self.spec.min_frames:
                continue
            visit.pending_count = 0
            if now_inside:
                visit.inside, visit.entered_t, visit.loitered = True, visit.pending_t, False
                self.entries[label] += 1
                events.append(self._event("zone_entered", track_id, label, frame, t_s))
            else:
                events.append(self._leave(track_id, visit, frame, t_s, visit.pending_t))
        self._note_occupancy()
        events.extend(self._loitering(frame, t_s))
        return events

    def _note_occupancy(self) -> None:
        for label, n in self.occupancy().items():
            if n > self.max_occupancy[label]:
                self.max_occupancy[label] = n

    def _loitering(self, frame: int, t_s: float) -> List[Dict[str, Any]]:
        if self.spec.loiter_s <= 0:
            return []
        events = []
        for track_id, visit in self._tracks.items():
            if visit.inside and not visit.loitered and t_s - visit.entered_t >= self.spec.loiter_s:
                visit.loitered = True
                self.loitering += 1
                events.append(self._event("loitering", track_id, visit.label, frame, t_s,
                                          dwell_s=round(t_s - visit.entered_t, 3)))
        return events

    def _leave(self, track_id: int, visit: _Visit, frame: int, t_s: float, left_t: float) -> Dict[str, Any]:
        dwell = max(0.0, left_t - visit.entered_t)
        visit.inside = False
        self.exits[visit.label] += 1
        self._dwell_sum += dwell
        self._visits_done += 1
        return self._event("zone_left", track_id, visit.label, frame, t_s, dwell_s=round(dwell, 3))

    def end_track(self, track_id: int, frame: int, last_t: float) -> List[Dict[str, Any]]:
        """The track ended (lost for good, a reconnect, the run's end): it leaves, its dwell up to when last seen."""
        visit = self._tracks.pop(track_id, None)
        if visit is None or not visit.inside:
            return []
        return [self._leave(track_id, visit, frame, last_t, last_t)]

    def _event(self, kind: str, track_id: int, label: str, frame: int, t_s: float, **extra) -> Dict[str, Any]:
        event = {"event": kind, "zone": self.spec.name, "track_id": track_id, "label": label, "frame": frame,
                 "t_s": t_s}
        event.update(extra)
        return event

    @property
    def occupants_loitering(self) -> int:
        return sum(1 for v in self._tracks.values() if v.inside and v.loitered)

    def summary(self) -> Dict[str, Any]:
        return {"entries": dict(sorted(self.entries.items())), "exits": dict(sorted(self.exits.items())),
                "max_occupancy": dict(sorted(self.max_occupancy.items())), "occupancy": self.occupancy(),
                "mean_dwell_s": round(self._dwell_sum / self._visits_done, 3) if self._visits_done else None,
                "loitering": self.loitering}
