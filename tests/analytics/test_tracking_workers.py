"""Tracking in worker processes (tracker.workers) gives what tracking in the app's process gives: the same
events.jsonl, track IDs, scenes and counts, batch by batch through the real emitter; the automatic choice."""

import json
import time

import numpy as np

from jetcam_app.analytics.pool import worker_count
from jetcam_app.analytics.wiring import sources_analytics
from jetcam_app.config import SourceConfig, load_config
from jetcam_app.inference.stages import Processed
from jetcam_app.output.emitter import FrameEmitter
from jetcam_app.output.events_log import EventLog
from jetcam_app.sources.lanes import Doorbell, SourceLane
from jetcam_app.sources.spec import create_source
from jetcam_app.stats import StatsPoller
from jetcam_app.types import Detections, Frame, FrameTiming

NAMES = ["person", "car"]


class FakeAdapter:
    random_weights = False


def scene(k, i):
    """Source k's frame i: three objects at their own speeds (one low-scoring now and then), crossing x = 320."""
    xs = [(60 + (7 + k) * i) % 640, (600 - (5 + k) * i) % 640, (200 + 3 * i) % 640]
    boxes = np.array([[x - 15, 100 + 120 * j, x + 15, 160 + 120 * j] for j, x in enumerate(xs)], np.float32)
    scores = np.array([0.9, 0.15 if i % 7 == 3 else 0.8, 0.6], np.float32)
    return Detections(boxes, scores, np.array([0, 1, 0]), NAMES)


def run(tmp_path, workers, sources=4, frames=60):
    config = load_config(None, {"source.lines": ["door:320,0,320,480"],
                                "source.zones": ["bay:0,0,300,0,300,479,0,479"], "tracker.workers": workers})
    folder = tmp_path / ("w%d" % workers)
    folder.mkdir()
    events = EventLog(str(folder / "events.jsonl"))
    lanes = [SourceLane("s%d" % k, create_source(SourceConfig(uri="test://640x480@30")), Doorbell(), 8, 30.0)
             for k in range(sources)]
    analytics = sources_analytics(config, [(lane.name, config.source, 30.0) for lane in lanes], events.write, 16)
    for lane in lanes:
        lane.analytics = analytics[lane.name]
    stats = StatsPoller(1.0, "cpu").start()
    emitter = FrameEmitter(config, str(folder), FakeAdapter(), stats, lanes, threaded=True, events=events)
    image = np.zeros((480, 640, 3), np.uint8)
    scenes = []
    for i in range(frames):
        batch = [(lane, Processed(Frame(image, i, i / 30.0, time.perf_counter()), scene(k, i), FrameTiming()))
                 for k, lane in enumerate(lanes)]
        emitter.emit(batch)
        scenes.append(batch)
    emitter.close()
    stats.stop()
    drawn = [[(done.scene.lines, [(z.name, z.polygon.tolist(), z.occupancy, z.loitering) for z in done.scene.zones],
               done.scene.trails) for _, done in batch] for batch in scenes]
    return (open(str(folder / "events.jsonl")).read(), open(str(folder / "predictions.jsonl")).read(),
            [lane.analytics.summary() for lane in lanes], drawn, [type(lane.analytics).__name__ for lane in lanes])


def test_worker_processes_track_exactly_as_the_app_process(tmp_path):
    here, there = run(tmp_path, 0), run(tmp_path, 2)
    assert here[4] == ["SourceAnalytics"] * 4 and there[4] == ["RemoteAnalytics"] * 4
    rows = [json.loads(line) for line in here[0].splitlines()]
    assert {r["event"] for r in rows} >= {"track_started", "line_crossed", "zone_entered", "track_ended"}
    assert {r["source"] for r in rows} == {"s0", "s1", "s2", "s3"}
    assert there[0] == here[0]  # events.jsonl byte for byte, in the same order
    assert there[1] == here[1]  # predictions.jsonl with its track_ids
    assert there[2] == here[2]  # summary counts
    assert there[3] == here[3]  # what the overlay draws


def test_a_run_with_worker_processes_writes_what_one_without_writes(tmp_path, capsys):
    from jetcam_app.cli import main

    outs = {}
    for workers in (0, 2):
        out = tmp_path / ("run%d" % workers)
        code = main(["--source", "sample", "--source", "sample", "--headless", "--max-frames", "20", "--out", str(out),
                     "--line", "door:0.5,0,0.5,1", "--tracker-workers", str(workers)])
        assert code == 0, capsys.readouterr().err
        summary = json.load(open(str(out / "summary.json")))
        outs[workers] = (open(str(out / "events.jsonl")).read(),
                         {name: (s["lines"], s["tracks"], s["events"]) for name, s in summary["sources"].items()})
    assert outs[0][0] and outs[2] == outs[0]


def test_the_automatic_choice_keeps_few_sources_and_small_machines_in_process():
    assert worker_count(-1, 32, 16) == 4 and worker_count(-1, 40, 8) == 2
    assert worker_count(-1, 31, 64) == 0 and worker_count(-1, 32, 4) == 0  # few sources, or few cores
    assert worker_count(0, 32, 16) == 0 and worker_count(3, 2, 16) == 2  # as asked, never more than the sources
