"""Synthetic tracking scenes whose line and zone counts are known exactly: objects on drawn paths, with a detector's
faults laid on top (short misses, occlusion, false positives, score jitter), each one count-neutral by construction.

    python bench/tracking_scenes.py        # lists the scenes with their expected counts and checks each one

Every scene states its expected counts by hand; check_scene() recomputes them by the issue's rules from the true
paths and again from the detections with perfect identities, so a scene can only disagree with a tracker, never with
itself. Used by bench/tracking_quality.py and tests/test_tracking_bench.py.
"""

import os
import sys
from collections import Counter
from dataclasses import dataclass, field
from typing import Dict, List, Sequence, Set, Tuple

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from jetcam_app.regions import LineSpec, ZoneSpec  # noqa: E402

SIZE_WH = (1280, 720)
FPS = 30.0
CLASS_NAMES = ("person", "car")
PERSON, CAR = 0, 1
BOX_WH = {PERSON: (56.0, 140.0), CAR: (170.0, 95.0)}
FAR_PERSON_WH = (46.0, 115.0)  # smaller: further from the camera, so it is the one hidden
JITTER_PX = 1.0  # box corners move by up to this much, never across a line or a zone's edge
MARGIN_PX = 0.5  # every true anchor keeps this far from every line and zone edge, so its side is never in doubt
SEED = 28


@dataclass
class Mover:
    """One object: its bottom-centre anchor in each frame from `start` on, and the frames the detector misses it."""

    label: int
    start: int
    anchors: np.ndarray  # (T, 2) float64
    size_wh: Tuple[float, float]
    hidden: Set[int] = field(default_factory=set)

    def frames(self) -> range:
        return range(self.start, self.start + len(self.anchors))

    def box(self, frame: int) -> np.ndarray:
        x, y = self.anchors[frame - self.start]
        w, h = self.size_wh
        return np.array([x - w / 2, y - h, x + w / 2, y])


@dataclass
class FrameDetections:
    boxes: np.ndarray  # (N, 4) float32 xyxy pixels
    scores: np.ndarray  # (N,) float32
    labels: np.ndarray  # (N,) int64
    truth: np.ndarray  # (N,) int64: the mover's index, -1 for a false positive


@dataclass
class Scene:
    name: str
    about: str
    frames: List[FrameDetections]
    lines: Tuple[LineSpec, ...]
    zones: Tuple[ZoneSpec, ...]
    expected_lines: Dict[str, Dict[str, Dict[str, int]]]  # {line: {"in": {label: n}, "out": {label: n}}}
    expected_zones: Dict[str, Dict[str, int]]  # {zone: {label: entries}}
    movers: List[Mover]
    size_wh: Tuple[int, int] = SIZE_WH
    fps: float = FPS
    class_names: Tuple[str, ...] = CLASS_NAMES


# -- geometry, and the counting rules of the issue applied to known identities ------------------------------------

def anchor_of(boxes: np.ndarray, anchor: str) -> np.ndarray:
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    y = boxes[:, 3] if anchor == "bottom_center" else (boxes[:, 1] + boxes[:, 3]) / 2
    return np.stack([(boxes[:, 0] + boxes[:, 2]) / 2, y], 1)


def _side(p, a, b) -> float:
    """> 0 on the `in` side: A->B turned a quarter turn counter-clockwise as the picture is seen (y down)."""
    return (p[0] - a[0]) * (b[1] - a[1]) - (p[1] - a[1]) * (b[0] - a[0])


def _crossing_t(p, q, a, b) -> float:
    """Where the move p->q meets the line through A, B, as a fraction of A->B (0..1 = on the segment)."""
    d, e, f = np.subtract(b, a), np.subtract(q, p), np.subtract(p, a)
    return float((f[0] * e[1] - f[1] * e[0]) / (d[0] * e[1] - d[1] * e[0]))


def _inside(p, polygon: np.ndarray) -> bool:
    """Even-odd rule."""
    x, y, inside = p[0], p[1], False
    for (x1, y1), (x2, y2) in zip(polygon, np.roll(polygon, -1, 0)):
        if (y1 > y) != (y2 > y) and x < x1 + (y - y1) * (x2 - x1) / (y2 - y1):
            inside = not inside
    return inside


def _edge_distance(p, a, b) -> float:
    d = np.subtract(b, a)
    t = np.clip(np.dot(np.subtract(p, a), d) / np.dot(d, d), 0.0, 1.0)
    return float(np.hypot(*(np.add(a, t * d) - p)))


