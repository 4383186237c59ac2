"""--http: the live web page at /, the MJPEG stream (/stream.mjpg), the newest frame (/snapshot.jpg) and /stats.json;
with several sources each one's own at /sources/<name>/stream.mjpg and /sources/<name>/snapshot.jpg. H.264: MSE at
/stream.mp4, WebRTC by POSTing an SDP offer to /whep (WHEP-style; /sources/<name>/whep for a source's own)."""

import json
import logging
import os
import threading
import time
from http.server import BaseHTTPRequestHandler
from typing import Any, Dict, Optional, Sequence, Tuple
from urllib.parse import unquote, urlsplit

import cv2
import numpy as np

from ...errors import MASK, OutputError, mask_secrets
from ..http_server import LOCAL_HOSTS, TOKEN_ENV, BoundedHTTPServer, token_ok
from ..live_status import LiveStatus
from ..video.fmp4 import VideoSettings
from ..video.live import LiveEncoder
from ..video.web_live import serve_mse
from ..video.webrtc import WebRtcError, WebRtcServer
from .base import Sink

log = logging.getLogger(__name__)
PAGE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "web", "page.html")
BOUNDARY = "jetcamframe"
UNWATCHED_INTERVAL_S = 1.0  # a source's own picture is copied this often while nobody streams it (its snapshot)
MAX_OFFER_BYTES = 65536


class _Picture:
    """One picture the page serves (the main one, or a source's): its newest frame, that frame's JPEG once encoded,
    and its stream viewers. Guarded by the sink's condition."""

    def __init__(self, min_interval_s: float, unwatched_interval_s: float, live: LiveEncoder):
        self.live = live  # its H.264 encoder for the MSE view, running only while someone watches
        self.min_interval_s = min_interval_s
        self.unwatched_interval_s = unwatched_interval_s
        self.raw = None  # type: Optional[np.ndarray]
        self.raw_seq = 0
        self.copied_at = -1e9
        self.jpeg = None  # type: Optional[Tuple[int, bytes]]  # (raw seq it shows, bytes)
        self.streams = 0
        self.encoded = 0  # the raw seq the encoder last handled


class _SourceSink(Sink):
    """A source's own picture on the page, as a Sink for that source's frames; the WebSink closes the server."""

    def __init__(self, web: "WebSink", name: str):
        self._web, self._picture = web, web._pictures[name]

    def write(self, image_bgr: np.ndarray, frame_index: int) -> None:
        self._web._keep(self._picture, image_bgr, frame_index)


