"""The overlay draws detections, top-k and the HUD; the badge colour and RANDOM WEIGHTS are checked on pixels."""

import numpy as np
import pytest

from jetcam_app.config import OverlayConfig
from jetcam_app.output.overlay import GREEN, GREY, RED, HudInfo, Overlay, class_color
from jetcam_app.types import Classification, Detections

NAMES = ["__background__", "person", "bicycle", "car"]


def hud(**kw):
    base = dict(fps=29.5, stage_ms={"pre": 1.5, "infer": 20.25, "post": 2.0, "draw": 0.4}, rss_mb=812.0,
                ram_used_mb=3000.0, ram_total_mb=7800.0, gpu_mb=None, model="ssd300_vgg16", backend="cpu",
                precision="fp32", realtime_ok=True, budget_ms=33.3, p95_ms=21.0, random_weights=False, dropped=0)
    base.update(kw)
    return HudInfo(**base)


def detections():
    return Detections(np.array([[40, 60, 200, 220], [300, 100, 620, 470], [-20, -20, 700, 500]], np.float32),
                      np.array([0.91, 0.55, 0.3], np.float32), np.array([1, 3, 99], np.int64), NAMES)


def test_class_colors_are_stable_and_distinct():
    assert class_color(3) == class_color(3)
    assert len({class_color(i) for i in range(20)}) == 20


@pytest.mark.parametrize("size", [(240, 320), (480, 640), (1080, 1920)])
def test_detections_draw_in_place(size):
    image = np.full(size + (3,), 127, np.uint8)
    out = Overlay(OverlayConfig(enabled=True, hud=False)).annotate(image, detections(), None)
    assert out is image
    # the person box outline carries its class colour
    assert tuple(image[140, 40]) == class_color(1)
    assert tuple(image[150, 300]) == class_color(3)  # the car box's left edge, also on the smallest frame


def test_empty_detections_and_no_result_leave_the_image():
    image = np.full((240, 320, 3), 127, np.uint8)
    overlay = Overlay(OverlayConfig(enabled=True, hud=False))
    overlay.annotate(image, Detections.empty(NAMES), None)
    overlay.annotate(image, None, None)
    assert (image == 127).all()


def test_classification_top5_drawn():
    image = np.full((480, 640, 3), 127, np.uint8)
    cls = Classification(np.array([967, 504, 3, 4, 5]), np.array([0.8, 0.1, 0.05, 0.03, 0.02], np.float32),
                         ["n%d" % i for i in range(1000)])
    Overlay(OverlayConfig(enabled=True, hud=False)).annotate(image, cls, None)
    changed_rows = np.where((image != 127).any(axis=(1, 2)))[0]
    assert changed_rows.size and changed_rows.min() > 480 // 2  # bottom-left, clear of the HUD
    assert (image[changed_rows.min():, :20] == np.array(class_color(967), np.uint8)).all(axis=-1).any()


def test_disabled_overlay_draws_nothing():
    image = np.full((240, 320, 3), 127, np.uint8)
    Overlay(OverlayConfig(enabled=False, hud=False)).annotate(image, detections(), hud())
    assert (image == 127).all()


def badge_color(realtime_ok):
    image = np.zeros((480, 640, 3), np.uint8)
    overlay = Overlay(OverlayConfig())
    overlay.annotate(image, detections(), hud(realtime_ok=realtime_ok))
    x0, y0, x1, y1 = overlay.last_badge_rect
    patch = image[y0 + 1:y1 - 1, x0 + 1:x1 - 1].reshape(-1, 3)
    colors, counts = np.unique(patch, axis=0, return_counts=True)
    return tuple(int(v) for v in colors[counts.argmax()])  # the fill, not the text


def test_badge_green_when_realtime_red_when_not():
    assert badge_color(True) == GREEN
    assert badge_color(False) == RED
    assert badge_color(None) == GREY


def test_random_weights_drawn_in_red():
    image = np.zeros((480, 640, 3), np.uint8)
    overlay = Overlay(OverlayConfig(enabled=False, hud=True))
    overlay.annotate(image.copy(), None, hud(random_weights=False))
    assert overlay.last_warning_rect is None
    overlay.annotate(image, None, hud(random_weights=True))
    x0, y0, x1, y1 = overlay.last_warning_rect
    bx0, by0, bx1, by1 = overlay.last_badge_rect
    assert y0 >= by1 - 1  # below the badge, inside the HUD
    hx0, hy0, hx1, hy1 = overlay.last_hud_rect
    assert hx0 <= x0 and y1 <= hy1
    text = image[y0:y1, x0:x1][(image[y0:y1, x0:x1] != 0).any(axis=-1)]
    assert len(text) > 50 and (text == np.array(RED, np.uint8)).all()  # every drawn pixel is pure red


def test_hud_lines_include_the_numbers():
    overlay = Overlay(OverlayConfig())
    lines = overlay._hud_lines(hud(gpu_mb=400.0, dropped=3))
    assert lines[0] == "pre 1.5 infer 20.2 post 2.0 draw 0.4 ms"
    assert lines[1] == "RSS 812 MB GPU 400 MB RAM 2.9/7.6 GB dropped 3"
    assert lines[2] == "ssd300_vgg16 cpu fp32"
    assert "GPU" not in overlay._hud_lines(hud(gpu_mb=None))[1]
    assert overlay._badge(hud())[0] == "29.5 fps  REAL-TIME  p95 21/33 ms"


def test_hud_fits_a_tiny_frame():
    image = np.zeros((120, 160, 3), np.uint8)
    Overlay(OverlayConfig()).annotate(image, detections(), hud(random_weights=True))


def test_a_label_wider_than_the_frame_is_cut_at_its_edge():
    overlay = Overlay(OverlayConfig(enabled=True, hud=False))
    image = np.full((120, 40, 3), 127, np.uint8)
    overlay.annotate(image, Detections(np.array([[5, 50, 30, 90]], np.float32), np.array([0.9], np.float32),
                                       np.array([1], np.int64), NAMES), None)
    plate = np.all(image == class_color(1), axis=2)  # the outline's columns are 5-6 and 29-30
    assert plate[:, 0].any() and plate[:, -1].any()  # pasted from the left edge, cut at the right one


def test_labels_are_plates_kept_inside_the_frame():
    """A label is its class colour's plate with text on it, pasted whole inside the frame even at the edges."""
    overlay = Overlay(OverlayConfig(enabled=True, hud=False))
    image = np.full((240, 320, 3), 127, np.uint8)
    overlay.annotate(image, Detections(np.array([[300, 230, 319, 239]], np.float32), np.array([0.9], np.float32),
                                       np.array([1], np.int64), NAMES), None)
    plate = np.all(image == class_color(1), axis=2)
    rows, cols = np.nonzero(plate)
    assert cols.max() == 319 and rows.max() == 239  # pushed left and up to fit, not cut off
    width = cols.max() - cols.min() + 1
    assert width > 60  # "person 0.90" on it, not only the 20 px box outline
    inside = image[rows.min():rows.max() + 1, cols.min():cols.max() + 1]
    text = ~np.all(inside == class_color(1), axis=2) & ~np.all(inside == 127, axis=2)
    assert text.sum() > 30  # the glyphs, in the text colour on the plate
