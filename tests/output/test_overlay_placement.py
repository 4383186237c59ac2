"""The HUD never covers a label: checked geometrically on every frame of the sample video with NanoDet's boxes."""

import json
import os

import cv2
import numpy as np
import pytest

from jetcam_app.config import OverlayConfig
from jetcam_app.output.overlay import HudInfo, Overlay, rate_text
from jetcam_app.types import Detections

from conftest import ROOT

BIKES = os.path.join(ROOT, "media", "bikes.mp4")
PREDICTIONS = os.path.join(ROOT, "tests", "data", "bikes_nanodet_predictions.jsonl")


def hud(**kw):
    base = dict(fps=24.7, stage_ms={"pre": 1.5, "infer": 20.25, "post": 2.0, "draw": 0.4}, rss_mb=812.0,
                ram_used_mb=3000.0, ram_total_mb=7800.0, gpu_mb=300.0, model="nanodet", backend="cpu",
                precision="fp32", realtime_ok=False, budget_ms=40.0, p95_ms=52.0, dropped=2)
    base.update(kw)
    return HudInfo(**base)


def overlaps(a, b):
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def check_frame(overlay, image, det):
    overlay.annotate(image, det, hud())
    rect = overlay.last_hud_rect
    h, w = image.shape[:2]
    assert rect is not None and 0 <= rect[0] < rect[2] <= w and 0 <= rect[1] < rect[3] <= h
    for label in overlay.last_label_rects:
        assert not overlaps(label, rect), (label, rect)
    return rect


@pytest.fixture(scope="module")
def bikes_predictions():
    """NanoDet's detections on every frame of media/bikes.mp4, from a real run of the app (NanoDet on the 2-core CPU
    takes minutes, so they are kept: `run.py --source media/bikes.mp4 --out DIR` writes DIR/predictions.jsonl)."""
    if not os.path.exists(BIKES):
        pytest.skip("media/bikes.mp4 is absent; scripts/setup.sh fetches it")
    with open(PREDICTIONS) as f:
        return [json.loads(line) for line in f]


def test_no_label_under_the_hud_on_any_frame_of_a_real_video(bikes_predictions):
    cap = cv2.VideoCapture(BIKES)
    overlay = Overlay(OverlayConfig())
    corners = set()
    labelled = 0
    for record in bikes_predictions:
        ok, image = cap.read()
        assert ok
        assert record["source"].endswith("bikes.mp4")
        names = {label: name for label, name in zip(record["labels"], record["names"])}
        det = Detections(np.array(record["boxes"], np.float32).reshape(-1, 4),
                         np.array(record["scores"], np.float32), np.array(record["labels"], np.int64),
                         [names.get(i, "") for i in range(max(names, default=0) + 1)])
        rect = check_frame(overlay, image, det)
        corners.add((rect[0] == overlay.pad, rect[1] == overlay.pad))
        labelled += len(overlay.last_label_rects)
    cap.release()
    assert len(bikes_predictions) == 250 and labelled > 250  # the video has detections to avoid


@pytest.mark.parametrize("size_hw", [(240, 320), (272, 640), (720, 1280), (2160, 3840)])
def test_hud_is_compact_and_avoids_crowded_corners(size_hw):
    """Boxes in three corners: the HUD goes to the fourth; boxes everywhere: the labels move out of its way."""
    h, w = size_hw
    overlay = Overlay(OverlayConfig())
    image = np.full((h, w, 3), 90, np.uint8)
    boxes = np.array([[0, 0, w * 0.4, h * 0.4], [w * 0.6, 0, w, h * 0.4], [0, h * 0.6, w * 0.4, h]], np.float32)
    det = Detections(boxes, np.array([0.9, 0.8, 0.7], np.float32), np.array([1, 2, 3], np.int64),
                     ["bg", "person", "bicycle", "car"])
    rect = check_frame(overlay, image, det)
    assert rect[0] > w // 2 and rect[1] > h // 2  # bottom-right, the only corner free
    assert (rect[2] - rect[0]) <= 0.6 * w and (rect[3] - rect[1]) <= 0.3 * h
    rng = np.random.default_rng(0)
    corner = rng.uniform(0, 1, (60, 2)) * (w * 0.9, h * 0.9)
    crowd = np.concatenate([corner, corner + rng.uniform(0.05, 0.2, (60, 2)) * (w, h)], 1).astype(np.float32)
    check_frame(overlay, image.copy(), Detections(crowd, np.linspace(0.99, 0.4, 60).astype(np.float32),
                                                  rng.integers(1, 4, 60), ["bg", "person", "bicycle", "car"]))


def test_rates_below_one_fps_and_still_images():
    assert rate_text(24.66) == "24.7 fps"
    assert rate_text(0.4) == "2.5 s/frame"
    assert rate_text(0.0) == "- fps"
    overlay = Overlay(OverlayConfig())
    assert overlay._badge(hud(fps=0.4))[0].startswith("2.5 s/frame  NOT REAL-TIME")
    text, _ = overlay._badge(hud(still_images=True, stage_ms={"pre": 10.0, "infer": 400.0, "post": 2.0}))
    assert text == "412 ms/image" and "REAL-TIME" not in text


def test_hud_keeps_its_corner_until_it_is_rendered_again(monkeypatch):
    """The corner is chosen when the HUD is rendered (10 times a second), so it does not hop between corners from
    frame to frame; a label that comes under it in between moves out of its way."""
    import jetcam_app.output.overlay as overlay_module

    clock = [100.0]
    monkeypatch.setattr(overlay_module.time, "monotonic", lambda: clock[0])
    h, w = 720, 1280
    overlay = Overlay(OverlayConfig())
    names = ["bg", "person", "bicycle", "car"]
    three = np.array([[0, 0, w * 0.4, h * 0.4], [w * 0.6, 0, w, h * 0.4], [0, h * 0.6, w * 0.4, h]], np.float32)
    det = Detections(three, np.array([0.9, 0.8, 0.7], np.float32), np.array([1, 2, 3], np.int64), names)
    first = check_frame(overlay, np.full((h, w, 3), 90, np.uint8), det)
    assert first[0] > w // 2 and first[1] > h // 2  # bottom-right, the only free corner
    # one box, in the bottom-right corner: top-left is free now, but the HUD stays until it is rendered again
    corner = np.array([[w * 0.7, h * 0.7, w, h]], np.float32)
    moved = Detections(corner, np.array([0.9], np.float32), np.array([1], np.int64), names)
    clock[0] += overlay_module.HUD_REFRESH_S / 2
    assert check_frame(overlay, np.full((h, w, 3), 90, np.uint8), moved) == first  # its label moved instead
    clock[0] += overlay_module.HUD_REFRESH_S
    again = check_frame(overlay, np.full((h, w, 3), 90, np.uint8), moved)
    assert again[:2] == (overlay.pad, overlay.pad)  # rendered again: the first free corner, top-left