class WebSink(Sink):
    """write() keeps a copy of the newest frame (at most `max_fps` times a second) and returns: JPEG encoding
    happens on a thread of its own, once per frame for every stream viewer together, and on demand for a
    snapshot. A slow or stalled viewer only holds its own connection thread, until its socket times out."""

    def __init__(self, port: int = 8080, host: str = "127.0.0.1", token: Optional[str] = None,
                 status: Optional[LiveStatus] = None, quality: int = 80, max_fps: float = 30.0,
                 max_clients: int = 32, timeout_s: float = 10.0, sources: Sequence[str] = (),
                 video: Optional[VideoSettings] = None, encoders: Optional[Dict[str, LiveEncoder]] = None):
        self.quality = int(quality)
        self.token = token or None
        self.status = status or LiveStatus()
        self.min_interval_s = 1.0 / max_fps if max_fps > 0 else 0.0
        self._cond = threading.Condition()
        # The run's live encoders (output/video/outputs.py: shared with RTSP, fed by their own sinks), or, standing
        # alone, encoders of its own that write() feeds.
        self._own_encoders = encoders is None
        if encoders is None:
            bitrate, fps = (video or VideoSettings()).bitrate, (max_fps if max_fps > 0 else 30.0)
            encoders = {name: LiveEncoder(name, fps, bitrate) for name in ["main"] + list(sources)}
        self._main = _Picture(self.min_interval_s, self.min_interval_s, encoders["main"])
        self._pictures = {name: _Picture(self.min_interval_s, max(self.min_interval_s, UNWATCHED_INTERVAL_S),
                                         encoders[name])
                          for name in sources}  # type: Dict[str, _Picture]
        self._closed = False
        self._webrtc = None  # type: Optional[WebRtcServer]  # started by the first WebRTC offer
        with open(PAGE, "rb") as f:
            self._page = f.read()
        sink = self

        class Handler(BaseHTTPRequestHandler):
            timeout = timeout_s  # socket timeout: idle, slow and stalled clients are let go

            def log_message(self, fmt: str, *args: Any) -> None:
                # request lines carry ?token=...: --debug must not write the token to a log or a terminal
                line = mask_secrets(fmt % args)
                log.debug("http: %s", line.replace(sink.token, MASK) if sink.token else line)

            def do_GET(self) -> None:
                sink._route(self)

            def do_POST(self) -> None:
                sink._route_post(self)

        try:
            self._server = BoundedHTTPServer((host, int(port)), Handler, max_clients)
        except OSError as e:
            raise OutputError("cannot serve the web page on %s:%s (%s); choose another port with --http PORT"
                              % (host, port, e.strerror or e)) from e
        self.host, self.port = self._server.server_address[:2]
        self.url = "http://%s:%d/" % (self.host if ":" not in self.host else "[%s]" % self.host, self.port)
        if host not in LOCAL_HOSTS:
            log.warning("the web page listens on %s: anyone who can reach this machine can watch%s", host,
                        "" if self.token else " (set $%s or --http-token-file to require a token)" % TOKEN_ENV)
        self._threads = [threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.2},
                                          name="http", daemon=True),
                         threading.Thread(target=self._encode_loop, name="http-encoder", daemon=True)]
        for thread in self._threads:
            thread.start()

    @property
    def clients(self) -> int:
        pictures = [self._main] + list(self._pictures.values())
        return sum(p.streams + p.live.viewers for p in pictures)

    def source_sink(self, name: str) -> Sink:
        """The sink for the frames of the source `name` (one of `sources`): its own stream and snapshot."""
        return _SourceSink(self, name)

    # -- the frame path: one time check, and a copy a few dozen times a second at most
    def write(self, image_bgr: np.ndarray, frame_index: int) -> None:
        self._keep(self._main, image_bgr, frame_index)

    def _keep(self, picture: _Picture, image_bgr: np.ndarray, frame_index: int = -1) -> None:
        if self._own_encoders:
            picture.live.offer(image_bgr, frame_index)  # returns at once; nothing at all while no H.264 viewer watches
        now = time.monotonic()
        interval_s = picture.min_interval_s if picture.streams else picture.unwatched_interval_s
        if self._closed or now - picture.copied_at < interval_s:
            return
        picture.copied_at = now
        raw = image_bgr.copy()  # the pipeline reuses its frame buffers
        with self._cond:
            picture.raw, picture.raw_seq = raw, picture.raw_seq + 1
            self._cond.notify_all()

    # -- encoding, off the frame path
    def _encode(self, picture: _Picture) -> Optional[Tuple[int, bytes]]:
        """The picture's newest frame as JPEG, encoded now unless it already is."""
        with self._cond:
            raw, seq, jpeg = picture.raw, picture.raw_seq, picture.jpeg
        if raw is None:
            return None
        if jpeg is not None and jpeg[0] == seq:
            return jpeg
        ok, buf = cv2.imencode(".jpg", raw, [cv2.IMWRITE_JPEG_QUALITY, self.quality])
        if not ok:
            log.warning("JPEG encoding failed for frame %d of the web stream", seq)
            return None
        with self._cond:
            if picture.jpeg is None or picture.jpeg[0] < seq:
                picture.jpeg = (seq, buf.tobytes())
                self._cond.notify_all()
            return picture.jpeg

    def _due(self):
        """The watched pictures with a frame not yet encoded."""
        return [p for p in [self._main] + list(self._pictures.values()) if p.streams and p.raw_seq > p.encoded]

    def _encode_loop(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._closed or self._due(), timeout=1.0)
                if self._closed:
                    return
                due = self._due()
            for picture in due:
                done = self._encode(picture)
                picture.encoded = done[0] if done is not None else picture.encoded

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
            snapshot["viewers"] = self.clients
            snapshot["h264"] = dict([("main", self._main.live.stats())] +
                                    [(name, p.live.stats()) for name, p in self._pictures.items()])
            self._send(handler, "application/json", json.dumps(snapshot, default=str).encode("utf-8"))
        else:
            picture, what = self._picture_of(path)
            if picture is not None and what == "/snapshot.jpg":
                self._serve_snapshot(handler, picture)
            elif picture is not None and what in ("/stream", "/stream.mjpg"):
                self._serve_stream(handler, picture)
            elif picture is not None and what == "/stream.mp4":
                serve_mse(handler, picture.live, lambda: self._closed)
            else:
                handler.send_error(404, "try /, /stream.mjpg, /stream.mp4, /snapshot.jpg, /stats.json%s"
                                   % (" or /sources/NAME/stream.mjpg" if self._pictures else ""))

    def _picture_of(self, path: str) -> Tuple[Optional[_Picture], str]:
        """The picture a path names and what of it: /x -> (main, /x); /sources/NAME/x -> (NAME's or None, /x)."""
        if not path.startswith("/sources/"):
            return self._main, path
        name, _, what = unquote(path[len("/sources/"):]).partition("/")
        return self._pictures.get(name), "/" + what

    def _route_post(self, handler: BaseHTTPRequestHandler) -> None:
        """POST whep: an SDP offer in, 201 with the SDP answer out (WebRTC; webrtc.py)."""
        if not token_ok(handler, self.token):
            handler.send_error(401, "this page needs its token: add ?token=... to the address")
            return
        picture, what = self._picture_of(urlsplit(handler.path).path)
        if picture is None or what != "/whep":
            handler.send_error(404, "POST an SDP offer to /whep%s"
                               % (" or /sources/NAME/whep" if self._pictures else ""))
            return
        length = handler.headers.get("Content-Length", "").strip()
        length = int(length) if length.isdigit() else 0
        if handler.headers.get_content_type() != "application/sdp" or not 0 < length <= MAX_OFFER_BYTES:
            handler.send_error(415, "POST an SDP offer (Content-Type: application/sdp, at most %d bytes)"
                               % MAX_OFFER_BYTES)
            return
        offer = handler.rfile.read(length).decode("utf-8", "replace")
        with self._cond:
            if self._webrtc is None and not self._closed:
                self._webrtc = WebRtcServer()
            webrtc = self._webrtc
        try:
            if webrtc is None:
                raise WebRtcError(503, "the server is closing")
            answer = webrtc.answer(offer, picture.live).encode("utf-8")
        except WebRtcError as e:
            handler.send_error(e.status, str(e))
            return
        handler.send_response(201)
        handler.send_header("Content-Type", "application/sdp")
        handler.send_header("Content-Length", str(len(answer)))
        handler.send_header("Cache-Control", "no-store")
        handler.end_headers()
        handler.wfile.write(answer)

    @staticmethod
    def _send(handler: BaseHTTPRequestHandler, content_type: str, body: bytes) -> None:
        handler.send_response(200)
        handler.send_header("Content-Type", content_type)
        handler.send_header("Content-Length", str(len(body)))
        handler.send_header("Cache-Control", "no-store")
        handler.end_headers()
        handler.wfile.write(body)

    def _serve_snapshot(self, handler: BaseHTTPRequestHandler, picture: _Picture) -> None:
        with self._cond:  # the first frame may still be on its way
            self._cond.wait_for(lambda: self._closed or picture.raw is not None, timeout=2.0)
        jpeg = None if self._closed else self._encode(picture)
        if jpeg is None:
            handler.send_error(503, "no frame yet")
            return
        self._send(handler, "image/jpeg", jpeg[1])

    def _serve_stream(self, handler: BaseHTTPRequestHandler, picture: _Picture) -> None:
        handler.send_response(200)
        handler.send_header("Content-Type", "multipart/x-mixed-replace; boundary=%s" % BOUNDARY)
        handler.send_header("Cache-Control", "no-store")
        handler.end_headers()
        with self._cond:
            picture.streams += 1
            self._cond.notify_all()
        sent = 0
        try:
            while True:
                with self._cond:
                    self._cond.wait_for(lambda: self._closed or (picture.jpeg is not None and picture.jpeg[0] > sent),
                                        timeout=1.0)
                    if self._closed:
                        return
                    jpeg = picture.jpeg
                if jpeg is None or jpeg[0] <= sent:
                    continue
                sent = jpeg[0]
                handler.wfile.write(("--%s\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n"
                                     % (BOUNDARY, len(jpeg[1]))).encode("ascii") + jpeg[1] + b"\r\n")
        except OSError as e:  # the viewer left, or stalled past the socket timeout
            log.debug("stream viewer gone: %s", e)
        finally:
            with self._cond:
                picture.streams -= 1

    def close(self) -> None:
        if self._closed:
            return
        with self._cond:
            self._closed = True
            self._cond.notify_all()
            webrtc = self._webrtc
        if webrtc is not None:
            webrtc.close()
        if self._own_encoders:
            for picture in [self._main] + list(self._pictures.values()):
                picture.live.close()
        self._server.shutdown()
        self._server.server_close()
        for thread in self._threads:
            thread.join(2.0)
