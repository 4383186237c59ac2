"""Counting lines and zones as the user gives them: `--line NAME:X1,Y1,X2,Y2`, `--zone NAME:X1,Y1,X2,Y2,X3,Y3[,...]`,
or `lines:` / `zones:` entries in a source's config; checked here, so a bad one is one line and exit 2 before any
camera opens. Coordinates are pixels, or fractions of the frame when every one is at most 1."""

import math
import re
from dataclasses import dataclass
from typing import Any, Mapping, Sequence, Tuple

import numpy as np

from .errors import ConfigError
from .files import short_value

ANCHORS = ("bottom_center", "center")
COUNT_MODES = ("every", "once")
NAME_PATTERN = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")  # names go into file names and, later, MQTT topics
LINE_EXAMPLE = "--line door:0.5,0,0.5,1 (NAME:X1,Y1,X2,Y2; pixels, or fractions of the frame when all are <= 1)"
ZONE_EXAMPLE = "--zone bay:0.1,0.5,0.5,0.5,0.5,0.9 (NAME:X1,Y1,X2,Y2,X3,Y3[,...], at least 3 points)"

Points = Tuple[Tuple[float, float], ...]


@dataclass(frozen=True)
class LineSpec:
    name: str
    points: Points  # two (x, y) points: A -> B; "in" is A->B turned a quarter turn counter-clockwise as seen
    anchor: str = "bottom_center"
    classes: Tuple[str, ...] = ()  # class names counted; () = every class
    count: str = "every"  # every crossing, or once per track and direction
    min_frames: int = 2  # frames the anchor must stay on the new side: flicker on the line is no crossing


@dataclass(frozen=True)
class ZoneSpec:
    name: str
    points: Points  # the polygon's corners, 3 or more
    anchor: str = "bottom_center"
    classes: Tuple[str, ...] = ()
    min_frames: int = 2  # frames inside (outside) before an entry (exit) counts
    loiter_s: float = 0.0  # a track inside this long raises one loitering event; 0 = never


def _numbers(text: str, what: str, example: str) -> Tuple[float, ...]:
    values = []
    for part in text.split(","):
        try:
            value = float(part)
        except ValueError:
            raise ConfigError("%s: %s is not a number; e.g. %s" % (what, short_value(part.strip()), example))
        if not math.isfinite(value):
            raise ConfigError("%s: coordinates must be finite numbers, got %s; e.g. %s" % (what, part.strip(), example))
        values.append(value)
    return tuple(values)


def _check_name(name: Any, what: str, example: str) -> str:
    if not isinstance(name, str) or not NAME_PATTERN.match(name):
        raise ConfigError("%s needs a name of 1-64 letters, digits, '_', '-' or '.', got %s; e.g. %s"
                          % (what, short_value(name), example))
    return name


def _pairs(values: Sequence[float]) -> Points:
    return tuple((float(values[i]), float(values[i + 1])) for i in range(0, len(values), 2))


def _check_line(name: str, points: Points, what: str) -> None:
    if len(points) != 2:
        raise ConfigError("%s needs exactly 2 points (4 numbers), got %d numbers; e.g. %s"
                          % (what, 2 * len(points), LINE_EXAMPLE))
    (x1, y1), (x2, y2) = points
    if x1 == x2 and y1 == y2:
        raise ConfigError("%s has zero length (both points are %g,%g); give two different points, e.g. %s"
                          % (what, x1, y1, LINE_EXAMPLE))


def _check_zone(points: Points, what: str) -> None:
    if len(points) < 3:
        raise ConfigError("%s needs at least 3 points (6 numbers), got %d numbers; e.g. %s"
                          % (what, 2 * len(points), ZONE_EXAMPLE))
    xy = np.array(points, np.float64)
    area = 0.5 * abs(np.dot(xy[:, 0], np.roll(xy[:, 1], -1)) - np.dot(xy[:, 1], np.roll(xy[:, 0], -1)))
    if area <= 0:
        raise ConfigError("%s encloses no area (its points lie on one line); e.g. %s" % (what, ZONE_EXAMPLE))


def _flag(text: str, kind: str, example: str) -> Tuple[str, Tuple[float, ...]]:
    name, sep, coords = str(text).partition(":")
    what = "--%s %s" % (kind, short_value(text))
    if not sep:
        raise ConfigError("%s: give NAME:COORDINATES, e.g. %s" % (what, example))
    _check_name(name.strip(), what, example)
    values = _numbers(coords, what, example)
    if len(values) % 2:
        raise ConfigError("%s: %d numbers do not make x,y pairs; e.g. %s" % (what, len(values), example))
    return name.strip(), values


def parse_line_flag(text: str) -> LineSpec:
    name, values = _flag(text, "line", LINE_EXAMPLE)
    points = _pairs(values)
    _check_line(name, points, "--line %s" % short_value(text))
    return LineSpec(name, points)


def parse_zone_flag(text: str) -> ZoneSpec:
    name, values = _flag(text, "zone", ZONE_EXAMPLE)
    points = _pairs(values)
    _check_zone(points, "--zone %s" % short_value(text))
    return ZoneSpec(name, points)


def _entry_points(entry: Mapping[str, Any], what: str, example: str) -> Points:
    points = entry.get("points")
    if not isinstance(points, (list, tuple)) or not all(isinstance(p, (list, tuple)) and len(p) == 2
                                                        for p in points):
        raise ConfigError("%s: points must be a list of [x, y] pairs, got %s; e.g. %s"
                          % (what, short_value(points), example))
    flat = ",".join(str(v) for p in points for v in p)
    return _pairs(_numbers(flat, what, example))


