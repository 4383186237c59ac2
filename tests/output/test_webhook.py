"""Webhook output against a real HTTP server on 127.0.0.1: events arrive in order as JSON with the headers, the
filter holds, transient failures (5xx, a slow answer, a server that is down) are retried or dropped and counted,
a refusal is given up at once, and no token reaches the log; the config accepts URLs and mappings."""

import json
import logging
import socket
import socketserver
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from jetcam_app.config import load_config
from jetcam_app.errors import ConfigError
from jetcam_app.notify_config import WebhookSpec
from jetcam_app.output.notify.webhook import WebhookOutput

TOKEN = "Bearer s3cret-webhook-token"


class ThreadingHTTPServer(socketserver.ThreadingMixIn, HTTPServer):  # http.server's own is Python 3.7+
    daemon_threads = True


def crossing(i, kind="line_crossed"):
    return {"event": kind, "line": "door", "direction": "in", "track_id": i, "label": "person", "frame": 12 + i,
            "t_s": 0.4 + i, "in_total": i + 1, "out_total": 0, "source": "cam0"}


@pytest.fixture(autouse=True)
def no_proxy(monkeypatch):
    # a proxy in the environment would take the requests to 127.0.0.1 elsewhere
    for name in ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)


class Server:
    """Records each request (path, headers, body) and answers with the next of `answers`: a status, or
    ("sleep", seconds) to answer 200 late; 200 once they run out."""

    def __init__(self, answers=()):
        self.requests = []
        self.answers = list(answers)
        self.lock = threading.Lock()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with owner.lock:
                    owner.requests.append((self.path, dict(self.headers), body))
                    answer = owner.answers.pop(0) if owner.answers else 200
                if isinstance(answer, tuple):
                    time.sleep(answer[1])
                    answer = 200
                self.send_response(answer)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.handle_error = lambda request, address: None  # the late answer to a client that gave up
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def url(self, path="/hook"):
        return "http://127.0.0.1:%d%s" % (self.httpd.server_address[1], path)

    def bodies(self):
        with self.lock:
            return [json.loads(body.decode("utf-8")) for _, _, body in self.requests]

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server_factory():
    servers = []

    def make(answers=()):
        servers.append(Server(answers))
        return servers[-1]

    yield make
    for server in servers:
        server.stop()


def test_delivers_in_order_with_headers_and_filter(server_factory, monkeypatch):
    monkeypatch.setenv("JETCAM_TEST_WEBHOOK_TOKEN", TOKEN)
    server = server_factory()
    spec = WebhookSpec(url="http://jetcam@" + server.url("/hook?key=abc")[len("http://"):],
                       events=("line_crossed", "zone_entered"),
                       headers=(("Authorization", "${JETCAM_TEST_WEBHOOK_TOKEN}"), ("X-Site", "north")))
    out = WebhookOutput(spec)
    sent = []
    for i in range(10):
        event = crossing(i, ("line_crossed", "track_started", "zone_entered", "loitering")[i % 4])
        out.event(event)
        if event["event"] in spec.events:
            sent.append(event)
    out.close(timeout_s=5.0)
    assert server.bodies() == sent
    for path, headers, _ in server.requests:
        assert path == "/hook?key=abc"
        assert headers["Content-Type"] == "application/json"
        assert headers["User-Agent"].startswith("jetcam_app")
        assert headers["Authorization"] == TOKEN and headers["X-Site"] == "north"
    assert out.summary() == {"url": server.url("/hook"), "published": len(sent), "dropped": 0, "failed": 0,
                             "retries": 0}


def test_server_errors_are_retried_until_it_recovers(server_factory, caplog):
    server = server_factory([500, 503])
    out = WebhookOutput(WebhookSpec(url=server.url()))
    with caplog.at_level(logging.INFO, logger="jetcam_app.output.notify"):
        out.event(crossing(1))
        out.close(timeout_s=4.0)
    assert server.bodies() == [crossing(1)] * 3
    summary = out.summary()
    assert (summary["published"], summary["failed"], summary["retries"]) == (1, 0, 2)
    messages = [r.getMessage() for r in caplog.records]
    assert sum("not reachable (HTTP 500)" in m for m in messages) == 1, messages  # one line per outage
    assert sum("reachable again" in m for m in messages) == 1, messages
    assert len(messages) == 2, messages


