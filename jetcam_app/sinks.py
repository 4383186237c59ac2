"""Where annotated frames go: an OpenCV window, an mp4 written on its own thread, MJPEG over HTTP, nothing, or several."""
from __future__ import annotations

import logging
import os
import queue
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer
from socketserver import ThreadingMixIn
from typing import Any, List, Optional, Sequence, Tuple

import cv2
import numpy as np

from .errors import OutputError

log = logging.getLogger(__name__)


class Sink:
    """write(image_bgr, frame_index); close() is idempotent; stop_requested turns True when the user asks to quit."""

    def write(self, image_bgr: np.ndarray, frame_index: int) -> None:
        raise NotImplementedError

    def close(self) -> None:
        pass

    @property
    def stop_requested(self) -> bool:
        return False

    def __enter__(self) -> "Sink":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class NullSink(Sink):
    def write(self, image_bgr: np.ndarray, frame_index: int) -> None:
        pass


def _gui_backend() -> Optional[str]:
    """The GUI toolkit OpenCV was built with, or None for opencv-python-headless and similar builds."""
    info = cv2.getBuildInformation()
    section = info.split("GUI:", 1)
    if len(section) < 2:
        return None
    first = section[1].strip().splitlines()[0].strip()
    if first.upper() in ("", "NONE", "NO"):
        return None
    return first


def display_reason() -> Optional[str]:
    """None when a window can be shown here, else why not (in one line, with the fix)."""
    if _gui_backend() is None:
        return "this OpenCV has no GUI backend (opencv-python-headless?); use --headless or --record"
    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        return "no display (DISPLAY and WAYLAND_DISPLAY are unset); use --headless, or export DISPLAY=:0 on the Jetson's desktop"
    return None


def display_available() -> bool:
    return display_reason() is None


class DisplaySink(Sink):
    """cv2.imshow + waitKey(1) on the calling (main) thread; 'q', Esc or closing the window requests a stop."""

    QUIT_KEYS = (ord("q"), ord("Q"), 27)

    def __init__(self, title: str = "jetcam"):
        reason = display_reason()
        if reason is not None:
            # Checked here: Qt aborts the whole process when it cannot reach a display.
            raise OutputError("cannot open a window: %s" % reason)
        self.title = title
        self._stop = False
        self._opened = False
        self._closed = False

    def write(self, image_bgr: np.ndarray, frame_index: int) -> None:
        if self._closed:
            return
        if not self._opened:
            cv2.namedWindow(self.title, cv2.WINDOW_NORMAL)
            cv2.resizeWindow(self.title, image_bgr.shape[1], image_bgr.shape[0])
            self._opened = True
        elif cv2.getWindowProperty(self.title, cv2.WND_PROP_VISIBLE) < 1:
            self._stop = True  # the user closed the window
            return
        cv2.imshow(self.title, image_bgr)
        if (cv2.waitKey(1) & 0xFF) in self.QUIT_KEYS:
            self._stop = True

    @property
    def stop_requested(self) -> bool:
        return self._stop

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._opened:
            try:
                cv2.destroyWindow(self.title)
                cv2.waitKey(1)  # lets the GUI loop process the destroy
            except cv2.error as e:
                log.debug("window already gone: %s", e)


_SENTINEL = object()