def reference_counts(tracks: Sequence[Tuple[int, np.ndarray]], lines: Sequence[LineSpec],
                     zones: Sequence[ZoneSpec], class_names: Sequence[str]):
    """(line counts, zone entries) as expected_lines / expected_zones from (label, anchors in frame order) per track.
    A side or an inside-ness is taken once it has held for min_frames observations; a crossing counts when the move
    onto the new side met the finite segment. Raises where a move passes so near a segment's end that an
    implementation's reasonable choice (segment vs band, < vs <=) could decide it."""
    line_counts = {ln.name: {"in": Counter(), "out": Counter()} for ln in lines}
    zone_counts = {z.name: Counter() for z in zones}
    for label, anchors in tracks:
        name = class_names[label]
        for ln in lines:
            if ln.classes and name not in ln.classes:
                continue
            a, b = ln.points
            sides = [_side(p, a, b) > 0 for p in anchors]
            held, run, first, counted = sides[0], 0, 0, set()
            for k in range(1, len(anchors)):
                if sides[k] == held:
                    run = 0
                    continue
                run += 1
                first = k if run == 1 else first
                if run < ln.min_frames:
                    continue
                held, run = sides[k], 0
                t = _crossing_t(anchors[first - 1], anchors[first], a, b)
                if -0.1 < t < 0.05 or 0.95 < t < 1.1:
                    raise ValueError("line %s: a crossing at %.2f of its length is too near an end" % (ln.name, t))
                direction = "in" if held else "out"
                if 0 <= t <= 1 and (ln.count == "every" or direction not in counted):
                    counted.add(direction)
                    line_counts[ln.name][direction][name] += 1
        for z in zones:
            if z.classes and name not in z.classes:
                continue
            polygon = np.asarray(z.points, np.float64)
            inside = [_inside(p, polygon) for p in anchors]
            held, run = False, 0
            for now in inside:
                run = 0 if now == held else run + 1
                if run >= z.min_frames:
                    held, run = now, 0
                    zone_counts[z.name][name] += int(now)
    return ({k: {d: dict(c) for d, c in v.items()} for k, v in line_counts.items()},
            {k: dict(c) for k, c in zone_counts.items()})


def _margin(p, lines: Sequence[LineSpec], zones: Sequence[ZoneSpec]) -> float:
    """How far the point is from every line (the infinite one) and every zone edge."""
    near = [abs(_side(p, *ln.points)) / np.hypot(*np.subtract(ln.points[1], ln.points[0])) for ln in lines]
    for z in zones:
        polygon = np.asarray(z.points, np.float64)
        near += [_edge_distance(p, a, b) for a, b in zip(polygon, np.roll(polygon, -1, 0))]
    return min(near) if near else np.inf


def check_scene(scene: Scene) -> None:
    """Raises AssertionError unless the hand-written counts follow from the paths and from the detections."""
    truth = [(m.label, m.anchors) for m in scene.movers]
    assert reference_counts(truth, scene.lines, scene.zones, scene.class_names) == \
        (scene.expected_lines, scene.expected_zones), scene.name + ": the paths give other counts"
    anchor = (scene.lines + scene.zones)[0].anchor
    seen = {}  # mover -> [anchor per frame it was detected in]
    for f in scene.frames:
        for i, p in zip(f.truth, anchor_of(f.boxes, anchor)):
            if i >= 0:
                seen.setdefault(int(i), []).append(p)
    observed = [(scene.movers[i].label, np.array(seen[i])) for i in sorted(seen)]
    assert reference_counts(observed, scene.lines, scene.zones, scene.class_names) == \
        (scene.expected_lines, scene.expected_zones), scene.name + ": the detections give other counts"
    for m in scene.movers:
        assert min(_margin(p, scene.lines, scene.zones) for p in m.anchors) >= MARGIN_PX, scene.name
        assert all(f not in m.hidden for f in m.frames()[:4]), scene.name + ": a mover must be seen to be tracked"


# -- paths, and the detector's faults ----------------------------------------------------------------------------

def _path(speed: float, *waypoints) -> np.ndarray:
    """Anchors per frame along straight legs at about `speed` px a frame; a waypoint (x, y, n) is held n frames."""
    out = [np.asarray(waypoints[0][:2], np.float64)] * (1 + (waypoints[0][2] if len(waypoints[0]) > 2 else 0))
    for w in waypoints[1:]:
        start, target = out[-1], np.asarray(w[:2], np.float64)
        steps = max(1, int(np.ceil(np.linalg.norm(target - start) / speed - 1e-9)))
        out += [start + (target - start) * k / steps for k in range(1, steps + 1)]
        out += [target] * (w[2] if len(w) > 2 else 0)
    return np.array(out)


