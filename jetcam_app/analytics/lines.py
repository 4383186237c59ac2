"""Line crossings of confirmed tracks: a track's anchor passes from one side of the finite segment A-B to the other
(its path crosses the segment itself, not the line's extension) and stays there `min_frames` frames; a touch that
comes back sooner is flicker and counts nothing (supervision PR #2600). Counts are per class; `every` counts each
crossing, `once` each track at most once per direction (Ultralytics' rule)."""

import collections
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

from ..regions import LineSpec


class _Side:
    """One track's state at one line."""

    __slots__ = ("side", "point", "pending", "pending_count", "pending_through")

    def __init__(self, side: int, point: np.ndarray):
        self.side = side  # the side it is held on: +1 = the "in" side, -1 = the "out" side
        self.point = point  # its last anchor on that side
        self.pending = 0  # the other side while it is being held there, 0 = none
        self.pending_count = 0
        self.pending_through = False  # the step onto the other side went through the segment


class LineCounter:
    """One line of one source, in pixels."""

    def __init__(self, spec: LineSpec, a: Sequence[float], b: Sequence[float]):
        self.spec = spec
        self.a = np.asarray(a, np.float64)
        self.b = np.asarray(b, np.float64)
        d = self.b - self.a
        self._normal = np.array([d[1], -d[0]])  # A->B a quarter turn counter-clockwise as seen (y points down)
        self._length2 = float(d @ d)
        self.counts = {"in": collections.Counter(), "out": collections.Counter()}  # type: Dict[str, Any]
        self._tracks = {}  # type: Dict[int, _Side]
        self._counted = set()  # (track id, direction) for count: once

    @property
    def in_total(self) -> int:
        return sum(self.counts["in"].values())

    @property
    def out_total(self) -> int:
        return sum(self.counts["out"].values())

    def _crosses_segment(self, p: np.ndarray, q: np.ndarray) -> bool:
        """Does the step p -> q (on opposite sides of the line) pass through the segment A-B?"""
        dp, dq = float((p - self.a) @ self._normal), float((q - self.a) @ self._normal)
        if dp == dq:
            return False
        x = p + (q - p) * (dp / (dp - dq))  # where the step meets the line
        t = float((x - self.a) @ (self.b - self.a)) / self._length2
        return -1e-9 <= t <= 1 + 1e-9

    def update(self, ids: np.ndarray, points: np.ndarray, labels: Sequence[str], frame: int,
               t_s: float) -> List[Dict[str, Any]]:
        """This frame's confirmed tracks (ids, anchors (K, 2), class names); the crossings completed now."""
        events = []
        classes = self.spec.classes
        if not len(ids):
            return events
        sides = np.sign((points - self.a) @ self._normal)
        for track_id, point, side, label in zip(ids.tolist(), points, sides.tolist(), labels):
            if classes and label not in classes:
                continue
            state = self._tracks.get(track_id)
            if state is None:
                if side:
                    self._tracks[track_id] = _Side(int(side), point)
                continue
            if side == 0:
                continue  # on the line itself: no news
            if side == state.side:
                state.point, state.pending, state.pending_count = point, 0, 0  # back before it held: flicker
                continue
            if state.pending != side:
                state.pending, state.pending_count = int(side), 0
                state.pending_through = self._crosses_segment(state.point, point)
            state.pending_count += 1
            if state.pending_count < self.spec.min_frames:
                continue
            direction = "in" if side > 0 else "out"
            through = state.pending_through
            state.side, state.point, state.pending, state.pending_count = int(side), point, 0, 0
            if not through:
                continue  # it went round the segment's end
            event = self._count(track_id, label, direction, frame, t_s)
            if event is not None:
                events.append(event)
        return events

    def _count(self, track_id: int, label: str, direction: str, frame: int, t_s: float) -> Optional[Dict[str, Any]]:
        if self.spec.count == "once":
            if (track_id, direction) in self._counted:
                return None
            self._counted.add((track_id, direction))
        self.counts[direction][label] += 1
        return {"event": "line_crossed", "line": self.spec.name, "direction": direction, "track_id": track_id,
                "label": label, "frame": frame, "t_s": t_s, "in_total": self.in_total, "out_total": self.out_total}

    def forget(self, track_id: int) -> None:
        """The track ended: its state goes (its once-per-track mark stays: IDs are never reused)."""
        self._tracks.pop(track_id, None)

    def summary(self) -> Dict[str, Any]:
        return {"in": dict(sorted(self.counts["in"].items())), "out": dict(sorted(self.counts["out"].items())),
                "in_total": self.in_total, "out_total": self.out_total}