class VideoFileSink(Sink):
    """An mp4 (mp4v) written by its own thread through a bounded queue. Lossless: write() waits for room,
    re-checking the closed flag; close() drains the queue and releases the writer so the file always plays.

    Frames of another size are resized to `frame_size` (cv2.VideoWriter would silently drop them).
    `copy=True` queues a copy, so the caller may keep drawing on or reusing its array."""

    def __init__(self, path: str, fps: float, frame_size: Tuple[int, int], queue_size: int = 32,
                 fourcc: str = "mp4v", copy: bool = True, stall_timeout_s: float = 10.0):
        self.path = path
        self.frame_size = (int(frame_size[0]), int(frame_size[1]))
        self.fps = float(fps) if fps and fps > 0 else 30.0
        self.copy = copy
        self.stall_timeout_s = stall_timeout_s
        self.frames_written = 0
        self.frames_resized = 0
        self.error = None  # type: Optional[BaseException]
        self._error_reported = False
        self._closed = False
        self._close_lock = threading.Lock()
        self._queue = queue.Queue(maxsize=max(1, queue_size))  # type: queue.Queue
        folder = os.path.dirname(os.path.abspath(path))
        try:
            os.makedirs(folder, exist_ok=True)
            with open(path, "wb"):
                pass  # OpenCV's own failure says nothing about why; this gives errno
        except OSError as e:
            raise OutputError("cannot write the video %s (%s); choose a writable path for --record / --save-input"
                              % (path, e.strerror or e)) from e
        self._writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*fourcc), self.fps, self.frame_size)
        if not self._writer.isOpened():
            os.remove(path)
            raise OutputError("OpenCV cannot encode %s with %s at %dx%d; use a .mp4 path, or an OpenCV built with FFmpeg"
                              % (path, fourcc, self.frame_size[0], self.frame_size[1]))
        self._thread = threading.Thread(target=self._run, name="video-writer", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            while True:
                try:
                    item = self._queue.get(timeout=0.2)
                except queue.Empty:
                    if self._closed:  # close() could not enqueue the sentinel; nothing more can come
                        return
                    continue
                if item is _SENTINEL:
                    return
                image = item
                if (image.shape[1], image.shape[0]) != self.frame_size:
                    image = cv2.resize(image, self.frame_size, interpolation=cv2.INTER_AREA)
                    self.frames_resized += 1
                self._writer.write(image)
                self.frames_written += 1
        except BaseException as e:  # stored, re-raised on the caller's thread by write()/close()
            self.error = e
            # keep draining so a blocked write() or close() never waits on a dead consumer
            while True:
                try:
                    if self._queue.get(timeout=0.1) is _SENTINEL:
                        return
                except queue.Empty:
                    if self._closed:
                        return
        finally:
            self._writer.release()  # writes the mp4 index (moov atom); without it the file does not play

    def _raise_error(self) -> None:
        if self.error is not None and not self._error_reported:
            self._error_reported = True
            raise OutputError("writing %s failed: %s" % (self.path, self.error)) from self.error

    def write(self, image_bgr: np.ndarray, frame_index: int = -1) -> bool:
        """Queue one frame; False if the sink was closed meanwhile. Raises OutputError if the writer died
        or made no progress for stall_timeout_s (a full disk or a hung filesystem)."""
        self._raise_error()
        if self._closed:
            return False
        if image_bgr.ndim != 3 or image_bgr.shape[2] != 3 or image_bgr.dtype != np.uint8:
            raise OutputError("video sink %s expects HxWx3 uint8 BGR frames, got %s %s"
                              % (self.path, image_bgr.shape, image_bgr.dtype))
        item = image_bgr.copy() if self.copy else image_bgr
        deadline = time.monotonic() + self.stall_timeout_s
        while True:
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                self._raise_error()
                if self._closed:
                    return False
                if time.monotonic() > deadline:
                    raise OutputError("the video writer for %s made no progress for %.0f s (disk full or slow?)"
                                      % (self.path, self.stall_timeout_s))

    def close(self, timeout_s: float = 60.0) -> None:
        """Drain, release and join; idempotent. Raises OutputError once if the writer thread failed."""
        with self._close_lock:
            if self._closed:
                return
            self._closed = True
        deadline = time.monotonic() + timeout_s
        while self._thread.is_alive():
            try:
                self._queue.put(_SENTINEL, timeout=0.1)
                break
            except queue.Full:
                if time.monotonic() > deadline:
                    break
        self._thread.join(max(0.1, deadline - time.monotonic()))
        if self._thread.is_alive():
            log.error("video writer for %s did not finish within %.0f s; the file may not play", self.path, timeout_s)
        self._raise_error()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()


class FanOutSink(Sink):
    """Writes to several sinks in order; stops when any asks; closes all in reverse, raising the first error."""

    def __init__(self, sinks: Sequence[Sink]):
        self.sinks = list(sinks)

    def write(self, image_bgr: np.ndarray, frame_index: int) -> None:
        for sink in self.sinks:
            sink.write(image_bgr, frame_index)

    @property
    def stop_requested(self) -> bool:
        return any(sink.stop_requested for sink in self.sinks)

    def close(self) -> None:
        first = None  # type: Optional[BaseException]
        for sink in reversed(self.sinks):
            try:
                sink.close()
            except Exception as e:  # every sink must get its close(); the first failure is re-raised after
                if first is None:
                    first = e
                else:
                    log.error("closing %s also failed: %s", type(sink).__name__, e)
        if first is not None:
            raise first


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


def build_sinks(sinks: List[Sink]) -> Sink:
    """One sink for the pipeline: NullSink for none, the sink itself for one, a FanOutSink for several."""
    if not sinks:
        return NullSink()
    if len(sinks) == 1:
        return sinks[0]
    return FanOutSink(sinks)
