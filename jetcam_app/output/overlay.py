"""Drawing on the frame in place: boxes with labels and scores, top-k text, and the HUD with its real-time badge."""
from __future__ import annotations

import functools
import time
from dataclasses import dataclass, field
from typing import Dict, List, NamedTuple, Optional, Tuple

import cv2
import numpy as np

from ..config import OverlayConfig
from ..palette import PALETTE_SIZE, box_thickness, class_color
from ..types import Classification, Detections

FONT = cv2.FONT_HERSHEY_SIMPLEX
GREEN = (0, 200, 0)
RED = (0, 0, 255)
GREY = (128, 128, 128)
WHITE = (255, 255, 255)
BLACK = (0, 0, 0)
HUD_STAGES = ("pre", "infer", "post", "draw")
# Anti-aliased Hershey text costs ~0.8 ms a line at 720p on a desktop core (several times that on a Nano's A57);
# LINE_8 costs ~0.1 ms, and drawing must stay a small share of the frame budget.
LINE_TYPE = cv2.LINE_8
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


HUD_REFRESH_S = 0.1  # the HUD's numbers are re-rendered 10 times a second (readable, and cheap at 600 fps)


class HudLayer(NamedTuple):
    """The HUD as last rendered: what it was rendered for and when, the panel to darken, the layer and its mask."""

    key: Tuple
    rendered_at: float
    panel: Tuple[int, int, int, int]  # x0, y0, x1, y1
    layer: np.ndarray
    mask: np.ndarray


def _text_color_on(bg: Tuple[int, int, int]) -> Tuple[int, int, int]:
    b, g, r = bg
    return BLACK if (0.114 * b + 0.587 * g + 0.299 * r) > 140 else WHITE


