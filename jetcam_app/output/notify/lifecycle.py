"""Each tracked object's life as Frigate publishes it on frigate/events: {type: new | update | end, before, after},
`after` with id, label, score, box, current_zones, entered_zones, start_time, end_time. Like Frigate, `new` carries
no zones yet (the object was just seen); zone and line changes send an `update` at once (what automations trigger
on: before.current_zones without X, after.current_zones with it); movement alone at most every update_interval_s."""

import copy
import time
from typing import Any, Dict, List, Optional

import numpy as np


class _Object:
    __slots__ = ("state", "sent", "sent_at", "changed")

    def __init__(self, state: Dict[str, Any], now: float):
        self.state = state
        self.sent = copy.deepcopy(state)  # what the last message's `after` said: the next one's `before`
        self.sent_at = now
        self.changed = False


class Lifecycles:
    """One source's objects; feed it the source's events and each frame's shown detections (with track IDs);
    messages() returns the lifecycle messages due, oldest first."""

    def __init__(self, source: str, update_interval_s: float = 5.0, clock=time.time):
        self.source = source
        self.update_interval_s = update_interval_s
        self._clock = clock
        self._objects = {}  # type: Dict[int, _Object]
        self._out = []  # type: List[Dict[str, Any]]

    def _message(self, kind: str, obj: "_Object", now: float) -> None:
        after = copy.deepcopy(obj.state)
        self._out.append({"type": kind, "source": self.source, "before": obj.sent, "after": after})
        obj.sent, obj.sent_at, obj.changed = after, now, False

    def event(self, event: Dict[str, Any], box: Optional[List[float]] = None, score: Optional[float] = None) -> None:
        """An analytics event; a track_started comes with the box and score it was shown with on its frame, where
        it was shown (like Frigate's `new`, which has them)."""
        kind, track_id, now = event.get("event"), event.get("track_id"), self._clock()
        if kind == "track_started":
            state = {"id": "%s-%d" % (self.source, track_id), "track_id": track_id, "source": self.source,
                     "camera": self.source, "label": event.get("label"), "score": score, "top_score": score,
                     "box": box, "start_time": round(now, 3), "end_time": None, "frame": event.get("frame"),
                     "current_zones": [], "entered_zones": [], "crossings": [], "loitering": False,
                     "active": True}
            obj = self._objects[track_id] = _Object(state, now)
            self._message("new", obj, now)
            return
        obj = self._objects.get(track_id)
        if obj is None:
            return
        state = obj.state
        if kind == "track_ended":
            state.update(end_time=round(now, 3), active=False, current_zones=[], frame=event.get("frame"))
            self._message("end", obj, now)
            del self._objects[track_id]
            return
        if kind == "zone_entered":
            zone = event.get("zone")
            if zone not in state["current_zones"]:
                state["current_zones"].append(zone)
            if zone not in state["entered_zones"]:
                state["entered_zones"].append(zone)
        elif kind == "zone_left":
            state["current_zones"] = [z for z in state["current_zones"] if z != event.get("zone")]
        elif kind == "line_crossed":
            state["crossings"].append({"line": event.get("line"), "direction": event.get("direction"),
                                       "time": round(now, 3)})
        elif kind == "loitering":
            state["loitering"] = True
        else:
            return
        state["frame"] = event.get("frame")
        self._message("update", obj, now)

    def frame(self, boxes: np.ndarray, scores: np.ndarray, track_ids: Optional[np.ndarray], frame: int) -> None:
        """This frame's shown detections: the objects' boxes and scores; an object that moved sends an update
        once update_interval_s has passed since its last message."""
        if track_ids is None or not len(track_ids):
            return
        now = self._clock()
        for i in np.nonzero(track_ids >= 0)[0].tolist():
            obj = self._objects.get(int(track_ids[i]))
            if obj is None:
                continue
            state = obj.state
            box, score = shown(boxes, scores, i)
            if box != state["box"]:
                if state["box"] is not None:
                    obj.changed = True
                state["box"], state["score"], state["frame"] = box, score, frame
                state["top_score"] = max(score, state["top_score"] or 0.0)
            if obj.changed and now - obj.sent_at >= self.update_interval_s:
                self._message("update", obj, now)

    def messages(self) -> List[Dict[str, Any]]:
        out, self._out = self._out, []
        return out


def shown(boxes: np.ndarray, scores: np.ndarray, i: int):
    """The i-th detection's box (pixels, 0.1) and score (4 places), as the messages carry them."""
    return [round(float(v), 1) for v in boxes[i]], round(float(scores[i]), 4)
