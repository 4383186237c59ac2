"""Lines and zones on scripted tracks, where the true counts are exact: direction, U-turns, flicker, classes, once,
dwell by timestamps, loitering, and the tracker's IDs through an occlusion and a reconnect."""

import dataclasses

import numpy as np
import pytest

from jetcam_app.analytics.scene import SourceAnalytics
from jetcam_app.config import TrackerConfig
from jetcam_app.regions import LineSpec, ZoneSpec
from jetcam_app.types import Detections

NAMES = ["person", "car"]
TRACKER = dataclasses.replace(TrackerConfig(), enabled=True)


def box_at(x, y, w=40, h=80):
    """A box whose bottom centre is (x, y)."""
    return [x - w / 2, y - h, x + w / 2, y]


def frames_of(paths, scores=None, labels=None):
    """Per frame Detections from paths: {object: [(x, y) or None per frame]}."""
    n = max(len(p) for p in paths.values())
    out = []
    for f in range(n):
        boxes, s, lab = [], [], []
        for k, path in paths.items():
            if f < len(path) and path[f] is not None:
                boxes.append(box_at(*path[f]))
                s.append(0.9 if scores is None else scores[k][f])
                lab.append(0 if labels is None else labels[k])
        out.append(Detections(np.array(boxes, np.float32).reshape(-1, 4), np.array(s, np.float32),
                              np.array(lab, np.int64), NAMES))
    return out


def run(frames, lines=(), zones=(), fps=30.0, reconnect_at=None, tracker=TRACKER, threshold=0.35):
    events = []
    scene = SourceAnalytics("cam", tracker, lines, zones, fps, threshold, events.append)
    shown = []
    reconnects = 0
    for i, det in enumerate(frames):
        if reconnect_at is not None and i == reconnect_at:
            reconnects += 1
        shown.append(scene.process(i, i / fps, (640, 480), det, reconnects)[0])
    scene.close()
    return scene, events, shown


VERTICAL = LineSpec("door", ((320, 0), (320, 480)))  # drawn top to bottom: left-to-right is "in"


def walk(x0, x1, n, y=300):
    return [(x0 + (x1 - x0) * i / (n - 1), y) for i in range(n)]


def test_direction_follows_the_quarter_turn_rule():
    scene, events, _ = run(frames_of({"a": walk(100, 540, 30), "b": [None] * 35 + walk(540, 100, 30)}), [VERTICAL])
    door = scene.summary()["lines"]["door"]
    assert door == {"in": {"person": 1}, "out": {"person": 1}, "in_total": 1, "out_total": 1}
    crossings = [e for e in events if e["event"] == "line_crossed"]
    assert [e["direction"] for e in crossings] == ["in", "out"]
    # drawn left to right: bottom-to-top is "in"
    horizontal = LineSpec("h", ((0, 240), (640, 240)))
    scene, _, _ = run(frames_of({"a": [(300, 400 - 10 * i) for i in range(30)]}), [horizontal])
    assert scene.summary()["lines"]["h"]["in_total"] == 1 and scene.summary()["lines"]["h"]["out_total"] == 0


def test_u_turn_counts_each_held_crossing_and_once_counts_each_direction_once():
    path = walk(200, 360, 17) + walk(360, 200, 17) + walk(200, 360, 17)  # in, back out, in again
    scene, _, _ = run(frames_of({"a": path}), [VERTICAL, dataclasses.replace(VERTICAL, name="once", count="once")])
    lines = scene.summary()["lines"]
    assert (lines["door"]["in_total"], lines["door"]["out_total"]) == (2, 1)
    assert (lines["once"]["in_total"], lines["once"]["out_total"]) == (1, 1)


def test_flicker_on_the_line_counts_nothing():
    xs = [300, 310, 318, 323, 317, 324, 316, 322, 319, 310, 300] * 3  # over by a few pixels for one frame at a time
    scene, events, _ = run(frames_of({"a": [(x, 300) for x in xs]}), [VERTICAL])
    assert scene.summary()["lines"]["door"]["in_total"] == 0
    assert not [e for e in events if e["event"] == "line_crossed"]


def test_passing_beside_the_segment_is_no_crossing():
    short = LineSpec("short", ((320, 0), (320, 200)))  # the upper part only; the walker passes below it
    scene, _, _ = run(frames_of({"a": walk(100, 540, 30, y=400)}), [short])
    assert scene.summary()["lines"]["short"]["in_total"] == 0


def test_classes_filter_and_separate_counts_for_overlapping_objects_of_two_classes():
    paths = {"p": walk(100, 540, 30), "c": walk(100, 540, 30, y=302)}  # almost the same box, two classes
    frames = frames_of(paths, labels={"p": 0, "c": 1})
    scene, _, shown = run(frames, [VERTICAL, dataclasses.replace(VERTICAL, name="cars", classes=("car",))])
    lines = scene.summary()["lines"]
    assert lines["door"]["in"] == {"car": 1, "person": 1}
    assert lines["cars"]["in"] == {"car": 1}
    ids = {tuple(sorted(d.track_ids.tolist())) for d in shown[5:]}
    assert len(ids) == 1 and len(set(next(iter(ids)))) == 2  # two tracks, neither takes the other's box


