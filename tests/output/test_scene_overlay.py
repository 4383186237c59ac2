"""The scene overlay (lines with their in direction and counts, translucent zones, trails), checked on pixels at
320x240, 720p and 4K; the HUD never covers a count; without a scene the overlay draws what it drew before.
JETCAM_SCENE_SHOTS=DIR saves the screenshots drawn on the sample video (docs/screenshots come from it)."""

import dataclasses
import json
import os

import cv2
import numpy as np
import pytest

from jetcam_app.analytics.scene import LineView, SceneSnapshot, SourceAnalytics, TrailView, ZoneView
from jetcam_app.config import OverlayConfig, TrackerConfig
from jetcam_app.output.overlay import HudInfo, Overlay, class_color
from jetcam_app.output.scene_overlay import LINE_COLORS, PLATE_BG, WARNING_COLOR, ZONE_ALPHA, ZONE_COLOR, draw_scene
from jetcam_app.regions import LineSpec, ZoneSpec
from jetcam_app.types import Detections

from conftest import ROOT

BIKES = os.path.join(ROOT, "media", "bikes.mp4")
PREDICTIONS = os.path.join(ROOT, "tests", "data", "bikes_nanodet_predictions.jsonl")
SIZES_WH = ((320, 240), (1280, 720), (3840, 2160))
NAMES = ["person", "bicycle", "car"]


def px(w, h, *fractions):
    """Fractions of the frame as int32 pixel points."""
    return np.rint(np.array(fractions, np.float64).reshape(-1, 2) * (w, h)).astype(np.int32)


def snapshot(w, h):
    """Two lines (one top to bottom, one left to right, crossing), a zone, a small zone with a loiterer in the
    top-left corner (where the HUD goes first) and three trails, one of them straight across at 30% height."""
    return SceneSnapshot(
        lines=(LineView("door", (0.5 * w, 0.1 * h), (0.5 * w, 0.9 * h), 3, 1),
               LineView("street", (0.05 * w, 0.75 * h), (0.6 * w, 0.75 * h), 12, 7)),
        zones=(ZoneView("bay", px(w, h, (0.62, 0.35), (0.95, 0.4), (0.9, 0.85), (0.66, 0.8)), 2, 0),
               ZoneView("gate", px(w, h, (0.03, 0.03), (0.3, 0.03), (0.3, 0.2), (0.03, 0.2)), 1, 1)),
        trails=(TrailView(4, 0, px(w, h, (0.1, 0.3), (0.2, 0.3), (0.35, 0.3), (0.45, 0.3))),
                TrailView(9, 1, px(w, h, (0.7, 0.9), (0.75, 0.7), (0.8, 0.55))),
                TrailView(11, 2, px(w, h, (0.6, 0.1)))))  # one point: nothing to draw yet


def hud(**kw):
    base = dict(fps=24.7, stage_ms={"pre": 1.5, "infer": 20.25, "post": 2.0, "draw": 0.4}, rss_mb=812.0,
                ram_used_mb=3000.0, ram_total_mb=7800.0, gpu_mb=300.0, model="nanodet", backend="cpu",
                precision="fp32", realtime_ok=True, budget_ms=40.0, p95_ms=30.0, dropped=0)
    base.update(kw)
    return HudInfo(**base)


def overlaps(a, b):
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def inside_any(x, y, rects):
    return any(r[0] <= x < r[2] and r[1] <= y < r[3] for r in rects)