def _walk(label: int, start: int, speed: float, *waypoints, **kw) -> Mover:
    return Mover(label, start, _path(speed, *waypoints), kw.get("size_wh", BOX_WH[label]))


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    inter = max(w, 0.0) * max(h, 0.0)
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def _occlude(front: Mover, back: Mover, covered: float = 0.4) -> None:
    """The back object is missed while the front one covers more than `covered` of its box."""
    for f in set(front.frames()) & set(back.frames()):
        a, b = front.box(f), back.box(f)
        w = min(a[2], b[2]) - max(a[0], b[0])
        h = min(a[3], b[3]) - max(a[1], b[1])
        if max(w, 0) * max(h, 0) > covered * (b[2] - b[0]) * (b[3] - b[1]):
            back.hidden.add(f)


def _miss_at_crossings(movers: List[Mover], polyline, lengths: Sequence[int]) -> None:
    """Each mover is missed for a few frames around where it crosses the polyline (lengths cycle over the movers)."""
    for m, length in zip(movers, lengths):
        for a, b in zip(polyline, polyline[1:]):
            sides = np.array([_side(p, a, b) > 0 for p in m.anchors])
            for k in np.nonzero(sides[1:] != sides[:-1])[0]:
                if not 0 <= _crossing_t(m.anchors[k], m.anchors[k + 1], a, b) <= 1:
                    continue  # crosses the line beyond the segment's ends
                first = m.start + int(k) + 1 - length // 2
                m.hidden.update(range(max(first, m.start + 4), first + length))


def _render(movers: List[Mover], lines, zones, rng: np.random.Generator, fp_per_frame: int = 0,
            score_range: Tuple[float, float] = (0.6, 0.95), burst_p: float = 0.0) -> List[FrameDetections]:
    """The detections of each frame: the movers' boxes with bounded jitter, scores drawn from score_range (the
    first frames confident, so every track can start), random misses, and false positives that never touch another
    box in the frame before or after (one frame each, so none can be confirmed)."""
    for m in movers:
        f = m.start + 4
        while f < m.start + len(m.anchors):
            if rng.random() < burst_p:
                m.hidden.update(range(f, f + int(rng.integers(1, 6))))
                f += 6
            f += 1
    anchor = (lines + zones)[0].anchor
    n_frames = max(m.start + len(m.anchors) for m in movers)
    truth_boxes = [[m.box(f) for m in movers if f in m.frames()] for f in range(n_frames + 1)]
    frames, previous_fp = [], []
    for f in range(n_frames):
        rows = []
        for i, m in enumerate(movers):
            if f not in m.frames() or f in m.hidden:
                continue
            clean = m.box(f)
            box = (clean + rng.uniform(-JITTER_PX, JITTER_PX, 4)).astype(np.float32)
            p, q = anchor_of(clean, anchor)[0], anchor_of(box, anchor)[0]
            if any((_side(p, *ln.points) > 0) != (_side(q, *ln.points) > 0) for ln in lines) or \
                    any(_inside(p, np.asarray(z.points)) != _inside(q, np.asarray(z.points)) for z in zones):
                box = clean.astype(np.float32)  # the jitter would have moved the anchor across: none this frame
            low, high = (0.6, 0.9) if f - m.start < 3 else score_range
            rows.append((box, rng.uniform(low, high), m.label, i))
        near = truth_boxes[max(f - 1, 0)] + truth_boxes[f] + truth_boxes[f + 1] + previous_fp
        previous_fp = []
        while len(previous_fp) < fp_per_frame:
            label = int(rng.integers(0, len(CLASS_NAMES)))
            w, h = np.multiply(BOX_WH[label], rng.uniform(0.7, 1.3, 2))
            x, y = rng.uniform(0, SIZE_WH[0] - w), rng.uniform(0, SIZE_WH[1] - h)
            box = np.array([x, y, x + w, y + h])
            if all(_iou(box, other) == 0 for other in near + previous_fp):
                previous_fp.append(box)
                rows.append((box.astype(np.float32), rng.uniform(0.3, 0.95), label, -1))
        rows.sort(key=lambda r: -r[1])  # as a detector gives them, best first
        frames.append(FrameDetections(np.array([r[0] for r in rows], np.float32).reshape(-1, 4),
                                      np.array([r[1] for r in rows], np.float32),
                                      np.array([r[2] for r in rows], np.int64),
                                      np.array([r[3] for r in rows], np.int64)))
    return frames


