"""MQTT output security against a real mosquitto (no mocks): TLS with a self-signed CA (and a handshake that fails
without it: a warning, the run goes on), the password from $JETCAM_MQTT_PASSWORD or output.mqtt.password_file
(a refused login: one error, the run goes on without MQTT), credentials in no output of a run and never accepted in
a URL, and names escaped into topic levels so that nothing publishes outside PREFIX/<source>/..."""

import json
import logging
import os
import re
import time
from types import SimpleNamespace
from urllib.parse import unquote

import numpy as np
import pytest

pytest.importorskip("paho.mqtt.client")

from jetcam_app.cli import main  # noqa: E402
from jetcam_app.notify_config import PASSWORD_ENV, MqttSpec  # noqa: E402
from jetcam_app.output.notify.hub import Notifier  # noqa: E402
from jetcam_app.output.notify.mqtt import MqttOutput  # noqa: E402
from jetcam_app.output.notify.topics import Topics, level  # noqa: E402

try:
    from .mqtt_broker import Broker, Subscriber, needs_broker, self_signed
except ImportError:  # tests/output without an __init__.py: the folder itself is on sys.path
    from mqtt_broker import Broker, Subscriber, needs_broker, self_signed

FRAMES = 3  # NanoDet on CPU is about a second a frame on a small machine: a few frames keep each run short
SOURCE_URI = "test://320x240@30?frames=%d" % FRAMES
SOURCE = "test"  # the name a test:// source gets (topics sec/test/...)
PASSWORD = "s3cret-pw"
WRONG_PASSWORD = "wr0ng-pw-77"
MQTT_LOG = "jetcam_app.output.notify.mqtt"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    monkeypatch.delenv(PASSWORD_ENV, raising=False)


@pytest.fixture
def brokers():
    """Start brokers with brokers(folder, ...); every one (and every subscriber added to `.subs`) is stopped after."""
    started, subs = [], []

    def start(folder, **kw):
        os.makedirs(str(folder), exist_ok=True)
        broker = Broker(folder, **kw)  # it stays root where the tests run as root (mqtt_broker.py)
        started.append(broker.start())
        return broker

    start.subs = subs
    yield start
    for sub in subs:
        sub.close()
    for broker in started:
        broker.stop()


def subscribe(brokers, port, **kw):
    sub = Subscriber(port, "#", **kw)
    brokers.subs.append(sub)
    return sub


def run_app(tmp_path, capsys, *extra, config=None, debug=False):
    """The app in-process on a short synthetic source; (exit code, stdout, stderr, summary or None, run folder)."""
    out_dir = str(tmp_path / "run")
    argv = ["--source", SOURCE_URI, "--model", "nanodet", "--headless", "--out", out_dir] + list(extra)
    if config is not None:
        path = tmp_path / "jetcam.yaml"
        path.write_text(json.dumps(config))  # JSON is YAML: paths quoted safely
        argv += ["--config", str(path)]
    if debug:
        argv.append("--debug")
    capsys.readouterr()
    rc = main(argv)
    captured = capsys.readouterr()
    summary_path = os.path.join(out_dir, "summary.json")
    summary = json.load(open(summary_path)) if os.path.exists(summary_path) else None
    return rc, captured.out, captured.err, summary, out_dir


def mqtt_summary(summary):
    assert summary is not None, "the run wrote no summary.json"
    assert "mqtt" in summary.get("outputs", {}), summary.get("outputs")
    return summary["outputs"]["mqtt"]


def assert_all_frames(summary):
    assert summary["frames"]["processed"] == FRAMES, summary["frames"]


def assert_published(sub, prefix="sec"):
    assert sub.wait_for(lambda ms: any(t == "%s/available" % prefix and p == b"online" for t, p, _ in ms) and any(
        t == "%s/%s/stats" % (prefix, SOURCE) for t, _, _ in ms), timeout=10), sub.messages
    stats = json.loads(sub.on("%s/%s/stats" % (prefix, SOURCE))[0][1])
    assert stats["source"] == SOURCE


def assert_nowhere(secret, out, err, caplog, run_dir, sub=None):
    """The secret is in no stdout, stderr, log record (message, arguments, traceback), file of the run folder, or
    message the broker passed on."""
    assert secret not in out
    assert secret not in err
    assert secret not in caplog.text
    for record in caplog.records:
        assert secret not in record.getMessage(), record
        assert secret not in repr(record.args), record
        assert secret not in (record.exc_text or ""), record
    seen = 0
    for root, _, files in os.walk(run_dir):
        for name in files:
            with open(os.path.join(root, name), "rb") as f:
                assert secret.encode() not in f.read(), os.path.join(root, name)
            seen += 1
    assert seen >= 2  # summary.json and the logs at least: the scan looked at a real run folder
    for topic, payload, _ in (sub.messages if sub is not None else []):
        assert secret.encode() not in payload and secret not in topic, topic


