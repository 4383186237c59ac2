"""MQTT topics and Home Assistant discovery configs. Every topic level built from a name (a source, a line, a zone,
a class label) is escaped, so a name holding '/', '#' or '+' can never publish outside its source's subtree."""

import re
from typing import Any, Dict, Iterable, List, Tuple

_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")


def level(name: Any) -> str:
    """One topic level from a name: anything but letters, digits, '_', '-', '.' percent-encoded (UTF-8), so '/',
    '#', '+', '$' and spaces never act as separators or wildcards; '.' and '..' and '' are encoded too."""
    text = str(name)
    out = _UNSAFE.sub(lambda m: "".join("%%%02X" % b for b in m.group(0).encode("utf-8")), text)
    if out in ("", ".", ".."):
        out = "".join("%%%02X" % b for b in text.encode("utf-8")) or "%00"
    return out


class Topics:
    def __init__(self, prefix: str, discovery_prefix: str = "homeassistant"):
        self.prefix = prefix  # checked by notify_config: plain levels, no wildcards
        self.discovery_prefix = discovery_prefix

    @property
    def events(self) -> str:
        return "%s/events" % self.prefix

    @property
    def available(self) -> str:
        return "%s/available" % self.prefix

    def source(self, source: str, *parts: Any) -> str:
        return "/".join([self.prefix, level(source)] + [level(p) for p in parts])

    def line(self, source: str, line: str) -> str:
        return self.source(source, "line", line)

    def zone(self, source: str, zone: str, label: str) -> str:
        return self.source(source, "zone", zone, label)

    @property
    def ha_status(self) -> str:
        return "%s/status" % self.discovery_prefix


def _device(prefix: str, source: str) -> Dict[str, Any]:
    return {"identifiers": ["jetcam_%s_%s" % (level(prefix), level(source))], "name": "jetcam %s" % source,
            "manufacturer": "jetcam_app", "model": "camera analytics"}


def _object_id(*parts: str) -> str:
    # discovery object ids allow [a-zA-Z0-9_-] only
    return "_".join(re.sub(r"[^A-Za-z0-9_-]", "_", p) for p in parts)


def discovery(topics: Topics, sources: Iterable[Tuple[str, List[str], List[str]]]) -> List[Tuple[str, Dict[str, Any]]]:
    """(topic, config) for each source's line counts (two sensors and an event entity per line) and zone
    occupancy (a sensor per zone), in the shape Home Assistant's MQTT discovery reads."""
    out = []
    base = _object_id("jetcam", topics.prefix)
    for source, lines, zones in sources:
        device = _device(topics.prefix, source)
        common = {"availability_topic": topics.available, "payload_available": "online",
                  "payload_not_available": "offline", "device": device}
        counts = topics.source(source, "counts")
        for line in lines:
            for direction in ("in", "out"):
                oid = _object_id(base, source, line, direction)
                # the names go into Jinja keys as strings: quoted and escaped, never code
                template = "{{ value_json.lines[%s].%s_total }}" % (_jinja_string(line), direction)
                out.append(("%s/sensor/%s/config" % (topics.discovery_prefix, oid), dict(
                    common, name="%s %s %s" % (source, line, direction), unique_id=oid, state_topic=counts,
                    value_template=template, state_class="total_increasing")))
            oid = _object_id(base, source, line, "crossing")
            out.append(("%s/event/%s/config" % (topics.discovery_prefix, oid), dict(
                common, name="%s %s crossing" % (source, line), unique_id=oid,
                state_topic=topics.line(source, line), event_types=["in", "out"])))
        for zone in zones:
            oid = _object_id(base, source, zone, "occupancy")
            out.append(("%s/sensor/%s/config" % (topics.discovery_prefix, oid), dict(
                common, name="%s %s occupancy" % (source, zone), unique_id=oid,
                state_topic=topics.zone(source, zone, "all"), state_class="measurement")))
    return out


def _jinja_string(text: str) -> str:
    return "'%s'" % text.replace("\\", "\\\\").replace("'", "\\'")
