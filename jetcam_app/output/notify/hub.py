"""What each source tells other systems, built on the emitter's thread after each frame (in the source's frame order)
and handed to the outputs' bounded queues: the events as they are to webhooks; to MQTT the objects' lifecycles
(PREFIX/events), line crossings, zone occupancy and counts (retained), the latest event's snapshot, and stats."""

import time
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from ...notify_config import MqttSpec, WebhookSpec
from .lifecycle import Lifecycles, shown as lifecycle_shown
from .topics import discovery

COUNTS_INTERVAL_S = 1.0  # retained counts at most this often per source (and once more at the end)
SNAPSHOT_INTERVAL_S = 1.0  # an event's snapshot at most this often per source: a JPEG costs milliseconds
CLOSE_TIMEOUT_S = 5.0  # what is still queued at exit gets this long to go out


class _SourceState:
    def __init__(self, name: str, lines: Sequence[str], zones: Sequence[str], update_interval_s: float):
        self.name = name
        self.lines, self.zones = list(lines), list(zones)
        self.lifecycles = Lifecycles(name, update_interval_s)
        self.pending = []  # type: List[Dict[str, Any]]  # this frame's events, sent once its counts are known
        self.counts_at = -1e9
        self.counts_dirty = True  # the first frame's counts replace a previous run's retained ones
        self.stats_at = -1e9
        self.snapshot_at = -1e9
        self.snapshot_due = False
        self.zone_labels = {z: set() for z in zones}  # labels published per zone: a label that left goes to 0


class Notifier:
    def __init__(self, mqtt: Any, webhooks: Sequence[Any], sources: Sequence[Tuple[str, Sequence[str], Sequence[str]]],
                 mqtt_spec: Optional[MqttSpec] = None, clock: Callable[[], float] = time.monotonic):
        self.mqtt = mqtt  # mqtt.MqttOutput or None
        self.webhooks = list(webhooks)  # webhook.WebhookOutput each
        self.spec = mqtt_spec or (mqtt.spec if mqtt is not None else None)
        self._clock = clock
        interval = self.spec.update_interval_s if self.spec else 5.0
        self._sources = {name: _SourceState(name, lines, zones, interval) for name, lines, zones in sources}
        self._closed = False

    def discovery(self, mqtt: Any = None) -> None:
        """Home Assistant's discovery configs (from the MQTT thread when it connects or HA comes online)."""
        mqtt = mqtt or self.mqtt
        for topic, config in discovery(mqtt.topics, [(s.name, s.lines, s.zones) for s in self._sources.values()]):
            mqtt.publish(topic, config, retain=True)

    def event(self, event: Dict[str, Any]) -> None:
        """An analytics event (as events.jsonl has it): to the webhooks now, to MQTT after its frame."""
        for hook in self.webhooks:
            hook.event(event)
        state = self._sources.get(event.get("source"))
        if state is not None and self.mqtt is not None:
            state.pending.append(event)

    def frame(self, source: str, frame_index: int, result: Any, hud: Any, counts: Optional[Dict[str, Any]],
              snapshot: Optional[Callable[[], Optional[bytes]]] = None) -> None:
        """After a frame of `source` is processed: its events, objects, counts, snapshot and stats to MQTT."""
        if self.mqtt is None:
            return
        state = self._sources[source]
        now = self._clock()
        track_ids = getattr(result, "track_ids", None)
        self._flush(state, counts, now, result if track_ids is not None else None)
        if track_ids is not None:
            state.lifecycles.frame(result.boxes, result.scores, track_ids, frame_index)
            self._lifecycle_messages(state)
        if state.snapshot_due and snapshot is not None and self.spec.snapshots \
                and now - state.snapshot_at >= SNAPSHOT_INTERVAL_S:
            jpeg = snapshot()
            if jpeg:
                state.snapshot_at, state.snapshot_due = now, False
                self.mqtt.publish(self.mqtt.topics.source(source, "snapshot"), jpeg, retain=True)
        if now - state.stats_at >= self.spec.stats_interval_s:
            state.stats_at = now
            self.mqtt.publish(self.mqtt.topics.source(source, "stats"), stats_payload(source, hud))

    def _flush(self, state: _SourceState, counts: Optional[Dict[str, Any]], now: float, shown: Any = None,
               final: bool = False) -> None:
        topics, zones_hit = self.mqtt.topics, set()
        events, state.pending = state.pending, []
        where = None  # track ID -> its row in this frame's shown detections, for the `new` messages' boxes
        for event in events:
            if event.get("event") == "track_started" and shown is not None:
                if where is None:
                    where = {int(t): i for i, t in enumerate(shown.track_ids.tolist()) if t >= 0}
                row = where.get(int(event["track_id"]))
                if row is not None:
                    state.lifecycles.event(event, *lifecycle_shown(shown.boxes, shown.scores, row))
                    continue
            state.lifecycles.event(event)
            kind = event.get("event")
            if kind == "line_crossed":
                line = (counts or {}).get("lines", {}).get(event["line"], {})
                self.mqtt.publish(topics.line(state.name, event["line"]), line_payload(event, line))
            elif kind in ("zone_entered", "zone_left"):
                zones_hit.add(event["zone"])
        if events:
            state.counts_dirty = state.snapshot_due = True
        self._lifecycle_messages(state)
        if counts is None:
            return
        first = state.counts_at < -1e8
        for zone in state.zones if first or final else sorted(zones_hit):
            occupancy = counts.get("zones", {}).get(zone, {}).get("occupancy", {})
            labels = state.zone_labels.setdefault(zone, set())
            labels.update(occupancy)
            for label in sorted(labels):
                self.mqtt.publish(topics.zone(state.name, zone, label), str(occupancy.get(label, 0)), retain=True)
            self.mqtt.publish(topics.zone(state.name, zone, "all"), str(sum(occupancy.values())), retain=True)
        if state.counts_dirty and (final or now - state.counts_at >= COUNTS_INTERVAL_S):
            state.counts_at, state.counts_dirty = now, False
            self.mqtt.publish(topics.source(state.name, "counts"), dict(counts, source=state.name), retain=True)

    def _lifecycle_messages(self, state: _SourceState) -> None:
        for message in state.lifecycles.messages():
            self.mqtt.publish(self.mqtt.topics.events, message)

    def close(self, final_counts: Optional[Dict[str, Dict[str, Any]]] = None,
              timeout_s: float = CLOSE_TIMEOUT_S) -> None:
        """The run ends: the last events (tracks ended with the run) and final counts go, then every queue drains
        within timeout_s."""
        if self._closed:
            return
        self._closed = True
        if self.mqtt is not None:
            for name, state in self._sources.items():
                self._flush(state, (final_counts or {}).get(name), self._clock(), final=True)
        outputs = ([self.mqtt] if self.mqtt is not None else []) + self.webhooks
        deadline = time.monotonic() + timeout_s
        for output in outputs:
            output.close(max(0.5, deadline - time.monotonic()))

    def summary(self) -> Dict[str, Any]:
        out = {}  # type: Dict[str, Any]
        if self.mqtt is not None:
            out["mqtt"] = self.mqtt.summary()
        if self.webhooks:
            out["webhooks"] = [hook.summary() for hook in self.webhooks]
        return out