def errors(caplog):
    return [r for r in caplog.records if r.levelno >= logging.ERROR]


# 1. TLS


@needs_broker
def test_tls_with_a_self_signed_ca_from_the_config(tmp_path, capsys, caplog, brokers):
    ca, cert, key = self_signed(tmp_path)
    broker = brokers(tmp_path / "broker", tls=(ca, cert, key))
    sub = subscribe(brokers, broker.port, tls_ca=ca)
    # the config's url points elsewhere; --mqtt goes over it key by key: its host, port and prefix, the config's ca
    config = {"output": {"mqtt": {"url": "mqtts://localhost:1/elsewhere", "ca": ca}}}
    rc, out, err, summary, _ = run_app(tmp_path, capsys, "--mqtt", "mqtts://localhost:%d/sec" % broker.port,
                                       config=config)
    assert rc == 0, err
    assert_published(sub)
    mqtt = mqtt_summary(summary)
    assert mqtt["published"] > 0 and "error" not in mqtt, mqtt
    assert mqtt["failed"] == 0 and mqtt["dropped"] == 0, mqtt
    assert mqtt["broker"] == "mqtts://localhost:%d/sec" % broker.port
    assert summary["config"]["output"]["mqtt"]["ca"] == ca
    assert not errors(caplog)
    assert_all_frames(summary)


@needs_broker
def test_tls_without_the_ca_is_a_warning_and_the_run_goes_on(tmp_path, capsys, caplog, brokers):
    ca, cert, key = self_signed(tmp_path)
    broker = brokers(tmp_path / "broker", tls=(ca, cert, key))
    sub = subscribe(brokers, broker.port, tls_ca=ca)
    caplog.set_level(logging.INFO)
    # no ca: the system's CAs, which do not know this one: the handshake fails
    rc, out, err, summary, _ = run_app(tmp_path, capsys, "--mqtt", "mqtts://localhost:%d/sec" % broker.port)
    assert rc == 0, err
    assert "Traceback" not in err and "Exception in thread" not in err, err
    warnings = [r for r in caplog.records if r.name == MQTT_LOG and r.levelno == logging.WARNING]
    assert len(warnings) == 1, [r.getMessage() for r in warnings]
    assert "not reachable" in warnings[0].getMessage() and str(broker.port) in warnings[0].getMessage()
    assert not errors(caplog), [r.getMessage() for r in errors(caplog)]
    mqtt = mqtt_summary(summary)
    assert mqtt["published"] == 0 and "error" not in mqtt, mqtt
    assert_all_frames(summary)
    time.sleep(0.2)
    assert not [m for m in sub.messages if m[0].startswith("sec/")], sub.messages


# 2. The password, 3. credentials never leak


@needs_broker
def test_password_from_the_environment_publishes_and_leaks_nowhere(tmp_path, capsys, caplog, brokers, monkeypatch):
    broker = brokers(tmp_path / "broker", users={"cam": PASSWORD})
    sub = subscribe(brokers, broker.port, user="cam", password=PASSWORD)
    monkeypatch.setenv(PASSWORD_ENV, PASSWORD)
    caplog.set_level(logging.DEBUG)
    rc, out, err, summary, run_dir = run_app(tmp_path, capsys, "--mqtt", "mqtt://cam@127.0.0.1:%d/sec" % broker.port,
                                             debug=True)
    assert rc == 0, err
    assert_published(sub)
    mqtt = mqtt_summary(summary)
    assert mqtt["published"] > 0 and "error" not in mqtt, mqtt
    assert mqtt["broker"] == "mqtt://cam@127.0.0.1:%d/sec" % broker.port
    assert_all_frames(summary)
    assert caplog.records  # DEBUG was on: the scan looked at a real log
    assert_nowhere(PASSWORD, out, err, caplog, run_dir, sub)


