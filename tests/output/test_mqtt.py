"""MQTT with a real broker (mosquitto on a loopback port) and a real subscriber: the topics, payloads and retained
flags of a scene with known crossings; the last will after kill -9; a broker down at the start and one restarted
mid-run (what was queued arrives after, drops past the bound counted); Home Assistant discovery sent again."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from jetcam_app.analytics.wiring import source_analytics
from jetcam_app.config import SourceConfig, load_config
from jetcam_app.inference.stages import Processed
from jetcam_app.output.emitter import FrameEmitter
from jetcam_app.output.events_log import EventLog
from jetcam_app.output.notify.hub import build_notifier
from jetcam_app.sources.lanes import Doorbell, SourceLane
from jetcam_app.sources.spec import create_source
from jetcam_app.stats import StatsPoller
from jetcam_app.types import Detections, Frame, FrameTiming

from mqtt_broker import Broker, Subscriber, needs_broker

pytestmark = needs_broker
pytest.importorskip("paho.mqtt.client")
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class FakeAdapter:
    random_weights = False


@pytest.fixture
def broker(tmp_path):
    b = Broker(tmp_path).start()
    yield b
    b.stop()


def _mqtt(port, prefix="t", **extra):
    mapping = dict({"url": "mqtt://127.0.0.1:%d/%s" % (port, prefix)}, **extra)
    return load_config(None, {"output.mqtt": mapping}).output.mqtt


def _scene(tmp_path, port, frames=40):
    """One person walking left to right through a zone and across a line at x=320 (30 fps)."""
    config = load_config(None, {"source.lines": ["door:320,0,320,480"],
                                "source.zones": ["bay:250,200,600,200,600,479,250,479"],
                                "output.mqtt": {"url": "mqtt://127.0.0.1:%d/t" % port, "stats_interval_s": 0.1,
                                                "snapshots": True}})
    notifier = build_notifier(config.output.mqtt, (), [("cam", ["door"], ["bay"])])
    events = EventLog(str(tmp_path / "events.jsonl"))

    def on_event(event):
        events.write(event)
        notifier.event(event)
    lane = SourceLane("cam", create_source(SourceConfig(uri="test://640x480@30")), Doorbell(), 8, 30.0)
    lane.analytics = source_analytics(config, config.source, "cam", 30.0, on_event)
    stats = StatsPoller(1.0, "cpu").start()
    emitter = FrameEmitter(config, str(tmp_path), FakeAdapter(), stats, [lane], threaded=True, events=events,
                           notifier=notifier)
    image = np.zeros((480, 640, 3), np.uint8)
    for i in range(frames):
        x = 100 + 11 * i
        det = Detections(np.array([[x - 20, 220, x + 20, 300]], np.float32), np.array([0.9], np.float32),
                         np.array([0]), ["person"])
        emitter.emit([(lane, Processed(Frame(image, i, i / 30.0, time.perf_counter()), det, FrameTiming()))])
        time.sleep(0.005)
    emitter.close()
    stats.stop()
    return notifier


def test_a_scene_publishes_lifecycles_crossings_counts_and_occupancy(tmp_path, broker):
    live = Subscriber(broker.port, "t/#")
    notifier = _scene(tmp_path, broker.port)
    summary = notifier.summary()["mqtt"]
    assert summary["published"] > 0 and summary["dropped"] == 0 and summary["failed"] == 0, summary
    assert live.wait_for(lambda m: ("t/available", b"offline", False) in m)
    objects = [json.loads(p) for _, p, _ in live.on("t/events")]
    assert [o["type"] for o in objects][0] == "new" and objects[-1]["type"] == "end"
    assert objects[0]["after"]["current_zones"] == []  # like Frigate: no zones in `new`, but the box and score
    assert len(objects[0]["after"]["box"]) == 4 and objects[0]["after"]["score"] == pytest.approx(0.9)
    entered = [o for o in objects if "bay" in o["after"]["current_zones"] and "bay" not in o["before"]["current_zones"]]
    assert len(entered) == 1 and entered[0]["type"] == "update"  # the automation trigger, exactly once
    assert objects[-1]["after"]["crossings"][0]["line"] == "door"
    assert objects[-1]["after"]["entered_zones"] == ["bay"] and objects[-1]["after"]["end_time"] is not None
    crossings = [json.loads(p) for _, p, _ in live.on("t/cam/line/door")]
    got = [(c["event_type"], c["in_total"], c["out_total"], c["in"]) for c in crossings]
    assert got == [("in", 1, 0, {"person": 1})]
    assert live.on("t/cam/stats") and json.loads(live.on("t/cam/stats")[-1][1])["source"] == "cam"
    live.close()
    # a subscriber that comes later gets the retained state: the final counts, the occupancy (the person left the
    # frame's zone when its track ended with the run), and offline
    late = Subscriber(broker.port, "t/#")
    state = {"t/available", "t/cam/counts", "t/cam/zone/bay/person", "t/cam/zone/bay/all", "t/cam/snapshot"}
    assert late.wait_for(lambda m: state <= {t for t, _, _ in m})  # the broker sends retained topics in any order
    retained = {t: p for t, p, r in late.messages if r}
    assert retained["t/available"] == b"offline"
    counts = json.loads(retained["t/cam/counts"])
    assert counts["lines"]["door"]["in_total"] == 1 and counts["zones"]["bay"]["entries"] == {"person": 1}
    assert retained["t/cam/zone/bay/person"] == b"0" and retained["t/cam/zone/bay/all"] == b"0"
    assert "t/events" not in retained and "t/cam/line/door" not in retained  # events are not state
    import cv2

    snapshot = cv2.imdecode(np.frombuffer(retained["t/cam/snapshot"], np.uint8), cv2.IMREAD_COLOR)
    assert snapshot.shape == (480, 640, 3) and snapshot.any()  # the drawn frame: on black, the line and labels
    late.close()


def test_the_last_will_says_offline_when_the_app_is_killed(tmp_path, broker):
    sub = Subscriber(broker.port, "k/available")
    env = dict(os.environ, PYTHONPATH=ROOT)
    err = open(str(tmp_path / "stderr.txt"), "w+")
    proc = subprocess.Popen([sys.executable, os.path.join(ROOT, "run.py"), "--source",
                             "test://320x240@30?frames=100000", "--model", "mobilenet_v2", "--random-weights",
                             "--headless", "--out", str(tmp_path / "run"),
                             "--mqtt", "mqtt://127.0.0.1:%d/k" % broker.port], env=env,
                            stdout=subprocess.DEVNULL, stderr=err)
    try:
        online = lambda m: ("k/available", b"online", False) in m or proc.poll() is not None  # noqa: E731
        assert sub.wait_for(online, timeout=60) and proc.poll() is None, open(err.name).read()
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
        assert sub.wait_for(lambda m: m[-1][1] == b"offline")  # the broker publishes the will at once
    finally:
        if proc.poll() is None:
            proc.kill()
    sub.close()
    late = Subscriber(broker.port, "k/available")
    assert late.wait_for(lambda m: m and m[-1] == ("k/available", b"offline", True))
    late.close()


def test_a_broker_down_at_the_start_gets_what_waited(tmp_path, caplog):
    broker = Broker(tmp_path)
    notifier = build_notifier(_mqtt(broker.port), (), [("cam", [], [])])
    mqtt = notifier.mqtt
    for i in range(5):
        mqtt.publish("t/cam/test", {"i": i})
    time.sleep(0.3)
    assert any("not reachable" in r.getMessage() for r in caplog.records)  # a warning, the run goes on
    broker.start()
    try:
        sub = Subscriber(broker.port, "t/cam/test")
        assert sub.wait_for(lambda m: len(m) == 5, timeout=20), mqtt.summary()
        assert [json.loads(p)["i"] for _, p, _ in sub.messages] == list(range(5))
        notifier.close()
        assert notifier.summary()["mqtt"]["published"] == 5
        sub.close()
    finally:
        broker.stop()


def test_a_broker_restarted_mid_run_gets_the_queue_and_drops_are_counted(tmp_path):
    broker = Broker(tmp_path).start()
    notifier = build_notifier(_mqtt(broker.port, queue_size=20), (), [("cam", [], [])])
    mqtt = notifier.mqtt
    try:
        sub = Subscriber(broker.port, "t/cam/test")
        mqtt.publish("t/cam/test", {"i": -1})
        assert sub.wait_for(lambda m: len(m) == 1)
        sub.close()
        broker.stop()
        time.sleep(0.3)
        for i in range(50):  # 20 wait in the queue (one more in the deliverer's hands); the rest are dropped
            mqtt.publish("t/cam/test", {"i": i})
        counts = mqtt.outbox.counts()
        assert counts["dropped"] >= 29 and counts["queued"] <= 20, counts
        broker.start()
        sub = Subscriber(broker.port, "t/cam/test")
        arrived = lambda m: len(m) >= 50 - counts["dropped"]  # noqa: E731
        assert sub.wait_for(arrived, timeout=40), (mqtt.summary(), len(sub.messages))
        got = [json.loads(p)["i"] for _, p, _ in sub.messages]
        assert got == sorted(got) and got[0] == 0  # in order, the oldest kept
        notifier.close()
        summary = notifier.summary()["mqtt"]
        assert summary["reconnects"] == 1 and summary["published"] + summary["dropped"] == 51, summary
        sub.close()
    finally:
        broker.stop()


def test_home_assistant_discovery_is_sent_again_when_it_comes_online(tmp_path, broker):
    sub = Subscriber(broker.port, "homeassistant/#")
    notifier = build_notifier(_mqtt(broker.port, discovery=True), (), [("cam", ["door"], ["bay"])])
    configs = lambda m: [x for x in m if x[0].endswith("/config")]  # noqa: E731
    assert sub.wait_for(lambda m: len(configs(m)) == 4)  # door in, door out, door crossing, bay occupancy
    first = {t: json.loads(p) for t, p, _ in configs(sub.messages)}
    assert first["homeassistant/event/jetcam_t_cam_door_crossing/config"]["event_types"] == ["in", "out"]
    assert first["homeassistant/sensor/jetcam_t_cam_door_in/config"]["state_topic"] == "t/cam/counts"
    sub.client.publish("homeassistant/status", "online", qos=1)
    assert sub.wait_for(lambda m: len(configs(m)) == 8)
    notifier.close()
    sub.close()
