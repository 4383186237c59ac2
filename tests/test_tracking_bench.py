"""The tracking bench's instruments: every synthetic scene (bench/tracking_scenes.py) holds its own truth and is
counted exactly through SourceAnalytics; the motmetrics harness (bench/tracking_quality.py) reproduces motmetrics'
published figures and scores both trackers. No timing here: speed is bench/tracking_cost.py's."""

import os
import sys

import numpy as np
import pytest
from conftest import ROOT

sys.path.insert(0, os.path.join(ROOT, "bench"))

import tracking_scenes  # noqa: E402

SCENES = tracking_scenes.all_scenes()


@pytest.mark.parametrize("scene", SCENES, ids=[s.name for s in SCENES])
def test_scene_truth_follows_from_its_paths_and_detections(scene):
    tracking_scenes.check_scene(scene)


@pytest.mark.parametrize("scene", SCENES, ids=[s.name for s in SCENES])
def test_scene_is_counted_exactly(scene):
    from tracking_quality import run_scene

    got = run_scene(scene)
    expected = {name: {d: c for d, c in v.items() if c} for name, v in scene.expected_lines.items()}
    assert (got.lines, got.zones) == (expected, scene.expected_zones)
    assert got.exact


def test_scenes_are_the_same_for_a_seed_and_differ_between_seeds():
    again = tracking_scenes.all_scenes()
    other = tracking_scenes.all_scenes(seed=tracking_scenes.SEED + 100)
    faults = [s.name for s in SCENES].index("all_faults")
    for a, b in zip(SCENES[faults].frames, again[faults].frames):
        np.testing.assert_array_equal(a.boxes, b.boxes)
        np.testing.assert_array_equal(a.scores, b.scores)
    assert any(a.boxes.shape != b.boxes.shape or not np.array_equal(a.boxes, b.boxes)
               for a, b in zip(SCENES[faults].frames, other[faults].frames))


def test_a_scene_with_a_wrong_count_is_refused():
    scene = SCENES[0]
    wrong = dict(scene.expected_zones, lobby={"person": 3, "car": 1})
    with pytest.raises(AssertionError):
        tracking_scenes.check_scene(tracking_scenes.Scene(scene.name, scene.about, scene.frames, scene.lines,
                                                          scene.zones, scene.expected_lines, wrong, scene.movers))


def test_greedy_tracker_keeps_ids_of_overlapping_boxes_and_gives_up_after_the_buffer():
    from tracking_quality import GreedyIoUTracker

    tracker = GreedyIoUTracker(max_missed=2)
    box = np.array([[10, 10, 50, 90], [200, 10, 240, 90]], np.float32)
    first = tracker.update(box, np.array([0.9, 0.8]))
    assert first.tolist() == [1, 2]
    assert tracker.update(box + 3, np.array([0.9, 0.8])).tolist() == [1, 2]
    for _ in range(3):
        tracker.update(np.zeros((0, 4), np.float32), np.zeros(0))
    assert tracker.update(box + 3, np.array([0.9, 0.8])).tolist() == [3, 4]  # gone: new IDs, never reused


def test_motmetrics_harness_reproduces_the_readme_and_scores_both_trackers():
    pytest.importorskip("motmetrics")
    import tracking_quality

    check = tracking_quality.harness_check()
    assert check["mota"] == pytest.approx(0.526, abs=1e-3) and check["idf1"] == pytest.approx(0.558, abs=1e-3)
    assert check["switches"] == 7
    medium = [n for n in tracking_quality.NOISE_LEVELS if n.name == "medium"][0]
    scores = tracking_quality.evaluate("TUD-Campus", medium, seed=0)
    for tracker in ("bytetrack", "greedy"):
        assert set(scores[tracker]) == {"mota", "idf1", "switches"}
        assert np.isfinite(scores[tracker]["mota"]) and 0 <= scores[tracker]["idf1"] <= 1
    assert scores["bytetrack"]["switches"] <= scores["greedy"]["switches"]
