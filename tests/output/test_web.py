"""The --http web server with real HTTP requests: page, stats, the newest snapshot, the stream, the token, and
robustness (idle clients time out, clients beyond the bound get 503, stalled viewers never block write())."""

import json
import logging
import socket
import threading
import time
import urllib.error
import urllib.request

import cv2
import numpy as np
import pytest

from jetcam_app.output.live_status import LiveStatus, SourceStatus
from jetcam_app.output.overlay import HudInfo
from jetcam_app.output.sinks.web import BOUNDARY, WebSink
from jetcam_app.sources.synthetic import decode_index, draw_pattern

SIZE = (320, 240)


@pytest.fixture
def sink():
    status = LiveStatus({"source": "test://", "model": "nanodet", "backend": "cpu", "precision": "fp32"},
                        [SourceStatus("test", total_frames=100)])
    web = WebSink(port=0, status=status, max_fps=0, max_clients=4, timeout_s=1.0)
    yield web
    web.close()
    web.close()


def get(url, headers=None, timeout=10):
    request = urllib.request.Request(url, headers=headers or {})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return response.status, response.headers["Content-Type"], response.read()


def snapshot_index(url):
    _, kind, body = get(url + "snapshot.jpg")
    assert kind == "image/jpeg"
    return decode_index(cv2.imdecode(np.frombuffer(body, np.uint8), cv2.IMREAD_COLOR))


def test_snapshot_is_always_the_newest_frame_without_a_stream_client(sink):
    for index in (3, 4, 9):
        sink.write(draw_pattern(index, *SIZE), index)
        assert snapshot_index(sink.url) == index
        assert sink.clients == 0


def test_page_and_stats(sink):
    status, kind, body = get(sink.url)
    assert status == 200 and kind.startswith("text/html") and b"<title>jetcam_app live" in body
    assert b"stream.mjpg" in body and b"stats.json" in body
    stats = json.loads(get(sink.url + "stats.json")[2])
    assert stats["model"] == "nanodet" and stats["processed"] == 0 and stats["fps"] is None
    sink.status.publish(0, HudInfo(fps=12.5, stage_ms={"infer": 20.0}, realtime_ok=True, dropped=2), 7, 6, 9)
    stats = json.loads(get(sink.url + "stats.json")[2])
    assert (stats["processed"], stats["fps"], stats["dropped"], stats["realtime"]) == (7, 12.5, 2, True)
    assert stats["stage_ms"] == {"infer": 20.0} and stats["total_frames"] == 100
    with pytest.raises(urllib.error.HTTPError) as e:
        get(sink.url + "nothing")
    assert e.value.code == 404


def test_stream_sends_new_frames(sink):
    sink.write(draw_pattern(1, *SIZE), 1)
    response = urllib.request.urlopen(sink.url + "stream.mjpg", timeout=10)
    assert response.headers["Content-Type"] == "multipart/x-mixed-replace; boundary=%s" % BOUNDARY
    seen = []

    def read_part():
        assert response.readline().strip() == ("--%s" % BOUNDARY).encode()
        headers = {}
        while True:
            line = response.readline().strip()
            if not line:
                break
            key, _, value = line.decode().partition(":")
            headers[key.lower()] = value.strip()
        body = response.read(int(headers["content-length"]))
        response.readline()
        return decode_index(cv2.imdecode(np.frombuffer(body, np.uint8), cv2.IMREAD_COLOR))

    seen.append(read_part())
    for index in range(2, 60):  # keep producing until the stream has shown a newer frame
        sink.write(draw_pattern(index, *SIZE), index)
        if index == 3:
            seen.append(read_part())
            break
    response.close()
    assert seen[0] >= 1 and seen[1] > seen[0]


def test_token_is_required_on_every_request():
    web = WebSink(port=0, token="s3cret", max_fps=0)
    try:
        web.write(draw_pattern(1, *SIZE), 1)
        for path in ("", "stats.json", "snapshot.jpg", "stream.mjpg"):
            with pytest.raises(urllib.error.HTTPError) as e:
                get(web.url + path)
            assert e.value.code == 401
        with pytest.raises(urllib.error.HTTPError):
            get(web.url + "stats.json?token=wrong")
        assert get(web.url + "stats.json?token=s3cret")[0] == 200
        assert get(web.url + "snapshot.jpg", {"X-Jetcam-Token": "s3cret"})[0] == 200
        assert get(web.url + "?token=s3cret")[0] == 200
    finally:
        web.close()


def test_other_addresses_log_a_warning(caplog):
    with caplog.at_level(logging.WARNING):
        web = WebSink(port=0, host="0.0.0.0")
        web.close()
    assert "anyone who can reach this machine" in caplog.text and "--http-token" in caplog.text


def wait_threads(at_most, timeout_s=20.0):
    deadline = time.monotonic() + timeout_s
    while threading.active_count() > at_most and time.monotonic() < deadline:
        time.sleep(0.1)
    return threading.active_count()


def test_clients_beyond_the_bound_get_503_at_once():
    """200 connections that never send a request: 4 hold a thread (the bound), the other 196 are answered 503 at
    once; when the clients go, so do the threads, and the server answers again."""
    web = WebSink(port=0, max_fps=0, max_clients=4, timeout_s=60.0)  # no timeout during the count
    before = threading.active_count()
    idle = [socket.create_connection((web.host, web.port), timeout=30) for _ in range(200)]
    try:
        refused = sum(conn.recv(64).startswith(b"HTTP/1.0 503") for conn in idle[4:])
        assert refused == 196
        assert threading.active_count() <= before + 4
    finally:
        for conn in idle:
            conn.close()
    try:
        assert wait_threads(before) <= before
        web.write(draw_pattern(5, *SIZE), 5)
        assert snapshot_index(web.url) == 5
    finally:
        web.close()


def test_idle_connections_time_out(sink):
    """Connections that send nothing are closed by the server after its socket timeout (1 s here)."""
    before = threading.active_count()
    idle = [socket.create_connection((sink.host, sink.port), timeout=30) for _ in range(4)]
    try:
        assert [conn.recv(64) for conn in idle] == [b""] * 4  # closed by the server, not by us
        assert wait_threads(before) <= before
    finally:
        for conn in idle:
            conn.close()


def test_a_stalled_viewer_never_blocks_write(sink):
    """A viewer that opens the stream and never reads: write() keeps returning; the viewer is let go after the
    socket timeout, and the stream count goes back to zero."""
    stalled = socket.create_connection((sink.host, sink.port), timeout=10)
    stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    stalled.sendall(b"GET /stream.mjpg HTTP/1.0\r\n\r\n")
    big = np.random.default_rng(0).integers(0, 255, (720, 1280, 3), dtype=np.uint8)  # ~1 MB JPEGs
    done = threading.Event()

    def produce():
        for i in range(300):
            sink.write(big, i)
            time.sleep(0.005)
        done.set()

    producer = threading.Thread(target=produce)
    producer.start()
    producer.join(120)
    assert done.is_set()
    deadline = time.monotonic() + 15
    while sink.clients and time.monotonic() < deadline:
        sink.write(big, 0)
        time.sleep(0.1)
    stalled.close()
    assert sink.clients == 0
