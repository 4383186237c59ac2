"""The latest annotated frame as MJPEG over HTTP, with a snapshot URL."""
from __future__ import annotations

import logging
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from socketserver import ThreadingMixIn
from typing import Any, Optional, Tuple

import cv2
import numpy as np

from ...errors import OutputError
from .base import Sink

log = logging.getLogger(__name__)

class _ThreadingHTTPServer(ThreadingMixIn, HTTPServer):
    daemon_threads = True
    allow_reuse_address = True


class MjpegHttpSink(Sink):
    """Latest frame as MJPEG on http://host:port/ (multipart stream) and /snapshot.jpg; 127.0.0.1 by default.
    JPEG encoding happens in write() only while a client is connected, so an unwatched stream costs nothing."""

    BOUNDARY = "jetcamframe"

    def __init__(self, port: int = 8080, host: str = "127.0.0.1", quality: int = 80):
        self.quality = int(quality)
        self._cond = threading.Condition()
        self._jpeg = None  # type: Optional[bytes]
        self._seq = 0
        self._clients = 0
        self._closed = False
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, fmt: str, *args: Any) -> None:
                log.debug("mjpeg: " + fmt, *args)

            def do_GET(self) -> None:
                if self.path.startswith("/snapshot"):
                    sink._serve_snapshot(self)
                elif self.path in ("/", "/stream", "/stream.mjpg"):
                    sink._serve_stream(self)
                else:
                    self.send_error(404)

        try:
            self._server = _ThreadingHTTPServer((host, int(port)), Handler)
        except OSError as e:
            raise OutputError("cannot serve MJPEG on %s:%s (%s); choose another port" % (host, port, e.strerror or e)) from e
        self.host, self.port = self._server.server_address[:2]
        self.url = "http://%s:%d/" % (self.host, self.port)
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.2},
                                        name="mjpeg-http", daemon=True)
        self._thread.start()

    def write(self, image_bgr: np.ndarray, frame_index: int) -> None:
        if self._closed or self._clients == 0:
            return
        ok, buf = cv2.imencode(".jpg", image_bgr, [cv2.IMWRITE_JPEG_QUALITY, self.quality])
        if not ok:
            raise OutputError("JPEG encoding failed for the MJPEG stream (frame %d)" % frame_index)
        with self._cond:
            self._jpeg = buf.tobytes()
            self._seq += 1
            self._cond.notify_all()

    def _wait_frame(self, after_seq: int) -> Tuple[Optional[bytes], int]:
        with self._cond:
            self._cond.wait_for(lambda: self._closed or self._seq > after_seq, timeout=1.0)
            return (None if self._closed else self._jpeg), self._seq

    def _serve_snapshot(self, handler: BaseHTTPRequestHandler) -> None:
        with self._cond:
            self._clients += 1
        try:
            jpeg, _ = self._wait_frame(0)
        finally:
            with self._cond:
                self._clients -= 1
        if jpeg is None:
            handler.send_error(503, "no frame yet")
            return
        handler.send_response(200)
        handler.send_header("Content-Type", "image/jpeg")
        handler.send_header("Content-Length", str(len(jpeg)))
        handler.end_headers()
        handler.wfile.write(jpeg)

    def _serve_stream(self, handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(200)
        handler.send_header("Content-Type", "multipart/x-mixed-replace; boundary=%s" % self.BOUNDARY)
        handler.send_header("Cache-Control", "no-cache")
        handler.end_headers()
        with self._cond:
            self._clients += 1
        seq = 0
        try:
            while not self._closed:
                jpeg, new_seq = self._wait_frame(seq)
                if jpeg is None or new_seq == seq:
                    continue
                seq = new_seq
                handler.wfile.write(("--%s\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n"
                                     % (self.BOUNDARY, len(jpeg))).encode("ascii"))
                handler.wfile.write(jpeg)
                handler.wfile.write(b"\r\n")
        except (BrokenPipeError, ConnectionResetError):
            log.debug("mjpeg client went away")
        finally:
            with self._cond:
                self._clients -= 1

    @property
    def clients(self) -> int:
        return self._clients

    def close(self) -> None:
        if self._closed:
            return
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(2.0)
