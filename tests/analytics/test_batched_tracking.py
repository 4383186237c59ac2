"""A batch's sources stepped together (scene.process_many, bytetrack.update_many, one TrackStates) give what each
source gives alone: the same track IDs, events, in the same order, snapshots and counts, also when the sources
dropped different frames (per-track Kalman steps), one reconnects, and one source comes twice in a batch."""

import dataclasses
import os
import sys

import numpy as np

from jetcam_app.analytics import kalman
from jetcam_app.analytics.scene import SourceAnalytics, process_many
from jetcam_app.analytics.track_states import TrackStates
from jetcam_app.config import TrackerConfig
from jetcam_app.regions import LineSpec, ZoneSpec

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "bench"))
from tracking_cost import LINES, ZONES, moving_boxes  # noqa: E402

TRACKER = dataclasses.replace(TrackerConfig(), enabled=True)
SIZE = (1920, 1080)
EXTRA_ZONE = ZoneSpec("top", ((0.0, 0.0), (1.0, 0.0), (1.0, 0.5), (0.0, 0.5)), loiter_s=0.5)
EXTRA_LINE = LineSpec("slant", ((0.1, 0.2), (0.9, 0.7)), anchor="center")


def _scene(name, events, states=None):
    return SourceAnalytics(name, TRACKER, LINES + (EXTRA_LINE,), ZONES + (EXTRA_ZONE,), 30.0, 0.35,
                           events.append, states)


def _plan(sources=3, frames=160):
    """Per source: its detections, the frame indices it delivers (each drops its own) and its reconnect count."""
    plans = []
    for k in range(sources):
        dets = moving_boxes(6 + 7 * k, frames, seed=10 + k, junk=15 * k)
        delivered = [i for i in range(frames) if (i + k) % (5 + k) != 0]
        reconnects = [1 if (k == 1 and i >= frames // 2) else 0 for i in range(frames)]
        plans.append((dets, delivered, reconnects))
    return plans


def _record(shown, snapshot):
    return (shown.track_ids.tolist(), [(v.name, v.in_total, v.out_total) for v in snapshot.lines],
            [(v.name, v.occupancy, v.loitering) for v in snapshot.zones],
            [(t.track_id, t.label, tuple(t.points)) for t in snapshot.trails])


def test_a_batch_gives_what_each_source_gives_alone():
    plans = _plan()
    alone_events, alone = [], []
    for k, (dets, delivered, reconnects) in enumerate(plans):
        scene = _scene("s%d" % k, alone_events)
        alone.append([_record(*scene.process(i, i / 30.0, SIZE, dets[i], reconnects[i])) for i in delivered])
        scene.close()
        alone[-1].append(scene.summary())

    batch_events = []
    states = TrackStates(capacity=4)  # small: it grows while tracks of several sources hold slots
    scenes = [_scene("s%d" % k, batch_events, states) for k in range(len(plans))]
    batched = [[] for _ in plans]
    frames = len(plans[0][0])
    for i in range(frames):
        items = [(scenes[k], i, i / 30.0, SIZE, dets[i], reconnects[i])
                 for k, (dets, delivered, reconnects) in enumerate(plans) if i in delivered]
        for item, result in zip(items, process_many(items)):
            batched[scenes.index(item[0])].append(_record(*result))
    for k, scene in enumerate(scenes):
        scene.close()
        batched[k].append(scene.summary())

    assert batched == alone
    by_source = lambda events, name: [e for e in events if e["source"] == name]  # noqa: E731
    for k in range(len(plans)):
        assert by_source(batch_events, "s%d" % k) == by_source(alone_events, "s%d" % k)
    kinds = {e["event"] for e in alone_events}
    assert {"track_started", "track_ended", "line_crossed", "zone_entered", "zone_left", "loitering"} <= kinds
    assert sum(1 for e in alone_events if e["event"] == "track_ended" and e["source"] == "s1") > 0


def test_a_source_twice_in_one_batch_is_taken_in_order():
    dets = moving_boxes(8, 40, seed=3)
    alone_events, batch_events = [], []
    alone = _scene("a", alone_events)
    expected = [_record(*alone.process(i, i / 30.0, SIZE, dets[i])) for i in range(40)]
    scene = _scene("a", batch_events, TrackStates())
    got = []
    for i in range(0, 40, 2):
        got.extend(_record(*r) for r in process_many([(scene, i, i / 30.0, SIZE, dets[i], 0),
                                                      (scene, i + 1, (i + 1) / 30.0, SIZE, dets[i + 1], 0)]))
    assert got == expected and batch_events == alone_events


def test_per_track_steps_equal_separate_predictions():
    means, covs = kalman.initiate(kalman.xyxy_to_xyah(np.array([[0, 0, 10, 20], [50, 50, 90, 130.0]])))
    means[:, 4:] = [[1.0, 2.0, 0.0, 0.5], [-3.0, 1.0, 0.0, 0.0]]
    both_means, both_covs = kalman.predict(means, covs, np.array([1, 3]))
    for row, steps in ((0, 1), (1, 3)):
        one_means, one_covs = kalman.predict(means[row:row + 1], covs[row:row + 1], steps)
        np.testing.assert_allclose(both_means[row], one_means[0])
        np.testing.assert_allclose(both_covs[row], one_covs[0])
    assert not np.allclose(both_means[1], kalman.predict(means[1:], covs[1:], 1)[0][0])