@functools.lru_cache(maxsize=2048)
def _label_plate(text: str, color: Tuple[int, int, int], scale: float, thickness: int, pad: int) -> np.ndarray:
    """The label as an image: `text` on a plate of `color` (2,048 kept: ~80 classes x the scores seen lately)."""
    (tw, th), base = cv2.getTextSize(text, FONT, scale, thickness)
    plate = np.empty((th + base + pad + 1, tw + 2 * pad + 1, 3), np.uint8)
    plate[:] = color
    cv2.putText(plate, text, (pad, th + pad // 2), FONT, scale, _text_color_on(color), thickness, LINE_TYPE)
    plate.setflags(write=False)
    return plate


class Overlay:
    """annotate(image, result, hud) draws in place and returns the image; text is scaled to the frame height."""

    def __init__(self, config: Optional[OverlayConfig] = None):
        self.config = config or OverlayConfig()
        self.last_badge_rect = None  # type: Optional[Tuple[int, int, int, int]]  # x0, y0, x1, y1 (for tests)
        self.last_warning_rect = None  # type: Optional[Tuple[int, int, int, int]]
        self._scale_for = None  # type: Optional[Tuple[int, int]]
        self._hud_layer = None  # type: Optional[HudLayer]

    def _metrics(self, height: int, width: int) -> None:
        if self._scale_for == (height, width):
            return
        self._scale_for = (height, width)
        # 0.65 at 720p, ~1.0 at 1080p; never so small that Hershey glyphs become unreadable
        self.scale = max(0.35, min(height, width * 9 / 16.0) / 1100.0)
        # Hershey strokes 2 px wide cost ~8x the 1 px ones (24 vs 3 us a label here); on a filled plate 1 px
        # reads well up to 1080p.
        self.thickness = max(1, int(round(self.scale * 1.5)))
        (_, text_h), baseline = cv2.getTextSize("Hg", FONT, self.scale, self.thickness)
        self.line_h = text_h + baseline + max(2, int(4 * self.scale))
        self.pad = max(2, int(6 * self.scale))
        self.box_thickness = box_thickness(height)
        self.text_h, self.text_base = text_h, baseline

    def annotate(self, image_bgr: np.ndarray, result, hud: Optional[HudInfo] = None,
                 outlined: bool = False) -> np.ndarray:
        """`outlined`: the image already shows the detections' box outlines (drawn on the GPU: box_outlines.py)."""
        h, w = image_bgr.shape[:2]
        self._metrics(h, w)
        if self.config.enabled and result is not None:
            if isinstance(result, Detections):
                self._draw_detections(image_bgr, result, outlined)
            elif isinstance(result, Classification):
                self._draw_classification(image_bgr, result)
        if self.config.hud and hud is not None:
            self._draw_hud(image_bgr, hud)
        return image_bgr

    def _label(self, image: np.ndarray, text: str, x: int, y: int, color: Tuple[int, int, int]) -> None:
        """Text on a filled box whose top-left corner is (x, y), kept inside the frame: a cached plate pasted by
        one array copy (drawn afresh it costs two OpenCV calls, each handing the GIL to another thread and back)."""
        plate = _label_plate(text, color, self.scale, self.thickness, self.pad)
        ph, pw = plate.shape[:2]
        h, w = image.shape[:2]
        x = int(min(max(0, x), max(0, w - pw)))
        y = int(min(max(0, y), max(0, h - ph)))
        if ph <= h and pw <= w:  # the usual case: one slice assignment (half the time of the general one)
            image[y:y + ph, x:x + pw] = plate
            return
        region = image[y:y + ph, x:x + pw]
        region[...] = plate[:region.shape[0], :region.shape[1]]

    def _draw_detections(self, image: np.ndarray, det: Detections, outlined: bool = False) -> None:
        # Every box is drawn; only the best MAX_LABELS get a text label: a hundred labels (random weights,
        # crowds) are unreadable and would cost ~10 ms of Python per frame.
        if not len(det):
            return
        corners = np.rint(det.boxes).astype(np.int32)
        if not outlined:
            self._draw_outlines(image, corners, det.labels)
        best = np.argsort(-det.scores, kind="stable")[:MAX_LABELS]
        rise = self.text_h + self.text_base + self.pad
        for (x0, y0), label, score in zip(corners[best, :2].tolist(), det.labels[best].tolist(),
                                          det.scores[best].tolist()):
            above = y0 - rise
            self._label(image, "%s %.2f" % (det.name_of(label), score), x0, above if above >= 0 else y0,
                        class_color(label))

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

    def _draw_classification(self, image: np.ndarray, cls: Classification) -> None:
        """Top-k, best first, stacked upwards from the bottom-left corner (the HUD owns the top-left)."""
        h = image.shape[0]
        lines = ["%d. %s %.1f%%" % (i + 1, cls.name_of(int(c)), 100.0 * float(s))
                 for i, (c, s) in enumerate(zip(cls.class_ids, cls.scores))]
        y = h - self.pad - self.line_h * len(lines)
        for i, text in enumerate(lines):
            color = class_color(int(cls.class_ids[i])) if i == 0 else (40, 40, 40)
            self._label(image, text, self.pad, y + i * self.line_h, color)

    def _hud_lines(self, hud: HudInfo) -> List[str]:
        stages = "  ".join("%s %.1f" % (k, hud.stage_ms[k]) for k in HUD_STAGES if k in hud.stage_ms)
        lines = ["FPS %.1f   %s ms" % (hud.fps, stages) if stages else "FPS %.1f" % hud.fps]
        mem = []
        if hud.rss_mb is not None:
            mem.append("RSS %.0f MB" % hud.rss_mb)
        if hud.ram_used_mb is not None and hud.ram_total_mb:
            mem.append("RAM %.1f/%.1f GB" % (hud.ram_used_mb / 1024.0, hud.ram_total_mb / 1024.0))
        if hud.gpu_mb is not None:
            mem.append("GPU %.0f MB" % hud.gpu_mb)
        if mem:
            lines.append("  ".join(mem))
        ident = " | ".join(p for p in (hud.model, hud.backend, hud.precision) if p)
        if hud.dropped:
            ident = (ident + "   " if ident else "") + "dropped %d" % hud.dropped
        if ident:
            lines.append(ident)
        return lines

    def _draw_hud(self, image: np.ndarray, hud: HudInfo) -> None:
        """The panel's background is darkened on every frame; its text, badge and warning are rendered into a
        layer 10 times a second (or at once when the verdict, the frame size or the warning changes)."""
        h, w = image.shape[:2]
        key = (h, w, hud.realtime_ok, hud.random_weights, hud.model, hud.backend, hud.precision)
        now = time.monotonic()
        cached = self._hud_layer
        if cached is None or cached.key != key or now - cached.rendered_at >= HUD_REFRESH_S:
            cached = self._hud_layer = HudLayer(key, now, *self._render_hud(h, w, hud))
        (x0, y0, x1, y1), layer, mask = cached.panel, cached.layer, cached.mask
        roi = image[y0:y1, x0:x1]
        # darken behind the text (cheap: only the panel's pixels) so it reads on any scene
        cv2.convertScaleAbs(roi, dst=roi, alpha=0.35)
        lh, lw = layer.shape[:2]
        cv2.copyTo(layer, mask, image[:lh, :lw])

    def _render_hud(self, h: int, w: int, hud: HudInfo):
        """(panel rect, layer, mask): the HUD drawn on a canvas the size of its top-left region."""
        lines = self._hud_lines(hud)
        widths = [cv2.getTextSize(t, FONT, self.scale, self.thickness)[0][0] for t in lines]
        x0, y0 = self.pad, self.pad
        x1, y1 = min(w, x0 + max(widths) + 2 * self.pad), min(h, y0 + self.line_h * len(lines) + self.pad)
        sentinel = np.array((1, 2, 3), np.uint8)  # a colour the HUD never draws: what still has it is not HUD
        canvas = np.empty((min(h, y1 + 3 * (self.line_h + 2 * self.pad)), w, 3), np.uint8)  # + badge + warning
        canvas[:] = sentinel
        for i, text in enumerate(lines):
            baseline_y = y0 + (i + 1) * self.line_h - self.pad // 2
            cv2.putText(canvas, text, (x0 + self.pad, baseline_y), FONT, self.scale, WHITE, self.thickness, LINE_TYPE)
        y = self._draw_badge(canvas, hud, x0, y1 + self.pad)
        self.last_warning_rect = None
        if hud.random_weights:
            self._draw_random_weights(canvas, x0, y)
        mask = (canvas != sentinel).any(axis=2)
        rows, cols = np.nonzero(mask.any(axis=1))[0], np.nonzero(mask.any(axis=0))[0]
        lh, lw = (rows[-1] + 1, cols[-1] + 1) if len(rows) else (0, 0)
        return (x0, y0, x1, y1), canvas[:lh, :lw].copy(), mask[:lh, :lw].astype(np.uint8)

    def _draw_badge(self, image: np.ndarray, hud: HudInfo, x: int, y: int) -> int:
        if hud.realtime_ok is None:
            text, color = "REAL-TIME: measuring", GREY
        else:
            text = "REAL-TIME" if hud.realtime_ok else "NOT REAL-TIME"
            color = GREEN if hud.realtime_ok else RED
            if hud.p95_ms is not None and hud.budget_ms is not None:
                text += "  p95 %.1f / %.1f ms" % (hud.p95_ms, hud.budget_ms)
        (tw, th), base = cv2.getTextSize(text, FONT, self.scale, self.thickness)
        x1, y1 = x + tw + 2 * self.pad, y + th + base + self.pad
        cv2.rectangle(image, (x, y), (x1, y1), color, -1)
        cv2.putText(image, text, (x + self.pad, y + th + self.pad // 2), FONT, self.scale, WHITE, self.thickness,
                    LINE_TYPE)
        self.last_badge_rect = (x, y, x1, y1)
        return y1 + self.pad

    def _draw_random_weights(self, image: np.ndarray, x: int, y: int) -> None:
        """Red on a black plate, so it reads on any scene (a red one included)."""
        text = "RANDOM WEIGHTS (timing only)"
        (tw, th), base = cv2.getTextSize(text, FONT, self.scale, self.thickness)
        x1, y1 = x + tw + 2 * self.pad, y + th + base + self.pad
        cv2.rectangle(image, (x, y), (x1, y1), BLACK, -1)
        cv2.putText(image, text, (x + self.pad, y + th + self.pad // 2), FONT, self.scale, RED, self.thickness, LINE_TYPE)
        self.last_warning_rect = (x, y, x1, y1)
