"""Tracking per source through the real emitter and pipeline: batched sources keep independent trackers and counts,
events.jsonl and summary.json carry them, and a bad line or zone is one line and exit 2 before anything runs."""

import json
import os
import time

import numpy as np
import pytest

from jetcam_app.analytics.wiring import source_analytics
from jetcam_app.cli import main
from jetcam_app.config import SourceConfig, load_config
from jetcam_app.inference.stages import Processed
from jetcam_app.output.emitter import FrameEmitter
from jetcam_app.output.events_log import EventLog
from jetcam_app.sources.lanes import Doorbell, SourceLane
from jetcam_app.sources.spec import create_source
from jetcam_app.stats import StatsPoller
from jetcam_app.types import Detections, Frame, FrameTiming


class FakeAdapter:
    random_weights = False


def detection_at(x):
    return Detections(np.array([[x - 20, 220, x + 20, 300]], np.float32), np.array([0.9], np.float32),
                      np.array([0]), ["person"])


def test_two_batched_sources_keep_their_own_tracks_and_counts(tmp_path):
    config = load_config(None, {"source.lines": ["door:320,0,320,480"]})
    events = EventLog(str(tmp_path / "events.jsonl"))
    lanes = []
    for name in ("left", "right"):
        source = create_source(SourceConfig(uri="test://640x480@30"))
        lane = SourceLane(name, source, Doorbell(), 8, 30.0)
        lane.analytics = source_analytics(config, config.source, name, 30.0, events.write)
        lanes.append(lane)
    stats = StatsPoller(1.0, "cpu").start()
    emitter = FrameEmitter(config, str(tmp_path), FakeAdapter(), stats, lanes, threaded=True, events=events)
    image = np.zeros((480, 640, 3), np.uint8)
    for i in range(40):  # one batch per frame index, both sources in it; the same place, opposite directions
        batch = []
        for lane, x in zip(lanes, (100 + 11 * i, 540 - 11 * i)):
            frame = Frame(image, i, i / 30.0, time.perf_counter())
            batch.append((lane, Processed(frame, detection_at(x), FrameTiming())))
        emitter.emit(batch)
    emitter.close()
    stats.stop()
    left, right = (lane.analytics.summary()["lines"]["door"] for lane in lanes)
    assert (left["in_total"], left["out_total"]) == (1, 0)
    assert (right["in_total"], right["out_total"]) == (0, 1)
    rows = [json.loads(line) for line in open(str(tmp_path / "events.jsonl"))]
    for name in ("left", "right"):
        started = [r["track_id"] for r in rows if r["source"] == name and r["event"] == "track_started"]
        assert started == [1]  # IDs per source
        assert [r["event"] for r in rows if r["source"] == name][-1] == "track_ended"  # closed with the run
    predictions = [json.loads(line) for line in open(str(tmp_path / "predictions.jsonl"))]
    assert {tuple(p["track_ids"]) for p in predictions[4:]} == {(1,)}


@pytest.mark.slow
def test_pipeline_with_lines_writes_events_summary_and_track_ids(tmp_path, capsys):
    out = tmp_path / "out"
    code = main(["--source", "sample", "--headless", "--max-frames", "40", "--out", str(out),
                 "--line", "door:0.5,0,0.5,1", "--zone", "mid:0.25,0.25,0.75,0.25,0.75,0.75,0.25,0.75"])
    assert code == 0, capsys.readouterr().err
    summary = json.load(open(str(out / "summary.json")))
    assert set(summary["lines"]["door"]) == {"in", "out", "in_total", "out_total"}
    assert set(summary["zones"]["mid"]) >= {"entries", "max_occupancy", "mean_dwell_s"}
    assert summary["tracks"]["confirmed"] >= 1  # the sample video has people and bikes from its first second
    rows = [json.loads(line) for line in open(str(out / "events.jsonl"))]
    assert rows and {r["event"] for r in rows} >= {"track_started", "track_ended"}
    started = {r["track_id"] for r in rows if r["event"] == "track_started"}
    ended = {r["track_id"] for r in rows if r["event"] == "track_ended"}
    assert started == ended  # every track ends by the run's end
    predictions = [json.loads(line) for line in open(str(out / "predictions.jsonl"))]
    assert all(len(p["track_ids"]) == len(p["boxes"]) for p in predictions)
    assert started >= {t for p in predictions for t in p["track_ids"] if t is not None}


def test_tracking_off_writes_no_events_and_no_track_ids(tmp_path, capsys):
    out = tmp_path / "out"
    code = main(["--source", "test://320x240@30?frames=3", "--headless", "--out", str(out),
                 "--model", "ssdlite320_mobilenet_v3_large", "--random-weights"])
    assert code == 0, capsys.readouterr().err
    assert not os.path.exists(str(out / "events.jsonl"))
    assert all("track_ids" not in json.loads(line) for line in open(str(out / "predictions.jsonl")))


@pytest.mark.parametrize("args, message", [
    (["--line", "door:1,2,3"], "do not make x,y pairs"),
    (["--line", "door:1,2,3,4,5,6"], "needs exactly 2 points"),
    (["--line", "door:0.5,0,0.5,zero"], "'zero' is not a number"),
    (["--line", "door:10,10,10,10"], "has zero length"),
    (["--line", "0.5,0,0.5,1"], "give NAME:COORDINATES"),
    (["--line", "a b:0.5,0,0.5,1"], "needs a name"),
    (["--line", "door:0,0,1,1", "--line", "door:1,0,0,1"], "two are named 'door'"),
    (["--zone", "bay:0,0,1,1"], "needs at least 3 points"),
    (["--zone", "bay:0,0,1,1,2,2"], "encloses no area"),
    (["--zone", "bay:0,0,1,nan,1,1"], "must be finite"),
    (["--track", "--model", "resnet18"], "need a detection model"),
])
def test_bad_lines_and_zones_exit_2_with_one_line(tmp_path, capsys, args, message):
    base = ["--source", "test://320x240@30?frames=2", "--headless", "--random-weights", "--out", str(tmp_path / "o")]
    code = main(base + args)
    err = capsys.readouterr().err
    assert code == 2 and message in err, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not os.path.exists(str(tmp_path / "o" / "events.jsonl"))


def test_config_lines_per_source_and_bad_keys(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("sources:\n  - {uri: a.mp4, lines: [{name: door, points: [[0.5, 0], [0.5, 1]], count: once}]}\n"
                    "  - {uri: b.mp4, zones: [{name: bay, points: [[0, 0], [1, 0], [1, 1]], loiter_s: 5}]}\n")
    config = load_config(str(path))
    a, b = config.sources
    assert a.lines[0].count == "once" and not a.zones and b.zones[0].loiter_s == 5.0 and not b.lines
    path.write_text("source:\n  lines: [{name: door, points: [[0.5, 0], [0.5, 1]], colour: red}]\n")
    with pytest.raises(Exception, match="unknown key 'colour'"):
        load_config(str(path))


def test_coordinates_outside_the_frame_warn(caplog):
    from jetcam_app.analytics.scene import SourceAnalytics
    from jetcam_app.config import TrackerConfig
    from jetcam_app.regions import parse_line_flag

    scene = SourceAnalytics("cam", TrackerConfig(), [parse_line_flag("far:10,10,900,10")], (), 30.0, 0.35)
    scene.process(0, 0.0, (640, 480), Detections.empty(["person"]))
    assert "reaches outside the 640x480 frame" in caplog.text