def _common(entry: Mapping[str, Any], what: str, example: str, allowed: Sequence[str]):
    unknown = sorted(set(entry) - set(allowed))
    if unknown:
        raise ConfigError("%s: unknown key %s; valid keys: %s" % (what, short_value(unknown[0]), ", ".join(allowed)))
    anchor = entry.get("anchor", "bottom_center")
    if anchor not in ANCHORS:
        raise ConfigError("%s: anchor must be one of %s, got %s" % (what, ", ".join(ANCHORS), short_value(anchor)))
    classes = entry.get("classes") or ()
    if isinstance(classes, str):
        classes = (classes,)
    if not isinstance(classes, (list, tuple)) or not all(isinstance(c, str) and c for c in classes):
        raise ConfigError("%s: classes must be a list of class names, e.g. [person, car], got %s"
                          % (what, short_value(classes)))
    min_frames = entry.get("min_frames", 2)
    if isinstance(min_frames, bool) or not isinstance(min_frames, int) or not 1 <= min_frames <= 1000:
        raise ConfigError("%s: min_frames must be a whole number of frames from 1 to 1000, got %s"
                          % (what, short_value(min_frames)))
    return anchor, tuple(classes), min_frames


LINE_KEYS = ("name", "points", "anchor", "classes", "count", "min_frames")
ZONE_KEYS = ("name", "points", "anchor", "classes", "min_frames", "loiter_s")


def line_from_config(entry: Any, where: str) -> LineSpec:
    if isinstance(entry, LineSpec):
        return entry
    if isinstance(entry, str):
        return parse_line_flag(entry)
    what = "%s" % where
    example = "{name: door, points: [[0.5, 0], [0.5, 1]]}"
    if not isinstance(entry, Mapping):
        raise ConfigError("%s must be a mapping like %s" % (what, example))
    name = _check_name(entry.get("name"), what, example)
    anchor, classes, min_frames = _common(entry, what, example, LINE_KEYS)
    count = entry.get("count", "every")
    if count not in COUNT_MODES:
        raise ConfigError("%s: count must be every or once, got %s" % (what, short_value(count)))
    points = _entry_points(entry, what, example)
    _check_line(name, points, what)
    return LineSpec(name, points, anchor, classes, count, min_frames)


def zone_from_config(entry: Any, where: str) -> ZoneSpec:
    if isinstance(entry, ZoneSpec):
        return entry
    if isinstance(entry, str):
        return parse_zone_flag(entry)
    what = "%s" % where
    example = "{name: bay, points: [[0.1, 0.5], [0.5, 0.5], [0.5, 0.9]], loiter_s: 120}"
    if not isinstance(entry, Mapping):
        raise ConfigError("%s must be a mapping like %s" % (what, example))
    name = _check_name(entry.get("name"), what, example)
    anchor, classes, min_frames = _common(entry, what, example, ZONE_KEYS)
    loiter = entry.get("loiter_s", 0.0)
    if isinstance(loiter, bool) or not isinstance(loiter, (int, float)) or not 0 <= loiter < 1e7:
        raise ConfigError("%s: loiter_s must be seconds >= 0, got %s" % (what, short_value(loiter)))
    points = _entry_points(entry, what, example)
    _check_zone(points, what)
    return ZoneSpec(name, points, anchor, classes, min_frames, float(loiter))


def _unique(specs: Sequence[Any], where: str) -> None:
    names = [s.name for s in specs]
    for name in names:
        if names.count(name) > 1:
            raise ConfigError("%s: two are named %s; give each its own name" % (where, short_value(name)))


def lines_from_config(value: Any, where: str) -> Tuple[LineSpec, ...]:
    """A `lines:` list (mappings, flag strings or LineSpecs) as LineSpecs; ConfigError naming the entry."""
    if value is None:
        return ()
    if isinstance(value, (str, Mapping)) or not isinstance(value, (list, tuple)):
        raise ConfigError("%s must be a list, e.g. lines: [{name: door, points: [[0.5, 0], [0.5, 1]]}]" % where)
    specs = tuple(line_from_config(entry, "%s[%d]" % (where, i)) for i, entry in enumerate(value))
    _unique(specs, where)
    return specs


def zones_from_config(value: Any, where: str) -> Tuple[ZoneSpec, ...]:
    if value is None:
        return ()
    if isinstance(value, (str, Mapping)) or not isinstance(value, (list, tuple)):
        raise ConfigError("%s must be a list, e.g. zones: [{name: bay, points: [[0, 0], [1, 0], [1, 1]]}]" % where)
    specs = tuple(zone_from_config(entry, "%s[%d]" % (where, i)) for i, entry in enumerate(value))
    _unique(specs, where)
    return specs


def resolve_points(points: Points, width: int, height: int) -> np.ndarray:
    """(K, 2) pixel coordinates: fractions of the frame when every coordinate is at most 1, else pixels as given."""
    xy = np.array(points, np.float64).reshape(-1, 2)
    if (np.abs(xy) <= 1.0).all():
        xy = xy * np.array([width, height], np.float64)
    return xy


def outside_frame(xy: np.ndarray, width: int, height: int) -> bool:
    return bool((xy < 0).any() or (xy[:, 0] > width).any() or (xy[:, 1] > height).any())