def test_unconfirmed_tracks_have_no_id_and_false_positives_never_count():
    rng = np.random.default_rng(0)
    frames = []
    for f in range(60):  # one-frame false positives on the line
        x = rng.uniform(300, 340)
        frames.append(Detections(np.array([box_at(x, 300)], np.float32), np.array([0.9], np.float32),
                                 np.array([0]), NAMES) if f % 3 == 0 else Detections.empty(NAMES))
    scene, events, shown = run(frames, [VERTICAL])
    assert all((d.track_ids == -1).all() for d in shown)
    assert scene.summary()["tracks"]["confirmed"] == 0 and not events
    assert shown[0].track_ids.tolist() == [-1]


def test_occlusion_keeps_both_ids_through_crossing_paths():
    a = walk(100, 540, 40)
    b = walk(540, 100, 40, y=310)
    hidden_b = [None if 17 <= i <= 23 else p for i, p in enumerate(b)]  # b behind a for 7 frames
    scene, events, shown = run(frames_of({"a": a, "b": hidden_b}), [VERTICAL])
    started = [e for e in events if e["event"] == "track_started"]
    assert len(started) == 2  # no new ID after the occlusion
    door = scene.summary()["lines"]["door"]
    assert (door["in_total"], door["out_total"]) == (1, 1)
    first, last = shown[2].track_ids.tolist(), shown[-1].track_ids.tolist()
    assert sorted(first) == sorted(last) and first[0] == last[0]  # a keeps its ID (a is listed first)


def test_low_scores_continue_a_track_but_are_not_shown():
    path = walk(100, 540, 30)
    scores = {"a": [0.9] * 10 + [0.15] * 5 + [0.9] * 15}  # in ByteTrack's low band for 5 frames
    scene, events, shown = run(frames_of({"a": path}, scores), [VERTICAL])
    assert len([e for e in events if e["event"] == "track_started"]) == 1
    assert all(len(d) == 0 for d in shown[10:15])  # below --score-threshold: not drawn, not logged
    assert scene.summary()["lines"]["door"]["in_total"] == 1


def test_zone_dwell_by_timestamps_and_loitering_once():
    zone = ZoneSpec("bay", ((200, 200), (440, 200), (440, 400), (200, 400)), loiter_s=1.0)
    path = walk(100, 320, 40) + [(320, 300)] * 60 + walk(320, 600, 40)
    inside = [200 < x < 440 for x, _ in path]
    true_dwell = (inside.index(False, inside.index(True)) - inside.index(True)) / 30.0
    for fps in (30.0, 15.0):  # a replay at another rate (every other frame) gives the same dwell
        frames = frames_of({"a": path[::int(30 / fps)]})
        scene, events, _ = run(frames, zones=[zone], fps=fps)
        kinds = [e["event"] for e in events if "zone" in e]
        assert kinds == ["zone_entered", "loitering", "zone_left"]
        left = [e for e in events if e["event"] == "zone_left"][0]
        bay = scene.summary()["zones"]["bay"]
        assert bay["entries"] == {"person": 1} and bay["max_occupancy"] == {"person": 1}
        assert bay["occupancy"] == {} and bay["loitering"] == 1
        assert left["dwell_s"] == pytest.approx(true_dwell, abs=1.01 / fps)
        assert left["frame"] < len(frames) - 1  # it left by walking out, not when its track ended


def test_reconnect_ends_tracks_and_ids_and_counts_go_on():
    frames = frames_of({"a": walk(100, 540, 30)})
    frames2 = frames_of({"a": walk(540, 100, 30)})
    scene, events, shown = run(frames + frames2, [VERTICAL], reconnect_at=30)
    ended = [e for e in events if e["event"] == "track_ended"]
    started = [e for e in events if e["event"] == "track_started"]
    assert [e["track_id"] for e in started] == [1, 2]  # never reused
    assert len(ended) == 2 and ended[0]["frame"] == 29
    door = scene.summary()["lines"]["door"]
    assert (door["in_total"], door["out_total"]) == (1, 1)


def test_lost_track_ends_after_its_buffer_scaled_to_fps():
    frames = frames_of({"a": walk(100, 200, 10)}) + [Detections.empty(NAMES)] * 40
    _, events, _ = run(frames, fps=10.0)  # 30 frames at 30 fps = 10 frames at 10 fps
    ended = [e for e in events if e["event"] == "track_ended"][0]
    assert ended["frame"] == 9
    assert ended["t_s"] == pytest.approx(0.9)


def test_predictions_line_carries_track_ids_and_stays_byte_identical_without():
    from jetcam_app.output.logs import PredictionLog

    det = Detections(np.array([[1, 2, 3, 4], [5, 6, 7, 8]], np.float32), np.array([0.5, 0.25], np.float32),
                     np.array([0, 1]), NAMES)
    line = det.json_line(3)
    assert "track_ids" not in line
    tracked = dataclasses.replace(det, track_ids=np.array([7, -1]))
    assert tracked.json_line(3) == line
    import json
    import tempfile
    import os
    with tempfile.TemporaryDirectory() as d:
        log = PredictionLog(os.path.join(d, "p.jsonl"))
        log.write(3, tracked, "cam")
        log.close()
        text = open(os.path.join(d, "p.jsonl")).read().strip()
    record = json.loads(text)
    assert record["track_ids"] == [7, None] and record["source"] == "cam"
    keys = json.loads(text, object_pairs_hook=lambda pairs: [k for k, _ in pairs])
    assert keys == sorted(keys)