@needs_broker
def test_wrong_password_is_one_error_and_the_run_goes_on(tmp_path, capsys, caplog, brokers, monkeypatch):
    broker = brokers(tmp_path / "broker", users={"cam": PASSWORD})
    sub = subscribe(brokers, broker.port, user="cam", password=PASSWORD)
    monkeypatch.setenv(PASSWORD_ENV, WRONG_PASSWORD)
    caplog.set_level(logging.DEBUG)
    started = time.monotonic()
    rc, out, err, summary, run_dir = run_app(tmp_path, capsys, "--mqtt", "mqtt://cam@127.0.0.1:%d/sec" % broker.port)
    assert rc == 0, err
    found = errors(caplog)
    assert len(found) == 1, [r.getMessage() for r in found]
    message = found[0].getMessage()
    assert found[0].name == MQTT_LOG and str(broker.port) in message, message
    assert "not authorised" in message or "bad user name or password" in message, message  # the broker's reason
    assert "$" + PASSWORD_ENV in message and "password_file" in message, message
    assert not [r for r in caplog.records if r.name == MQTT_LOG and r.levelno == logging.WARNING]  # not "away"
    mqtt = mqtt_summary(summary)
    assert "refused the login" in mqtt.get("error", ""), mqtt
    assert mqtt["published"] == 0, mqtt
    assert_all_frames(summary)
    assert summary["frames"]["captured"] == FRAMES and summary["frames"]["dropped"] == 0, summary["frames"]
    assert time.monotonic() - started < 30  # no waiting out a queue for a broker that said no
    assert not [m for m in sub.messages if m[0].startswith("sec/")], sub.messages
    for secret in (WRONG_PASSWORD, PASSWORD):
        assert_nowhere(secret, out, err, caplog, run_dir, sub)


@needs_broker
def test_password_file_from_the_config(tmp_path, capsys, caplog, brokers):
    broker = brokers(tmp_path / "broker", users={"cam": PASSWORD})
    sub = subscribe(brokers, broker.port, user="cam", password=PASSWORD)
    secret_file = tmp_path / "mqtt-password"
    secret_file.write_text(PASSWORD + "\n")
    caplog.set_level(logging.DEBUG)
    config = {"output": {"mqtt": {"url": "mqtt://cam@127.0.0.1:%d/sec" % broker.port,
                                  "password_file": str(secret_file)}}}
    rc, out, err, summary, run_dir = run_app(tmp_path, capsys, config=config)
    assert rc == 0, err
    assert_published(sub)
    mqtt = mqtt_summary(summary)
    assert mqtt["published"] > 0 and "error" not in mqtt, mqtt
    assert summary["config"]["output"]["mqtt"]["password_file"] == str(secret_file)  # the path, not the password
    assert not errors(caplog)
    assert_nowhere(PASSWORD, out, err, caplog, run_dir, sub)


URL_SECRET = "Url-S3cret-9q"


@pytest.mark.parametrize("where", ["flag", "config"])
def test_a_password_in_the_url_is_refused_without_echoing_it(tmp_path, capsys, caplog, where):
    caplog.set_level(logging.DEBUG)
    url = "mqtt://cam:%s@127.0.0.1:1883/sec" % URL_SECRET
    if where == "flag":
        rc, out, err, summary, run_dir = run_app(tmp_path, capsys, "--mqtt", url)
    else:
        rc, out, err, summary, run_dir = run_app(tmp_path, capsys, config={"output": {"mqtt": {"url": url}}})
    assert rc == 2, (out, err)
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "$" + PASSWORD_ENV in lines[0] and "password_file" in lines[0], lines[0]
    assert URL_SECRET not in out + err + caplog.text
    assert not os.path.exists(run_dir)  # refused before anything opened or was written


@pytest.mark.parametrize("url", [
    "mqqts://jetcam-camera-01:%s@broker.example.internal.lan:8883/site/building-a/jetcam",  # scheme typo
    "mqtts://jetcam-camera-01:%s@broker.example.internal.lan:88830/site/building-a/jetcam",  # port out of range
])
def test_a_long_bad_url_never_echoes_its_password(tmp_path, capsys, url):
    secret = "Correct-Horse-Battery-Staple"
    rc, out, err, _, _ = run_app(tmp_path, capsys, "--mqtt", url % secret)
    assert rc == 2, err
    for i in range(len(secret) - 5):  # not even a part of it
        assert secret[i:i + 6] not in out + err, (secret[i:i + 6], err)


# 4. Topic escaping


def test_level_escapes_every_name_into_one_safe_level():
    for name in ("a/b", "#", "+", "$SYS", "", ".", "..", "x/../#+", "cam/1#", "a b", "caf\u00e9", "50%", "/", "a+b#c"):
        out = level(name)
        assert out and out not in (".", "..") and not out.startswith("$"), (name, out)
        assert not set(out) & set("/#+$ \0"), (name, out)
        assert re.fullmatch(r"[A-Za-z0-9_.%-]+", out), (name, out)
        assert out != name, name
        if name:
            assert unquote(out) == name, (name, out)  # percent-encoding: one level, read back exactly
    for name in ("cam0", "front_door", "zone-1", "person", "v1.2", "Cam.East", "a..b"):
        assert level(name) == name
    names = ["a/b", "a%2Fb", "a_b", "a-b", "a.b", "ab", "", ".", "..", "%", "%25"]
    assert len({level(n) for n in names}) == len(names)  # distinct names stay distinct topics
    topics = Topics("sec")
    assert topics.zone("cam/1#", "z", "x/../#+") == "sec/cam%2F1%23/zone/z/x%2F..%2F%23%2B"
    assert topics.events == "sec/events" and topics.available == "sec/available"