@pytest.mark.parametrize("size_wh", SIZES_WH)
def test_lines_zones_and_trails_are_drawn(size_wh):
    w, h = size_wh
    image = np.full((h, w, 3), 127, np.uint8)
    overlay = Overlay(OverlayConfig(enabled=True, hud=False))
    overlay.annotate(image, None, None, scene=snapshot(w, h))
    plates = overlay.last_scene_rects
    assert len(plates) == 4  # two lines' counts, two zones' names
    for x0, y0, x1, y1 in plates:
        assert 0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h
    for i, a in enumerate(plates):
        assert not any(overlaps(a, b) for b in plates[i + 1:]), plates
    # the door line, between its end and the street trail, in its colour
    x = int(round(0.5 * w))
    assert tuple(image[int(0.2 * h), x]) == LINE_COLORS[0]
    assert tuple(image[int(0.75 * h), int(0.15 * w)]) == LINE_COLORS[1]
    # the bay zone: tinted inside, unchanged in its bounding rectangle outside the polygon
    tint = tuple(int(round(127 * (1 - ZONE_ALPHA) + c * ZONE_ALPHA)) for c in ZONE_COLOR)
    inside = (int(0.78 * w), int(0.6 * h))
    assert not inside_any(inside[0], inside[1], plates)
    assert np.abs(image[inside[1], inside[0]].astype(int) - tint).max() <= 1, (image[inside[1], inside[0]], tint)
    assert tuple(image[int(0.84 * h), int(0.63 * w)]) == (127, 127, 127)  # left of the bay's slanted bottom-left edge
    assert tuple(image[h - 2, w - 2]) == (127, 127, 127)
    # the gate zone has a loiterer: its outline and plate in the warning colour
    assert tuple(image[int(0.12 * h), int(round(0.3 * w))]) == WARNING_COLOR
    gate = [r for r in plates if r[0] < 0.3 * w and r[1] < 0.3 * h]
    x0, y0, x1, y1 = gate[0]
    assert (image[y0, x0:x1] == WARNING_COLOR).all() and (image[y0:y1, x0] == WARNING_COLOR).all()  # its rim
    assert tuple(image[(y0 + y1) // 2, x0 + 4]) == PLATE_BG  # dark inside: white text reads on it
    # the trail of track 4 in its colour; the one-point trail of track 11 draws nothing
    assert tuple(image[int(round(0.3 * h)), int(0.27 * w)]) == class_color(4)
    assert not (image == np.array(class_color(11), np.uint8)).all(axis=2).any()


@pytest.mark.parametrize("size_wh", SIZES_WH)
def test_the_arrow_points_in_and_the_counts_sit_on_the_out_side(size_wh):
    w, h = size_wh
    image = np.full((h, w, 3), 127, np.uint8)
    # drawn left to right: `in` is bottom to top
    scene = SceneSnapshot((LineView("road", (0.2 * w, 0.5 * h), (0.8 * w, 0.5 * h), 5, 2),), (), ())
    overlay = Overlay()
    overlay._metrics(h, w)
    rects = draw_scene(image, scene, overlay.scene_style)
    mid_x, mid_y = w // 2, h // 2
    arrow = max(10.0, 0.06 * min(h, w))
    assert tuple(image[int(round(mid_y - 0.6 * arrow)), mid_x]) == LINE_COLORS[0]  # the arrow's shaft, upwards
    (x0, y0, x1, y1), = rects
    assert y0 > mid_y and x0 < mid_x < x1  # the plate below the middle, opposite the arrow


@pytest.mark.parametrize("size_wh", SIZES_WH)
def test_the_hud_never_covers_a_count(size_wh):
    w, h = size_wh
    overlay = Overlay(OverlayConfig())
    scene = snapshot(w, h)
    for corner_plate in ((0.03, 0.03), (0.7, 0.03), (0.03, 0.9), (0.7, 0.9)):  # a plate in one corner after another
        extra = LineView("far", (corner_plate[0] * w, corner_plate[1] * h), (corner_plate[0] * w + 20, corner_plate[1] * h), 0, 0)
        image = np.full((h, w, 3), 90, np.uint8)
        overlay.annotate(image, None, hud(), scene=scene._replace(lines=scene.lines + (extra,)))
        hud_rect = overlay.last_hud_rect
        assert hud_rect is not None
        for plate in overlay.last_scene_rects:
            assert not overlaps(plate, hud_rect), (plate, hud_rect)
    # the gate zone's plate takes the top-left corner: the HUD goes elsewhere
    image = np.full((h, w, 3), 90, np.uint8)
    overlay.annotate(image, None, hud(), scene=scene)
    assert overlay.last_hud_rect[:2] != (overlay.pad, overlay.pad)


def detections(w, h, track_ids=None):
    boxes = np.array([[0.1, 0.4, 0.3, 0.9], [0.55, 0.3, 0.8, 0.7]], np.float32) * np.array([w, h, w, h], np.float32)
    return Detections(boxes, np.array([0.87, 0.6], np.float32), np.array([0, 2], np.int64), NAMES,
                      track_ids=None if track_ids is None else np.array(track_ids, np.int64))


@pytest.mark.parametrize("size_wh", SIZES_WH)
def test_without_a_scene_or_ids_the_picture_is_as_before(size_wh):
    w, h = size_wh
    base = np.random.RandomState(1).randint(0, 255, (h, w, 3)).astype(np.uint8)
    plain, empty, unknown = base.copy(), base.copy(), base.copy()
    Overlay(OverlayConfig()).annotate(plain, detections(w, h), hud())
    Overlay(OverlayConfig()).annotate(empty, detections(w, h), hud(), scene=SceneSnapshot((), (), ()))
    Overlay(OverlayConfig()).annotate(unknown, detections(w, h, [-1, -1]), hud(), scene=None)
    assert (plain == empty).all() and (plain == unknown).all()
    overlay = Overlay(OverlayConfig(hud=False))
    tracked = base.copy()
    overlay.annotate(tracked, detections(w, h, [12, -1]), None)
    with_id, without = overlay.last_label_rects
    overlay.annotate(base.copy(), detections(w, h), None)
    before = overlay.last_label_rects
    assert with_id[2] - with_id[0] > before[0][2] - before[0][0]  # "#12 person 0.87" is wider
    assert without == before[1]  # on probation: labelled as without tracking


def test_disabled_overlay_draws_no_scene():
    image = np.full((240, 320, 3), 127, np.uint8)
    Overlay(OverlayConfig(enabled=False, hud=False)).annotate(image, None, None, scene=snapshot(320, 240))
    assert (image == 127).all()


def test_screenshots_of_a_tracked_run_on_the_sample_video(tmp_path):
    """SourceAnalytics on NanoDet's detections of the sample video's first 160 frames (a real run's, kept in
    tests/data), each size tracked at its own scale, the last frame drawn: real trails, IDs and a loitering zone."""
    if not os.path.exists(BIKES):
        pytest.skip("media/bikes.mp4 is absent; scripts/setup.sh fetches it")
    with open(PREDICTIONS) as f:
        records = [json.loads(line) for line in f][:160]
    names = {}
    for record in records:
        names.update(zip(record["labels"], record["names"]))
    class_names = [names.get(i, "") for i in range(max(names) + 1)]
    cap = cv2.VideoCapture(BIKES)
    frame = None
    for _ in records:
        ok, frame = cap.read()
        assert ok
    out_dir = os.environ.get("JETCAM_SCENE_SHOTS") or str(tmp_path)
    os.makedirs(out_dir, exist_ok=True)
    tracker = dataclasses.replace(TrackerConfig(), enabled=True)
    lines = [LineSpec("door", ((0.55, 0.05), (0.55, 0.95))), LineSpec("kerb", ((0.05, 0.8), (0.5, 0.8)))]
    zones = [ZoneSpec("bay", ((0.62, 0.3), (0.97, 0.3), (0.97, 0.97), (0.62, 0.97)), loiter_s=2.0)]
    for w, h in SIZES_WH:
        analytics = SourceAnalytics("bikes", tracker, lines, zones, 25.0, 0.35)
        scale = np.array([w, h, w, h], np.float32) / np.array([frame.shape[1], frame.shape[0]] * 2, np.float32)
        for record in records:
            det = Detections(np.array(record["boxes"], np.float32).reshape(-1, 4) * scale,
                             np.array(record["scores"], np.float32), np.array(record["labels"], np.int64), class_names)
            shown, scene = analytics.process(record["frame"], record["frame"] / 25.0, (w, h), det)
        image = cv2.resize(frame, (w, h), interpolation=cv2.INTER_AREA)
        overlay = Overlay(OverlayConfig())
        overlay.annotate(image, shown, hud(), scene=scene)
        assert scene.trails and (shown.track_ids >= 0).any()
        assert len(overlay.last_scene_rects) == 3
        for x0, y0, x1, y1 in overlay.last_scene_rects:
            assert 0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h
            assert not overlaps((x0, y0, x1, y1), overlay.last_hud_rect)
        assert cv2.imwrite(os.path.join(out_dir, "scene_%dx%d.png" % (w, h)), image)
