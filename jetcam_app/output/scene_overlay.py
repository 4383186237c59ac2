"""Drawing what the analytics see (analytics.scene.SceneSnapshot) on a frame in place: counting lines with their in
direction and counts, translucent zones with their occupancy, and each track's trail; and the cached text plates
that these and Overlay's labels are pasted from."""

import functools
import math
from typing import List, NamedTuple, Optional, Sequence, Tuple

import cv2
import numpy as np

from ..inference.box_outlines import PALETTE_SIZE, class_color

FONT = cv2.FONT_HERSHEY_SIMPLEX
# Anti-aliased Hershey text costs ~0.8 ms a line at 720p on a desktop core (several times that on a Nano's A57);
# LINE_8 costs ~0.1 ms, and drawing must stay a small share of the frame budget.
LINE_TYPE = cv2.LINE_8
WHITE = (255, 255, 255)
BLACK = (0, 0, 0)
# Lines in colours no class box is drawn in at full value (the class palette has saturation 0.85): pure yellow,
# magenta, cyan, orange, then again.
LINE_COLORS = ((0, 255, 255), (255, 0, 255), (255, 255, 0), (0, 140, 255))
ZONE_COLOR = (255, 144, 30)  # azure
WARNING_COLOR = (0, 0, 230)  # a zone where a track loiters
ZONE_ALPHA = 0.25  # the tint: the scene must stay readable inside the zone
WARNING_ALPHA = 0.3
MAX_NUDGES = 6  # tries to move a scene plate off one drawn before it (lines crossing near their middles)

Rect = Tuple[int, int, int, int]  # x0, y0, x1, y1, exclusive ends


class SceneStyle(NamedTuple):
    """Sizes for one frame size, from Overlay's metrics, so the scene's text matches the labels' at every size."""

    scale: float  # Hershey font scale
    thickness: int  # text stroke
    pad: int  # plate padding
    stroke: int  # line, outline and trail width: the box outline's


def text_color_on(bg: Tuple[int, int, int]) -> Tuple[int, int, int]:
    b, g, r = bg
    return BLACK if (0.114 * b + 0.587 * g + 0.299 * r) > 140 else WHITE