def test_slow_server_is_retried_and_delivered(server_factory):
    server = server_factory([("sleep", 1.0)])
    out = WebhookOutput(WebhookSpec(url=server.url(), timeout_s=0.3))
    out.event(crossing(1))
    out.close(timeout_s=4.0)
    # the first request got there but its answer came too late: sent again (webhooks are at least once)
    assert server.bodies() == [crossing(1)] * 2
    summary = out.summary()
    assert (summary["published"], summary["failed"], summary["retries"]) == (1, 0, 1)


def test_server_down_drops_and_counts_without_blocking():
    with socket.socket() as unused:  # bound, never listening: connections are refused and nobody else takes it
        unused.bind(("127.0.0.1", 0))
        out = WebhookOutput(WebhookSpec(url="http://127.0.0.1:%d/hook" % unused.getsockname()[1], queue_size=5))
        for i in range(20):
            out.event(crossing(i))  # never raises, never waits for the server
        out.close(timeout_s=0.5)
    summary = out.summary()
    assert summary["published"] == 0
    assert summary["dropped"] >= 15
    assert summary["dropped"] + summary["failed"] == 20


def test_refusal_is_given_up_at_once_and_no_token_is_logged(server_factory, monkeypatch, caplog):
    monkeypatch.setenv("JETCAM_TEST_WEBHOOK_TOKEN", TOKEN)
    server = server_factory([404, 404])
    out = WebhookOutput(WebhookSpec(url=server.url("/missing?key=query-secret"),
                                    headers=(("Authorization", "${JETCAM_TEST_WEBHOOK_TOKEN}"),)))
    with caplog.at_level(logging.DEBUG):
        out.event(crossing(1))
        out.event(crossing(2))
        out.close(timeout_s=2.0)
    assert len(server.requests) == 2  # once each, not retried
    summary = out.summary()
    assert (summary["published"], summary["failed"], summary["retries"]) == (0, 2, 0)
    warnings = [r.getMessage() for r in caplog.records if "HTTP 404" in r.getMessage()]
    assert len(warnings) == 1 and server.url("/missing") in warnings[0], warnings  # one per status
    assert "s3cret" not in caplog.text and "query-secret" not in caplog.text


def test_config_accepts_urls_and_mappings():
    config = load_config(overrides={"output.webhooks": [
        "http://localhost:8123/api/webhook/jetcam",
        {"url": "https://hooks.example.com/x", "events": ["line_crossed", "loitering"], "timeout_s": 2,
         "headers": {"Authorization": "${JETCAM_WEBHOOK_TOKEN}"}, "retries": 1, "queue_size": 10}]})
    plain, mapped = config.output.webhooks
    assert plain == WebhookSpec(url="http://localhost:8123/api/webhook/jetcam")
    assert mapped.events == ("line_crossed", "loitering") and mapped.timeout_s == 2.0
    assert mapped.headers == (("Authorization", "${JETCAM_WEBHOOK_TOKEN}"),)
    assert (mapped.retries, mapped.queue_size) == (1, 10)


@pytest.mark.parametrize("entry, fix", [
    ("ftp://example.com/hook", r"must be an http:// or https:// URL; e\.g\. --webhook http://"),
    ({"url": "http://localhost/hook", "token": "x"}, r"unknown key .*token.*; valid keys: url, events"),
    ({"url": "http://localhost/hook", "events": ["line_crosed"]}, r"unknown 'line_crosed'; valid event types: "),
])
def test_config_rejects_with_the_fix(entry, fix):
    with pytest.raises(ConfigError, match=fix):
        load_config(overrides={"output.webhooks": [entry]})
