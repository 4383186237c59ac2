"""--http: the live web page at /, the MJPEG stream (/stream.mjpg), the newest frame (/snapshot.jpg) and /stats.json."""
from __future__ import annotations

import json
import logging
import os
import threading
import time
from http.server import BaseHTTPRequestHandler
from typing import Any, Optional, Tuple
from urllib.parse import urlsplit

import cv2
import numpy as np

from ...errors import OutputError
from ..http_server import LOCAL_HOSTS, BoundedHTTPServer, token_ok
from ..live_status import LiveStatus
from .base import Sink

log = logging.getLogger(__name__)
PAGE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "web", "page.html")
BOUNDARY = "jetcamframe"


class WebSink(Sink):
    """write() keeps a copy of the newest frame (at most `max_fps` times a second) and returns: JPEG encoding
    happens on a thread of its own, once per frame for every stream viewer together, and on demand for a
    snapshot. A slow or stalled viewer only holds its own connection thread, until its socket times out."""

    def __init__(self, port: int = 8080, host: str = "127.0.0.1", token: Optional[str] = None,
                 status: Optional[LiveStatus] = None, quality: int = 80, max_fps: float = 30.0,
                 max_clients: int = 32, timeout_s: float = 10.0):
        self.quality = int(quality)
        self.token = token or None
        self.status = status or LiveStatus()
        self.min_interval_s = 1.0 / max_fps if max_fps > 0 else 0.0
        self._cond = threading.Condition()
        self._raw = None  # type: Optional[np.ndarray]
        self._raw_seq = 0
        self._copied_at = -1e9
        self._jpeg = None  # type: Optional[Tuple[int, bytes]]  # (raw seq it shows, bytes)
        self._streams = 0
        self._closed = False
        with open(PAGE, "rb") as f:
            self._page = f.read()
        sink = self

        class Handler(BaseHTTPRequestHandler):
            timeout = timeout_s  # socket timeout: idle, slow and stalled clients are let go

            def log_message(self, fmt: str, *args: Any) -> None:
                log.debug("http: " + fmt, *args)

            def do_GET(self) -> None:
                sink._route(self)

        try:
            self._server = BoundedHTTPServer((host, int(port)), Handler, max_clients)
        except OSError as e:
            raise OutputError("cannot serve the web page on %s:%s (%s); choose another port with --http PORT"
                              % (host, port, e.strerror or e)) from e
        self.host, self.port = self._server.server_address[:2]
        self.url = "http://%s:%d/" % (self.host if ":" not in self.host else "[%s]" % self.host, self.port)
        if host not in LOCAL_HOSTS:
            log.warning("the web page listens on %s: anyone who can reach this machine can watch%s", host,
                        "" if self.token else " (set --http-token to require a token)")
        self._threads = [threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.2},
                                          name="http", daemon=True),
                         threading.Thread(target=self._encode_loop, name="http-encoder", daemon=True)]
        for thread in self._threads:
            thread.start()

    @property
    def clients(self) -> int:
        return self._streams

    # -- the frame path: one time check, and a copy a few dozen times a second at most
    def write(self, image_bgr: np.ndarray, frame_index: int) -> None:
        now = time.monotonic()
        if self._closed or now - self._copied_at < self.min_interval_s:
            return
        self._copied_at = now
        raw = image_bgr.copy()  # the pipeline reuses its frame buffers
        with self._cond:
            self._raw, self._raw_seq = raw, self._raw_seq + 1
            self._cond.notify_all()

    # -- encoding, off the frame path
    def _encode(self) -> Optional[Tuple[int, bytes]]:
        """The newest frame as JPEG, encoded now unless it already is."""
        with self._cond:
            raw, seq, jpeg = self._raw, self._raw_seq, self._jpeg
        if raw is None:
            return None
        if jpeg is not None and jpeg[0] == seq:
            return jpeg
        ok, buf = cv2.imencode(".jpg", raw, [cv2.IMWRITE_JPEG_QUALITY, self.quality])
        if not ok:
            log.warning("JPEG encoding failed for frame %d of the web stream", seq)
            return None
        with self._cond:
            if self._jpeg is None or self._jpeg[0] < seq:
                self._jpeg = (seq, buf.tobytes())
                self._cond.notify_all()
            return self._jpeg

    def _encode_loop(self) -> None:
        encoded = 0
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._closed or (self._streams and self._raw_seq > encoded), timeout=1.0)
                if self._closed:
                    return
                if not (self._streams and self._raw_seq > encoded):
                    continue
            done = self._encode()
            encoded = done[0] if done is not None else encoded

    # -- HTTP
    def _route(self, handler: BaseHTTPRequestHandler) -> None:
        if not token_ok(handler, self.token):
            handler.send_error(401, "this page needs its token: add ?token=... to the address")
            return
        path = urlsplit(handler.path).path
        if path in ("/", "/index.html"):
            self._send(handler, "text/html; charset=utf-8", self._page)
        elif path == "/stats.json":
            snapshot = self.status.snapshot()
            snapshot["viewers"] = self._streams
            self._send(handler, "application/json", json.dumps(snapshot, default=str).encode("utf-8"))
        elif path == "/snapshot.jpg":
            self._serve_snapshot(handler)
        elif path in ("/stream", "/stream.mjpg"):
            self._serve_stream(handler)
        else:
            handler.send_error(404, "try /, /stream.mjpg, /snapshot.jpg or /stats.json")

    @staticmethod
    def _send(handler: BaseHTTPRequestHandler, content_type: str, body: bytes) -> None:
        handler.send_response(200)
        handler.send_header("Content-Type", content_type)
        handler.send_header("Content-Length", str(len(body)))
        handler.send_header("Cache-Control", "no-store")
        handler.end_headers()
        handler.wfile.write(body)

    def _serve_snapshot(self, handler: BaseHTTPRequestHandler) -> None:
        with self._cond:  # the first frame may still be on its way
            self._cond.wait_for(lambda: self._closed or self._raw is not None, timeout=2.0)
        jpeg = None if self._closed else self._encode()
        if jpeg is None:
            handler.send_error(503, "no frame yet")
            return
        self._send(handler, "image/jpeg", jpeg[1])

    def _serve_stream(self, handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(200)
        handler.send_header("Content-Type", "multipart/x-mixed-replace; boundary=%s" % BOUNDARY)
        handler.send_header("Cache-Control", "no-store")
        handler.end_headers()
        with self._cond:
            self._streams += 1
            self._cond.notify_all()
        sent = 0
        try:
            while True:
                with self._cond:
                    self._cond.wait_for(lambda: self._closed or (self._jpeg is not None and self._jpeg[0] > sent),
                                        timeout=1.0)
                    if self._closed:
                        return
                    jpeg = self._jpeg
                if jpeg is None or jpeg[0] <= sent:
                    continue
                sent = jpeg[0]
                handler.wfile.write(("--%s\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n"
                                     % (BOUNDARY, len(jpeg[1]))).encode("ascii") + jpeg[1] + b"\r\n")
        except OSError as e:  # the viewer left, or stalled past the socket timeout
            log.debug("stream viewer gone: %s", e)
        finally:
            with self._cond:
                self._streams -= 1

    def close(self) -> None:
        if self._closed:
            return
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._server.shutdown()
        self._server.server_close()
        for thread in self._threads:
            thread.join(2.0)