# -- the scenes ---------------------------------------------------------------------------------------------------

def _corridor():
    """Rows of people and cars crossing a door both ways, one row beyond the door's end, a line for cars only."""
    lines = (LineSpec("door", ((640, 50), (640, 620))),  # drawn top to bottom: left-to-right is `in`
             LineSpec("cars_only", ((898, 50), (898, 620)), classes=("car",)))
    zones = (ZoneSpec("lobby", ((760, 220), (1040, 220), (1040, 450), (760, 450))),)
    movers = [_walk(PERSON, 0, 6, (150.5, 170), (1180.5, 170)), _walk(PERSON, 0, 5, (1180.5, 300), (120.5, 300)),
              _walk(PERSON, 10, 7, (120.5, 430), (1180.5, 430)), _walk(PERSON, 5, 6, (1180.5, 560), (120.5, 560)),
              _walk(CAR, 100, 12, (100.5, 170), (1180.5, 170)), _walk(CAR, 170, 10, (1180.5, 430), (100.5, 430)),
              _walk(PERSON, 0, 6, (120.5, 715), (1180.5, 715)),  # below the door's end: no crossing
              _walk(CAR, 190, 10, (1180.5, 715), (100.5, 715))]
    expected_lines = {"door": {"in": {"person": 2, "car": 1}, "out": {"person": 2, "car": 1}},
                      "cars_only": {"in": {"car": 1}, "out": {"car": 1}}}
    return movers, lines, zones, expected_lines, {"lobby": {"person": 2, "car": 1}}


def _u_turns():
    """Vertical moves against one line counted two ways: every crossing, and once per track and direction."""
    points = ((200, 400), (1100, 400))  # drawn left to right: bottom-to-top is `in`
    lines = (LineSpec("every", points), LineSpec("once", points, count="once"))
    down = np.concatenate
    movers = [
        # 1 frame beyond the line and back: flicker, no crossing
        Mover(PERSON, 0, down([_path(6, (300.5, 640.5), (300.5, 406.5)), [(300.5, 393.5)],
                               _path(6, (300.5, 406.5), (300.5, 640.5))]), BOX_WH[PERSON]),
        _walk(PERSON, 10, 6, (480.5, 650.5), (480.5, 300.5, 10), (480.5, 650.5)),  # over, 10 frames, back
        _walk(CAR, 20, 8, (660.5, 680.5), (660.5, 300.5), (660.5, 680.5), (660.5, 300.5), (660.5, 680.5)),
        # hovering at the line, a frame beyond it every 4
        Mover(PERSON, 30, down([_path(6, (840.5, 640.5), (840.5, 406.5))] + [[(840.5, y) for y in
                               (393.5, 406.5, 407.5, 406.5)]] * 10 + [_path(6, (840.5, 406.5), (840.5, 640.5))]),
              BOX_WH[PERSON]),
        # exactly min_frames (2) beyond, then back for good: one crossing each way
        Mover(PERSON, 40, down([_path(6, (1000.5, 650.5), (1000.5, 406.5)), [(1000.5, 394.5), (1000.5, 388.5)],
                                _path(6, (1000.5, 406.5), (1000.5, 650.5))]), BOX_WH[PERSON])]
    expected_lines = {"every": {"in": {"person": 2, "car": 2}, "out": {"person": 2, "car": 2}},
                      "once": {"in": {"person": 2, "car": 1}, "out": {"person": 2, "car": 1}}}
    return movers, lines, (), expected_lines, {}


def _occlusions():
    """Two pairs meet on the door, the far one of each hidden behind the near one while it crosses."""
    lines = (LineSpec("door", ((640, 60), (640, 660))),)
    zones = (ZoneSpec("lobby", ((300.5, 330), (520.5, 380), (520.5, 640), (300.5, 640))),)
    near = _walk(PERSON, 0, 6, (205, 520), (1105, 520))
    far = _walk(PERSON, 0, 6, (1075, 490), (175, 490), size_wh=FAR_PERSON_WH)
    car = _walk(CAR, 200, 10, (1105, 600), (175, 600))
    walker = _walk(PERSON, 170, 6, (181, 560), (1105, 560), size_wh=FAR_PERSON_WH)  # another class behind a car
    _occlude(near, far)
    _occlude(car, walker)
    expected_lines = {"door": {"in": {"person": 2}, "out": {"person": 1, "car": 1}}}
    return [near, far, car, walker], lines, zones, expected_lines, {"lobby": {"person": 3, "car": 1}}