@functools.lru_cache(maxsize=2048)
def label_plate(text: str, color: Tuple[int, int, int], scale: float, thickness: int, pad: int) -> np.ndarray:
    """The label as an image: `text` on a plate of `color` (2,048 kept: ~80 classes x the scores seen lately)."""
    (tw, th), base = cv2.getTextSize(text, FONT, scale, thickness)
    plate = np.empty((th + base + pad + 1, tw + 2 * pad + 1, 3), np.uint8)
    plate[:] = color
    cv2.putText(plate, text, (pad, th + pad // 2), FONT, scale, text_color_on(color), thickness, LINE_TYPE)
    plate.setflags(write=False)
    return plate


PLATE_BG = (24, 24, 24)  # scene plates: white text on dark, in a rim of the line's or zone's colour


@functools.lru_cache(maxsize=256)
def scene_plate(text: str, color: Tuple[int, int, int], scale: float, thickness: int, pad: int) -> np.ndarray:
    """A count or a zone's name: white `text` on a dark plate in a rim of `color`. Dark, unlike the labels' plates
    of their class colour, so a zone is never taken for a detection of the class that shares its hue; white, as
    thin coloured strokes on dark (red above all) read poorly on small frames."""
    (tw, th), base = cv2.getTextSize(text, FONT, scale, thickness)
    rim = thickness + 1
    plate = np.empty((th + base + pad + 1 + 2 * rim, tw + 2 * pad + 1 + 2 * rim, 3), np.uint8)
    plate[:] = color
    plate[rim:-rim, rim:-rim] = PLATE_BG
    cv2.putText(plate, text, (pad + rim, th + pad // 2 + rim), FONT, scale, WHITE, thickness, LINE_TYPE)
    plate.setflags(write=False)
    return plate


def paste_plates(image: np.ndarray, placed: Sequence[list]) -> List[Rect]:
    """Pastes each [plate, x, y] (x, y its top-left corner, inside the frame) and returns their rectangles, cut at
    the frame's edges."""
    h, w = image.shape[:2]
    rects = []
    for plate, x, y in placed:
        region = image[y:y + plate.shape[0], x:x + plate.shape[1]]
        region[...] = plate[:region.shape[0], :region.shape[1]]
        rects.append((x, y, min(w, x + plate.shape[1]), min(h, y + plate.shape[0])))
    return rects


def draw_scene(image: np.ndarray, scene, style: SceneStyle) -> List[Rect]:
    """Everything at once (geometry, then plates); returns the plates' rectangles."""
    return paste_plates(image, draw_geometry(image, scene, style))


def draw_geometry(image: np.ndarray, scene, style: SceneStyle) -> List[list]:
    """Zones, trails and lines drawn in place; returns their text plates placed ([plate, x, y]), not yet pasted,
    so Overlay can paste them above the boxes' outlines and keep its HUD off them."""
    h, w = image.shape[:2]
    placed = []  # type: List[list]
    taken = []  # type: List[Rect]
    zone_plates = [_zone(image, zone, style) for zone in scene.zones]
    _trails(image, scene.trails, style)
    for i, line in enumerate(scene.lines):  # the lines' counts are placed first: zone names give way to them
        _line(image, line, LINE_COLORS[i % len(LINE_COLORS)], style, placed, taken, h, w)
    for plate, x, y in filter(None, zone_plates):
        placed.append(_place(plate, x, y, taken, h, w))
    return placed


def line_marks(lines, stroke: int, samples: int = 17) -> np.ndarray:
    """(K, 4) small rectangles along each line (x0, y0, x1, y1, exclusive ends), for the HUD to keep off the lines
    as it keeps off boxes: a diagonal line's bounding rectangle would cover far more than the line."""
    if not lines:
        return np.zeros((0, 4), np.int64)
    t = np.linspace(0.0, 1.0, samples)[:, None]
    points = np.concatenate([np.asarray(line.a, np.float64) + t * (np.asarray(line.b, np.float64)
                                                                    - np.asarray(line.a, np.float64))
                             for line in lines])
    points = np.rint(points).astype(np.int64)
    return np.concatenate([points - stroke, points + stroke + 1], 1)


def _place(plate: np.ndarray, x: float, y: float, taken: List[Rect], h: int, w: int) -> list:
    """[plate, x, y] with its top-left corner inside the frame, moved down or up by its height (alternately, further
    each time) while it covers a scene plate placed before it."""
    ph, pw = plate.shape[:2]
    x0 = int(min(max(0, round(x)), max(0, w - pw)))
    base = int(round(y))
    y0 = 0
    for step in range(MAX_NUDGES + 1):
        offset = ((step + 1) // 2) * (ph + 1) * (1 if step % 2 else -1)
        y0 = int(min(max(0, base + offset), max(0, h - ph)))
        if not any(x0 < r[2] and x0 + pw > r[0] and y0 < r[3] and y0 + ph > r[1] for r in taken):
            break
    taken.append((x0, y0, x0 + pw, y0 + ph))
    return [plate, x0, y0]


def _zone(image: np.ndarray, zone, style: SceneStyle) -> Optional[tuple]:
    """The zone drawn; returns its plate and where it would go (plate, x, y), placed after the lines' plates."""
    h, w = image.shape[:2]
    polygon = np.asarray(zone.polygon, np.int32).reshape(-1, 2)
    if len(polygon) < 3:
        return None
    warn = zone.loitering > 0
    color = WARNING_COLOR if warn else ZONE_COLOR
    # The tint is blended only inside the zone's bounding rectangle (a whole-frame blend costs ~10 ms at 4K); pixels
    # there outside the polygon blend with themselves and come out unchanged.
    x0, y0 = np.maximum(polygon.min(axis=0), 0)
    x1, y1 = np.minimum(polygon.max(axis=0) + 1, (w, h))
    if x1 > x0 and y1 > y0:
        roi = image[y0:y1, x0:x1]
        tinted = roi.copy()
        cv2.fillPoly(tinted, [polygon - (x0, y0)], color, LINE_TYPE)
        cv2.addWeighted(tinted, WARNING_ALPHA if warn else ZONE_ALPHA, roi,
                        1.0 - (WARNING_ALPHA if warn else ZONE_ALPHA), 0.0, dst=roi)
    cv2.polylines(image, [polygon], True, color, style.stroke, LINE_TYPE)
    text = "%s %d" % (zone.name, zone.occupancy)
    if warn:
        text += "  loitering %d" % zone.loitering
    plate = scene_plate(text, color, style.scale, style.thickness, style.pad)
    # above the zone's topmost corner (below it when that is at the frame's top): the zone's inside stays clear
    tx, ty = polygon[int(np.argmin(polygon[:, 1]))].tolist()
    top = ty - plate.shape[0] - style.stroke
    return plate, tx - plate.shape[1] // 2, top if top >= 0 else ty + style.stroke


def _trails(image: np.ndarray, trails, style: SceneStyle) -> None:
    """One polylines call per palette colour (a crowd has dozens of tracks; each OpenCV call gives the GIL up)."""
    by_shade = {}  # type: dict
    for trail in trails:
        points = np.asarray(trail.points, np.int32).reshape(-1, 2)
        if len(points) >= 2:
            by_shade.setdefault(int(trail.track_id) % PALETTE_SIZE, []).append(points)
    for shade, curves in by_shade.items():
        cv2.polylines(image, curves, False, class_color(shade), style.stroke, LINE_TYPE)


def _line(image: np.ndarray, line, color: Tuple[int, int, int], style: SceneStyle, placed: List[list],
          taken: List[Rect], h: int, w: int) -> None:
    ax, ay = float(line.a[0]), float(line.a[1])
    bx, by = float(line.b[0]), float(line.b[1])
    a, b = (int(round(ax)), int(round(ay))), (int(round(bx)), int(round(by)))
    edged = style.stroke + 2 * max(1, style.stroke // 3)  # a dark edge each side: reads on bright and dark scenes
    cv2.line(image, a, b, BLACK, edged, LINE_TYPE)
    cv2.line(image, a, b, color, style.stroke, LINE_TYPE)
    for end in (a, b):  # the segment's ends: only a crossing between them counts
        cv2.circle(image, end, style.stroke + 2, BLACK, -1, LINE_TYPE)
        cv2.circle(image, end, style.stroke + 1, color, -1, LINE_TYPE)
    dx, dy = bx - ax, by - ay
    length = math.hypot(dx, dy)
    mx, my = (ax + bx) / 2.0, (ay + by) / 2.0
    nx, ny = (dy / length, -dx / length) if length else (0.0, -1.0)  # `in`: A->B turned a quarter counter-clockwise
    if length:
        arrow = max(10.0, min(0.06 * min(h, w), 0.4 * length))
        tip = (int(round(mx + nx * arrow)), int(round(my + ny * arrow)))
        mid = (int(round(mx)), int(round(my)))
        cv2.arrowedLine(image, mid, tip, BLACK, edged, LINE_TYPE, 0, 0.4)
        cv2.arrowedLine(image, mid, tip, color, style.stroke, LINE_TYPE, 0, 0.4)
    plate = scene_plate("%s in %d out %d" % (line.name, line.in_total, line.out_total), color, style.scale,
                        style.thickness, style.pad)
    ph, pw = plate.shape[:2]
    # on the `out` side of the middle, opposite the arrow, its nearest edge a few pixels off the line
    reach = abs(nx) * pw / 2.0 + abs(ny) * ph / 2.0 + style.pad + style.stroke
    cx, cy = mx - nx * reach, my - ny * reach
    placed.append(_place(plate, cx - pw / 2.0, cy - ph / 2.0, taken, h, w))