@needs_broker
def test_hostile_names_publish_only_under_the_escaped_source(tmp_path, brokers):
    broker = brokers(tmp_path / "broker")
    sub = subscribe(brokers, broker.port)
    source, label, zones, line = "cam/1#", "x/../#+", ["z", "lobby/#"], "door/+"
    spec = MqttSpec(host="127.0.0.1", port=broker.port, prefix="sec", snapshots=True)
    mqtt = MqttOutput(spec)
    notifier = Notifier(mqtt, [], [(source, [line], zones)])
    base = {"track_id": 7, "label": label, "source": source}
    counts = {"lines": {line: {"in": {label: 1}, "out": {}, "in_total": 1, "out_total": 0}},
              "zones": {z: {"occupancy": {label: 1}} for z in zones}, "tracks": {"active": 1, "total": 1}}
    final = {"lines": counts["lines"], "zones": {z: {"occupancy": {}} for z in zones},
             "tracks": {"active": 0, "total": 1}}
    try:
        result = SimpleNamespace(boxes=np.array([[10.0, 20.0, 60.0, 90.0]]), scores=np.array([0.9]),
                                 track_ids=np.array([7]))
        hud = SimpleNamespace(fps=30.0, p95_ms=12.0, budget_ms=33.3, dropped=0, realtime_ok=True)
        notifier.event(dict(base, event="track_started", frame=1, t_s=0.033))
        for zone in zones:
            notifier.event(dict(base, event="zone_entered", zone=zone, frame=1, t_s=0.033))
        notifier.frame(source, 1, result, hud, counts, snapshot=lambda: b"\xff\xd8 a jpeg \xff\xd9")
        notifier.event(dict(base, event="line_crossed", line=line, direction="in", frame=2, t_s=0.066, in_total=1,
                            out_total=0))
        notifier.frame(source, 2, result, hud, counts)
        for zone in zones:
            notifier.event(dict(base, event="zone_left", zone=zone, frame=3, t_s=0.1))
        notifier.event(dict(base, event="track_ended", frame=3, t_s=0.1))
        notifier.frame(source, 3, SimpleNamespace(boxes=np.zeros((0, 4)), scores=np.zeros(0),
                                                  track_ids=np.zeros(0, int)), hud, final)
    finally:
        notifier.close({source: final})
    assert sub.wait_for(lambda ms: any(m[:2] == ("sec/available", b"offline") for m in ms)), sub.messages
    summary = notifier.summary()["mqtt"]
    assert summary["published"] > 0 and summary["failed"] == 0 and summary["dropped"] == 0, summary
    assert "error" not in summary

    escaped = level(source)
    assert escaped == "cam%2F1%23"
    topics = {t for t, _, _ in sub.messages}
    for topic in topics:
        assert topic.startswith("sec/"), topic
        assert "#" not in topic and "+" not in topic, topic
        levels = topic.split("/")
        assert all(levels), topic  # no empty level
        if topic not in ("sec/events", "sec/available"):
            assert levels[1] == escaped, topic
    under = "sec/%s/" % escaped
    expected = {"sec/events", "sec/available", under + "stats", under + "counts", under + "snapshot",
                under + "line/door%2F%2B", under + "zone/z/all", under + "zone/lobby%2F%23/all",
                under + "zone/z/" + level(label), under + "zone/lobby%2F%23/" + level(label)}
    assert expected <= topics, expected - topics
    # the levels read back to the names; the payloads carry the names as they are
    assert unquote(level(label)) == label and unquote("lobby%2F%23") == "lobby/#"
    kinds = [json.loads(p)["type"] for t, p, _ in sub.messages if t == "sec/events"]
    assert kinds[0] == "new" and kinds[-1] == "end", kinds
    assert all(json.loads(p)["after"]["label"] == label for t, p, _ in sub.messages if t == "sec/events")
    assert json.loads(sub.on(under + "line/door%2F%2B")[0][1])["line"] == line
    assert [p for _, p, _ in sub.on(under + "zone/z/" + level(label))][-1] == b"0"  # left at the end
