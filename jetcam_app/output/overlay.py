"""Drawing on the frame in place: the scene (lines, zones, trails: scene_overlay.py), boxes with labels and scores,
top-k text, and the HUD (heads-up display: the run's numbers) in the corner that covers no count, no label and no
box's top edge."""

import time
from dataclasses import dataclass, field
from typing import Dict, List, NamedTuple, Optional, Sequence, Tuple

import cv2
import numpy as np

from ..config import OverlayConfig
from ..inference.box_outlines import PALETTE_SIZE, box_thickness, class_color
from ..dense_results import Mask, Poses
from ..types import Classification, Detections
from .dense_overlay import draw_mask, draw_poses
from .scene_overlay import BLACK, FONT, LINE_TYPE, WHITE, SceneStyle, draw_geometry, label_plate, line_marks, \
    paste_plates

GREEN = (0, 200, 0)
RED = (0, 0, 255)
GREY = (128, 128, 128)
HUD_STAGES = ("pre", "infer", "post", "draw")
MAX_LABELS = 25


@dataclass
class HudInfo:
    fps: float = 0.0
    stage_ms: Dict[str, float] = field(default_factory=dict)  # keys pre, infer, post, draw (optionally sink)
    rss_mb: Optional[float] = None
    ram_used_mb: Optional[float] = None
    ram_total_mb: Optional[float] = None
    gpu_mb: Optional[float] = None
    model: str = ""
    backend: str = ""
    precision: str = ""
    realtime_ok: Optional[bool] = None  # None = not judged yet (first frames)
    budget_ms: Optional[float] = None
    p95_ms: Optional[float] = None
    random_weights: bool = False
    dropped: int = 0
    still_images: bool = False  # an image source: per-image latency, no video verdict


HUD_REFRESH_S = 0.1  # the HUD's numbers are re-rendered 10 times a second (readable, and cheap at 600 fps)


class HudLayer(NamedTuple):
    """The HUD as last rendered: what it was rendered for and when, the layer, its mask and the badge / warning
    rectangles relative to the layer's top-left corner."""

    key: Tuple
    rendered_at: float
    layer: np.ndarray
    mask: np.ndarray
    badge: Optional[Tuple[int, int, int, int]]
    warning: Optional[Tuple[int, int, int, int]]


def rate_text(fps: float) -> str:
    """12.3 fps; below 1 fps the seconds a frame takes (2.5 s/frame), never "0.0 fps"."""
    if fps <= 0:
        return "- fps"
    return "%.1f fps" % fps if fps >= 1.0 else "%.1f s/frame" % (1.0 / fps)