def _zones():
    """An L-shaped bay (a path through its notch stays outside) and a strip crossed for exactly 2 frames and 1."""
    zones = (ZoneSpec("bay", ((300, 250), (700, 250), (700, 400), (500, 400), (500, 600), (300, 600))),
             ZoneSpec("strip", ((900, 80), (916, 80), (916, 660), (900, 660))))
    movers = [_walk(PERSON, 0, 6, (150.5, 330.5), (400.5, 330.5, 40), (400.5, 690.5)),  # in, wait, out
              Mover(PERSON, 0, np.concatenate([_path(6, (150.5, 500.5), (294.5, 500.5)), [(306.5, 500.5)],
                                               _path(6, (294.5, 500.5), (150.5, 500.5))]), BOX_WH[PERSON]),
              _walk(CAR, 0, 6, (600.5, 150.5), (600.5, 330.5), (600.5, 150.5), (600.5, 330.5), (600.5, 150.5)),
              _walk(PERSON, 150, 6, (620.5, 700.5), (620.5, 450.5, 10), (780.5, 450.5)),  # the notch: outside
              _walk(PERSON, 0, 8, (750.5, 300.5), (1198.5, 300.5)),  # 2 frames inside the strip
              _walk(CAR, 0, 16, (750.5, 500.5), (1198.5, 500.5)),  # 1 frame inside the strip
              _walk(CAR, 200, 6, (420.5, 715.5), (420.5, 180.5))]  # up through both arms
    return movers, (), zones, {}, {"bay": {"person": 1, "car": 3}, "strip": {"person": 1}}


def _scene(name: str, about: str, layout, seed: int, misses: Sequence[int] = (), **faults) -> Scene:
    movers, lines, zones, expected_lines, expected_zones = layout()
    if misses:
        _miss_at_crossings(movers, lines[0].points, misses)
        for z in zones:
            _miss_at_crossings(movers, list(z.points) + [z.points[0]], [3] * len(movers))
    frames = _render(movers, lines, zones, np.random.default_rng(seed), **faults)
    return Scene(name, about, frames, lines, zones, expected_lines, expected_zones, movers)


def all_scenes(seed: int = SEED) -> List[Scene]:
    jitter = (0.15, 0.9)  # ByteTrack's low band is 0.1-0.25: some boxes of every track fall in it
    return [
        _scene("crossings_both_ways", "people and cars cross a door both ways; one row passes beyond its end",
               _corridor, seed),
        _scene("u_turn_flicker", "U-turns on a line: 1 frame over (none), 2 frames (one each way), back and forth",
               _u_turns, seed + 1),
        _scene("occlusion_crossing", "two pairs cross paths on the door, the far one hidden 5-9 frames",
               _occlusions, seed + 2),
        _scene("short_misses", "as crossings_both_ways, missed 1-5 frames at the door, 3 at the zone's edges",
               _corridor, seed + 3, misses=(1, 2, 3, 4, 5, 5, 3, 2)),
        _scene("false_positives", "as crossings_both_ways, with 4 one-frame false positives a frame",
               _corridor, seed + 4, fp_per_frame=4),
        _scene("score_jitter", "as crossings_both_ways, scores 0.15-0.9", _corridor, seed + 5, score_range=jitter),
        _scene("zones_polygon", "an L-shaped zone entered, left, re-entered, grazed; a strip for 2 frames and 1",
               _zones, seed + 6),
        _scene("all_faults", "as crossings_both_ways, with random misses of 1-5 frames, 3 false positives a frame "
               "and scores 0.15-0.9", _corridor, seed + 7, fp_per_frame=3, score_range=jitter, burst_p=0.03),
        _scene("all_faults_occlusion", "as occlusion_crossing, with the same faults", _occlusions, seed + 8,
               fp_per_frame=3, score_range=jitter, burst_p=0.03),
    ]


def main() -> int:
    for scene in all_scenes():
        check_scene(scene)
        boxes = sum(len(f.scores) for f in scene.frames)
        print("%-22s %3d frames %5d boxes  lines %s  zones %s" % (scene.name, len(scene.frames), boxes,
                                                                  scene.expected_lines, scene.expected_zones))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