def line_payload(event: Dict[str, Any], line: Dict[str, Any]) -> Dict[str, Any]:
    """PREFIX/SOURCE/line/LINE: the shape Home Assistant's MQTT event entity takes (event_type first)."""
    return {"event_type": event["direction"], "label": event["label"], "track_id": event["track_id"],
            "in_total": event["in_total"], "out_total": event["out_total"], "line": event["line"],
            "source": event["source"], "frame": event["frame"], "t_s": round(float(event["t_s"]), 3),
            "in": line.get("in", {}), "out": line.get("out", {}), "time": round(time.time(), 3)}


def stats_payload(source: str, hud: Any) -> Dict[str, Any]:
    realtime = getattr(hud, "realtime_ok", None)
    return {"source": source, "fps": _num(getattr(hud, "fps", None)), "p95_ms": _num(getattr(hud, "p95_ms", None)),
            "budget_ms": _num(getattr(hud, "budget_ms", None)), "dropped": int(getattr(hud, "dropped", 0) or 0),
            "realtime": realtime, "verdict": "measuring" if realtime is None else
            ("real-time" if realtime else "not real-time"), "time": round(time.time(), 3)}


def _num(value: Any) -> Optional[float]:
    if value is None:
        return None
    value = float(value)
    return round(value, 3) if value == value and abs(value) != float("inf") else None


def build_notifier(mqtt_spec: Any, webhook_specs: Sequence[WebhookSpec],
                   sources: Sequence[Tuple[str, Sequence[str], Sequence[str]]]) -> Optional[Notifier]:
    """The outputs the config asks for, or None (nothing to tell anyone)."""
    if not mqtt_spec and not webhook_specs:
        return None
    from .webhook import WebhookOutput

    notifier = Notifier(None, [WebhookOutput(spec) for spec in webhook_specs], sources, mqtt_spec or None)
    if mqtt_spec:  # made after the notifier: it asks the notifier for the discovery configs when it connects
        from .mqtt import MqttOutput

        notifier.mqtt = MqttOutput(mqtt_spec, on_online=notifier.discovery)
    return notifier