def _corner_costs(corners: np.ndarray, rects: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """For each of `corners` (K x 4), the summed `weights` of the `rects` (N x 4; x0 y0 x1 y1, exclusive ends) it
    overlaps: one broadcast for every corner and rectangle (this runs on every frame, holding the GIL)."""
    c, r = corners[:, None, :], rects[None, :, :]
    overlaps = (r[..., 0] < c[..., 2]) & (r[..., 2] > c[..., 0]) & (r[..., 1] < c[..., 3]) & (r[..., 3] > c[..., 1])
    return overlaps.astype(np.int64) @ weights


class Overlay:
    """annotate(image, result, hud) draws in place and returns the image; text is scaled to the frame height.

    The HUD's place: the first corner (top-left, top-right, bottom-left, bottom-right) where it covers no count
    plate of the scene, no label and no box's top edge; when every corner covers some, the one covering fewest
    (count plates first). It is chosen when the HUD is
    rendered (10 times a second), so it does not hop between corners from frame to frame and costs little at
    hundreds of fps; labels it would hide in between move out of its way (below it, or above it at the bottom).
    last_hud_rect, last_label_rects and last_scene_rects give what was drawn (x0, y0, x1, y1, exclusive ends) so
    tests can check that they never meet."""

    def __init__(self, config: Optional[OverlayConfig] = None):
        self.config = config or OverlayConfig()
        self.last_badge_rect = None  # type: Optional[Tuple[int, int, int, int]]  # x0, y0, x1, y1 (for tests)
        self.last_warning_rect = None  # type: Optional[Tuple[int, int, int, int]]
        self.last_hud_rect = None  # type: Optional[Tuple[int, int, int, int]]
        self.last_label_rects = []  # type: List[Tuple[int, int, int, int]]
        self.last_scene_rects = []  # type: List[Tuple[int, int, int, int]]  # the scene's text plates
        self._scale_for = None  # type: Optional[Tuple[int, int]]
        self._hud_layer = None  # type: Optional[HudLayer]
        self._placed_for = None  # type: Optional[HudLayer]  # the rendering the HUD's corner was chosen for
        self._hud_rect = (0, 0, 0, 0)
        self._placed_among = []  # type: List[Tuple[int, int, int, int]]  # the scene plates it was placed among

    def _metrics(self, height: int, width: int) -> None:
        if self._scale_for == (height, width):
            return
        self._scale_for = (height, width)
        # 0.65 at 720p, ~1.0 at 1080p; never so small that Hershey glyphs become unreadable
        self.scale = max(0.35, min(height, width * 9 / 16.0) / 1100.0)
        # Hershey strokes 2 px wide cost ~8x the 1 px ones; on a filled plate 1 px reads well up to 1080p.
        self.thickness = max(1, int(round(self.scale * 1.5)))
        (_, text_h), baseline = cv2.getTextSize("Hg", FONT, self.scale, self.thickness)
        self.line_h = text_h + baseline + max(2, int(4 * self.scale))
        self.pad = max(2, int(6 * self.scale))
        self.box_thickness = box_thickness(height)
        self.text_h, self.text_base = text_h, baseline
        # the HUD's text is a little smaller than the labels': it is read less often than what it must not hide
        self.hud_scale = max(0.3, self.scale * 0.8)
        self.hud_thickness = max(1, int(round(self.hud_scale * 1.5)))
        (_, hud_text_h), hud_base = cv2.getTextSize("Hg", FONT, self.hud_scale, self.hud_thickness)
        self.hud_line_h = hud_text_h + hud_base + max(2, int(4 * self.hud_scale))
        self.hud_pad = max(2, int(5 * self.hud_scale))
        self.scene_style = SceneStyle(self.scale, self.thickness, self.pad, self.box_thickness)

    def annotate(self, image_bgr: np.ndarray, result, hud: Optional[HudInfo] = None,
                 outlined: bool = False, scene=None) -> np.ndarray:
        """`outlined`: the image already shows the detections' box outlines (drawn on the GPU: box_outlines.py).
        `scene`: an analytics.scene.SceneSnapshot, drawn under the boxes; its count plates above their outlines."""
        h, w = image_bgr.shape[:2]
        self._metrics(h, w)
        labels = []  # type: List[list]  # [plate, x, y] kept inside the frame
        boxes = np.zeros((0, 4), np.int64)
        scene_plates = []  # type: List[list]
        if self.config.enabled and scene is not None:
            scene_plates = draw_geometry(image_bgr, scene, self.scene_style)
        if self.config.enabled and result is not None:
            if isinstance(result, Detections):
                labels, boxes = self._detections(image_bgr, result, outlined)
            elif isinstance(result, Classification):
                labels = self._classification(image_bgr, result)
            elif isinstance(result, Poses):
                draw_poses(image_bgr, result)
                labels = self._pose_labels(result, h, w)
            elif isinstance(result, Mask):
                draw_mask(image_bgr, result)
        self.last_scene_rects = scene_rects = paste_plates(image_bgr, scene_plates) if scene_plates else []
        self.last_hud_rect = None
        hud_layer = self._hud_for(h, w, hud) if self.config.hud and hud is not None else None
        hx0 = hy0 = hx1 = hy1 = -1  # the HUD's rectangle; labels under it move next to it
        if hud_layer is not None and hud_layer.layer.size:
            # placed again with each rendering (10 times a second), and at once when a count plate moves or grows
            if self._placed_for is not hud_layer or scene_rects != self._placed_among:
                self._placed_for, self._placed_among = hud_layer, scene_rects
                self._hud_rect = self._place_hud(h, w, hud_layer, labels, boxes, scene_rects, scene)
            self.last_hud_rect = hx0, hy0, hx1, hy1 = self._hud_rect
        rects = []
        for plate, x, y in labels:
            ph, pw = plate.shape[:2]
            if x < hx1 and x + pw > hx0 and y < hy1 and y + ph > hy0:  # below a HUD in the top half, else above
                y = min(hy1, max(0, h - ph)) if hy0 < h - hy1 else max(0, hy0 - ph)
            if ph <= h and pw <= w:  # the usual case: one slice assignment (half the time of the general one)
                image_bgr[y:y + ph, x:x + pw] = plate
            else:
                region = image_bgr[y:y + ph, x:x + pw]
                region[...] = plate[:region.shape[0], :region.shape[1]]
            rects.append((x, y, min(w, x + pw), min(h, y + ph)))
        self.last_label_rects = rects
        if self.last_hud_rect is not None:
            self._paste_hud(image_bgr, hud_layer, self.last_hud_rect)
        return image_bgr

    def _placed(self, text: str, x: int, y: int, color: Tuple[int, int, int], h: int, w: int) -> list:
        """[plate, x, y]: the cached label plate (text on its class colour) with its top-left corner kept inside
        the frame; pasted later by one array copy (drawn afresh it costs two OpenCV calls, each handing the GIL
        to another thread and back)."""
        plate = label_plate(text, color, self.scale, self.thickness, self.pad)
        ph, pw = plate.shape[:2]
        return [plate, int(min(max(0, x), max(0, w - pw))), int(min(max(0, y), max(0, h - ph)))]

    def _detections(self, image: np.ndarray, det: Detections, outlined: bool = False):
        """Outlines drawn, labels placed (not yet pasted); returns (labels, the boxes in whole pixels).
        Every box is drawn; only the best MAX_LABELS get a text label: a hundred labels (random weights, crowds)
        are unreadable and would cost ~10 ms of Python per frame. With tracking on, a label starts with its
        track's ID ("#12 person 0.87"); a box on probation (ID -1) is labelled as without tracking."""
        if not len(det):
            return [], np.zeros((0, 4), np.int64)
        h, w = image.shape[:2]
        corners = np.rint(det.boxes).astype(np.int32)
        if not outlined:
            self._draw_outlines(image, corners, det.labels)
        best = np.argsort(-det.scores, kind="stable")[:MAX_LABELS]
        rise = self.text_h + self.text_base + self.pad
        labels = []
        ids = det.track_ids[best].tolist() if det.track_ids is not None else [-1] * len(best)
        for (x0, y0), label, score, track in zip(corners[best, :2].tolist(), det.labels[best].tolist(),
                                                 det.scores[best].tolist(), ids):
            above = y0 - rise
            text = "%s %.2f" % (det.name_of(label), score) if track < 0 else \
                "#%d %s %.2f" % (track, det.name_of(label), score)
            labels.append(self._placed(text, x0, above if above >= 0 else y0, class_color(label), h, w))
        return labels, corners

    def _pose_labels(self, poses: Poses, h: int, w: int) -> List[list]:
        """A label above each person's keypoints ("#12 person 0.48" with tracking): the person's score, its track."""
        labels = []
        rise = self.text_h + self.text_base + self.pad
        ids = poses.track_ids.tolist() if poses.track_ids is not None else [-1] * len(poses)
        for (x0, y0, x1, y1), score, track in zip(poses.boxes.tolist(), poses.scores.tolist(), ids):
            if x1 > x0 or y1 > y0:
                text = "person %.2f" % score if track < 0 else "#%d person %.2f" % (track, score)
                above = int(y0) - rise
                labels.append(self._placed(text, int(x0), above if above >= 0 else int(y0), class_color(0), h, w))
        return labels

    def _draw_outlines(self, image: np.ndarray, corners: np.ndarray, labels: np.ndarray) -> None:
        """One polylines call per palette colour and pixel of thickness; nested 1 px outlines cost half of one
        thicker outline (OpenCV draws thick lines as polygons with round joins). Where outlines cross, the
        inner inset and then the higher palette index wins (box_outlines.py draws the same pixels)."""
        shades = labels.astype(np.int64) % PALETTE_SIZE
        colours = np.unique(shades).tolist()
        for inset in range(self.box_thickness):
            outlines = (corners + np.array((inset, inset, -inset, -inset), np.int32))[:, [0, 1, 2, 1, 2, 3, 0, 3]]
            outlines = outlines.reshape(-1, 4, 2)
            for shade in colours:
                cv2.polylines(image, list(outlines[shades == shade]), True, class_color(shade), 1)

    def _classification(self, image: np.ndarray, cls: Classification) -> List[list]:
        """Top-k, best first, stacked upwards from the bottom-left corner."""
        h, w = image.shape[:2]
        lines = ["%d. %s %.1f%%" % (i + 1, cls.name_of(int(c)), 100.0 * float(s))
                 for i, (c, s) in enumerate(zip(cls.class_ids, cls.scores))]
        y = h - self.pad - self.line_h * len(lines)
        return [self._placed(text, self.pad, y + i * self.line_h,
                             class_color(int(cls.class_ids[i])) if i == 0 else (40, 40, 40), h, w)
                for i, text in enumerate(lines)]

    def _place_hud(self, h: int, w: int, hud: HudLayer, labels: List[list], boxes: np.ndarray,
                   scene_rects: Sequence[Tuple[int, int, int, int]] = (), scene=None):
        """The first corner covering no scene plate (a line's counts, a zone's name), no label and no box top
        edge, preferring one that covers least of the boxes and the scene's lines; else the corner covering
        fewest of them, scene plates first. A scene plate weighs more than everything else together and a label
        or top edge more than every box and line together, so the first corner of least weight is that choice."""
        lh, lw = hud.layer.shape[:2]
        m = self.pad
        x0, y0, x1, y1 = max(0, m), max(0, m), max(0, w - lw - m), max(0, h - lh - m)
        corners = np.array(((x0, y0), (x1, y0), (x0, y1), (x1, y1)), np.int64)
        corners = np.concatenate([corners, np.minimum(corners + (lw, lh), (w, h))], 1)
        marks = line_marks(scene.lines, self.box_thickness) if scene is not None else np.zeros((0, 4), np.int64)
        n = len(boxes)
        if not labels and not n and not scene_rects and not len(marks):
            return tuple(corners[0].tolist())
        rects = np.array([(x, y, x + p.shape[1], y + p.shape[0]) for p, x, y in labels], np.int64).reshape(-1, 4)
        boxes = np.clip(boxes.astype(np.int64), 0, [w, h, w, h])
        tops = boxes.copy()
        tops[:, 3] = tops[:, 1] + self.box_thickness
        weights = np.ones(len(rects) + 2 * n + len(marks), np.int64)
        weights[:len(rects) + n] = n + len(marks) + 1
        plates = np.array(scene_rects, np.int64).reshape(-1, 4)
        weights = np.concatenate([np.full(len(plates), int(weights.sum()) + 1, np.int64), weights])
        cost = _corner_costs(corners, np.concatenate([plates, rects, tops, boxes, marks]), weights)
        return tuple(corners[int(np.argmin(cost))].tolist())  # argmin: the first of equal cost, in corner order

    def _hud_lines(self, hud: HudInfo) -> List[str]:
        """The HUD's text lines after the badge, most useful first (small frames keep only the first ones)."""
        stages = " ".join("%s %.1f" % (k, hud.stage_ms[k]) for k in HUD_STAGES if k in hud.stage_ms)
        lines = [stages + " ms"] if stages else []
        mem = []
        if hud.rss_mb is not None:
            mem.append("RSS %.0f MB" % hud.rss_mb)
        if hud.gpu_mb is not None:
            mem.append("GPU %.0f MB" % hud.gpu_mb)
        if hud.ram_used_mb is not None and hud.ram_total_mb:
            mem.append("RAM %.1f/%.1f GB" % (hud.ram_used_mb / 1024.0, hud.ram_total_mb / 1024.0))
        if hud.dropped:
            mem.append("dropped %d" % hud.dropped)
        if mem:
            lines.append(" ".join(mem))
        ident = " ".join(p for p in (hud.model, hud.backend, hud.precision) if p)
        if ident:
            lines.append(ident)
        return lines

    def _badge(self, hud: HudInfo) -> Tuple[str, Tuple[int, int, int]]:
        """The first line: the rate and the real-time verdict on its colour; still images get their latency."""
        if hud.still_images:
            total = sum(hud.stage_ms.get(k, 0.0) for k in HUD_STAGES)
            return "%.0f ms/image" % total, (90, 60, 20)
        rate = rate_text(hud.fps)
        if hud.realtime_ok is None:
            return "%s  measuring" % rate, GREY
        text = "%s  %s" % (rate, "REAL-TIME" if hud.realtime_ok else "NOT REAL-TIME")
        if hud.p95_ms is not None and hud.budget_ms is not None:
            text += "  p95 %.0f/%.0f ms" % (hud.p95_ms, hud.budget_ms)
        return text, GREEN if hud.realtime_ok else RED

    def _hud_for(self, h: int, w: int, hud: HudInfo) -> HudLayer:
        """The HUD layer, rendered again 10 times a second (or at once when the verdict or frame size changes)."""
        key = (h, w, hud.realtime_ok, hud.random_weights, hud.model, hud.backend, hud.precision, hud.still_images)
        now = time.monotonic()
        cached = self._hud_layer
        if cached is None or cached.key != key or now - cached.rendered_at >= HUD_REFRESH_S:
            cached = self._hud_layer = HudLayer(key, now, *self._render_hud(h, w, hud))
        return cached

    def _render_hud(self, h: int, w: int, hud: HudInfo):
        """(layer, mask, badge rect, warning rect): the badge, the warning and as many lines as fit in 60% of
        the frame's width and 30% of its height (the badge and the warning always)."""
        scale, thick, pad, line_h = self.hud_scale, self.hud_thickness, self.hud_pad, self.hud_line_h
        badge_text, badge_color = self._badge(hud)
        size_of = lambda text: cv2.getTextSize(text, FONT, scale, thick)[0][0] + 2 * pad  # noqa: E731
        if size_of(badge_text) > 0.6 * w and "  p95" in badge_text:
            badge_text = badge_text[:badge_text.index("  p95")]  # small frames: the rate and the verdict only
        rows = [(badge_text, badge_color, WHITE)]
        if hud.random_weights:
            rows.append(("RANDOM WEIGHTS (timing only)", BLACK, RED))
        width = max(size_of(t) for t, _, _ in rows)
        for text in self._hud_lines(hud):
            if (len(rows) + 1) * line_h > 0.3 * h or max(width, size_of(text)) > 0.6 * w:
                break
            rows.append((text, None, WHITE))
            width = max(width, size_of(text))
        width, height = min(w, width), min(h, len(rows) * line_h + pad)
        sentinel = np.array((1, 2, 3), np.uint8)  # a colour the HUD never draws: what still has it is not HUD
        layer = np.empty((height, width, 3), np.uint8)
        layer[:] = sentinel
        rects = []
        for i, (text, bg, fg) in enumerate(rows):
            top = i * line_h + (pad // 2 if i else 0)
            bottom = min(height, top + line_h)
            if bg is not None:
                cv2.rectangle(layer, (0, top), (width - 1, bottom - 1), bg, -1)
            cv2.putText(layer, text, (pad, top + line_h - pad // 2 - 1), FONT, scale, fg, thick, LINE_TYPE)
            rects.append((0, top, width, bottom))
        mask = (layer != sentinel).any(axis=2).astype(np.uint8)
        return layer, mask, rects[0], rects[1] if hud.random_weights else None

    def _paste_hud(self, image: np.ndarray, hud: HudLayer, rect: Tuple[int, int, int, int]) -> None:
        x0, y0, x1, y1 = rect
        roi = image[y0:y1, x0:x1]
        # translucent: the scene shows through, darkened so the text reads on any scene
        cv2.convertScaleAbs(roi, dst=roi, alpha=0.35)
        cv2.copyTo(hud.layer[:y1 - y0, :x1 - x0], hud.mask[:y1 - y0, :x1 - x0], roi)
        shift = lambda r: None if r is None else (r[0] + x0, r[1] + y0, r[2] + x0, r[3] + y0)  # noqa: E731
        self.last_badge_rect, self.last_warning_rect = shift(hud.badge), shift(hud.warning)
