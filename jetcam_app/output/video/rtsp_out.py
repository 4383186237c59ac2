"""RTSP out (--rtsp-out PORT): the run's annotated H.264 served as rtsp://HOST:PORT/live (one source, or the mosaic of
several) and rtsp://HOST:PORT/NAME (each of several sources), for VLC, ffplay, NVRs and anything that reads a camera.
GStreamer's gst-rtsp-server does the RTSP and RTP work; it packetises the run's live encoders (live.py) and never
encodes again, so a picture is encoded once however many outputs watch it. Each mount is shared: every client of a
mount gets the same feed from one subscription, which exists only while someone watches (so the encoder stops when
nobody does). A feeder thread per watched mount moves units into the media's appsrc; appsrc queues are bounded and
never block, so a slow client or server never slows the pipeline."""

import logging
import threading
from typing import Dict, List, Sequence  # noqa: F401 - List in type comments

from ...errors import OutputError
from ..http_server import LOCAL_HOSTS
from .live import LiveEncoder

log = logging.getLogger(__name__)
MAIN = "main"
LIVE_MOUNT = "/live"
# Annex-B access units in; h264parse gives rtph264pay the caps (profile, level, SPS/PPS) it needs for the SDP,
# config-interval makes both repeat SPS/PPS so a client joining mid-stream decodes from its first keyframe.
LAUNCH = ("( appsrc name=src is-live=true format=time do-timestamp=true "
          "caps=video/x-h264,stream-format=byte-stream,alignment=au "
          "! h264parse config-interval=-1 ! rtph264pay name=pay0 pt=96 config-interval=1 )")
INSTALL_HINT = ("sudo apt install python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-rtsp gstreamer1.0-plugins-good "
                "gstreamer1.0-plugins-bad (in a venv: pip install PyGObject)")
ELEMENTS = ("appsrc", "h264parse", "rtph264pay")  # base, bad (videoparsersbad), good
# what may wait in appsrc should the media stall (about 2 s of 4 Mbit/s); beyond it units are dropped up to the next
# keyframe (appsrc's own leaky-type needs GStreamer 1.20; JetPack 4 and 5 ship 1.14 and 1.16)
MAX_QUEUED_BYTES = 1000000
SESSION_CLEANUP_S = 2  # clients that vanish without TEARDOWN (UDP) are dropped when their session times out


def load_gst(elements: Sequence[str], server: bool = True):
    """(GLib, Gst, GstRtspServer or None), or OutputError saying what to install. RTSP push needs no server."""
    try:
        import gi

        gi.require_version("Gst", "1.0")
        if server:
            gi.require_version("GstRtspServer", "1.0")
        from gi.repository import GLib, Gst
    except (ImportError, ValueError) as e:
        raise OutputError("RTSP needs GStreamer for Python (%s); fix: %s" % (e, INSTALL_HINT)) from e
    GstRtspServer = None
    if server:
        try:
            from gi.repository import GstRtspServer
        except ImportError as e:
            raise OutputError("RTSP out needs GStreamer's RTSP server (%s); fix: %s" % (e, INSTALL_HINT)) from e
    Gst.init(None)
    missing = [name for name in elements if Gst.ElementFactory.find(name) is None]
    if missing:
        raise OutputError("RTSP needs the GStreamer elements %s; fix: %s" % (", ".join(missing), INSTALL_HINT))
    return GLib, Gst, GstRtspServer


def push_unit(Gst, appsrc, unit, duration: int) -> bool:
    """One access unit into `appsrc`; False when refused (not playing yet, or stopping) or when what already waits
    there is past MAX_QUEUED_BYTES (a stalled consumer): the caller then waits for a keyframe, the only place a
    decoder can resume."""
    if appsrc.get_property("current-level-bytes") > MAX_QUEUED_BYTES:
        return False
    buffer = Gst.Buffer.new_wrapped(unit.annexb)
    # do-timestamp stamps each buffer with the pipeline's clock as it is pushed: frames come at whatever rate the
    # run manages (drops included), and stamps from a nominal frame rate would drift away from real time
    buffer.duration = duration
    if not unit.keyframe:
        buffer.set_flags(Gst.BufferFlags.DELTA_UNIT)
    return appsrc.emit("push-buffer", buffer) == Gst.FlowReturn.OK


class _Feeder:
    """One shared media's feed: a subscription to its encoder, pushed into the media's appsrc until stop()."""

    def __init__(self, Gst, encoder: LiveEncoder, appsrc, on_end):
        self.Gst = Gst
        self.encoder = encoder
        self.appsrc = appsrc
        self.on_end = on_end
        self.pushed = 0
        self._stop = threading.Event()
        self._sub = encoder.subscribe()  # subscribed now, so the encoder starts while the client still negotiates
        self._thread = threading.Thread(target=self._run, name="rtsp-feed-%s" % encoder.name, daemon=True)
        self._thread.start()

    def stop(self, wait_s: float = 0.0) -> None:
        self._stop.set()
        if wait_s and self._thread is not threading.current_thread():
            self._thread.join(wait_s)

    def _run(self) -> None:
        duration = int(self.Gst.SECOND / self.encoder.fps)
        need_keyframe = False
        try:
            while not self._stop.is_set() and not self.encoder.closed:
                unit = self._sub.get(0.5)
                if unit is None or (need_keyframe and not unit.keyframe):
                    continue
                # refused until the media plays (the first units come while the client still negotiates)
                need_keyframe = not push_unit(self.Gst, self.appsrc, unit, duration)
                self.pushed += 0 if need_keyframe else 1
        except Exception as e:  # noqa: B902 - one mount's feed ends; the run and the other mounts go on
            log.warning("RTSP feed of %s stopped: %s", self.encoder.name, e)
        finally:
            self._sub.close()  # the last watcher gone: the encoder stops
            self.appsrc = None
            self.on_end(self)


class RtspOut:
    """serves `encoders` ({"main": ..., NAME: ... with several}) on rtsp://host:port/live and /NAME; close() ends it."""

    def __init__(self, port: int, host: str, encoders: Dict[str, LiveEncoder], several: bool):
        if not all(encoder.available for encoder in encoders.values()):
            raise OutputError("RTSP out needs PyAV for its H.264 encoder; fix: pip install av")
        GLib, Gst, GstRtspServer = load_gst(ELEMENTS)
        self.GLib, self.Gst, self.GstRtspServer = GLib, Gst, GstRtspServer
        self._lock = threading.Lock()
        self._feeders = []  # type: List[_Feeder]
        self._closed = False
        self.mounts = {LIVE_MOUNT: encoders[MAIN]}  # type: Dict[str, LiveEncoder]
        if several:
            for name, encoder in encoders.items():
                if name == LIVE_MOUNT[1:]:  # /live is the mosaic's: a source of that name has no mount of its own
                    log.warning("RTSP out: %s is the mosaic; rename the source 'live' to get its own mount",
                                LIVE_MOUNT)
                elif name != MAIN:
                    self.mounts["/" + name] = encoder
        self._server = server = GstRtspServer.RTSPServer.new()
        server.set_address(host)
        server.set_service(str(int(port)))
        points = server.get_mount_points()
        for path, encoder in self.mounts.items():
            factory = GstRtspServer.RTSPMediaFactory.new()
            factory.set_launch(LAUNCH)
            factory.set_shared(True)  # one media, one subscription, one encoder for all the mount's clients
            factory.connect("media-configure", self._configure, encoder)
            points.add_factory(path, factory)
        # our own context and loop: nothing else in the process need run a GLib main loop
        self._context = GLib.MainContext.new()
        self._loop = GLib.MainLoop.new(self._context, False)
        try:
            self._source = server.create_source(None)  # binds here, so a port in use fails the run at its start
        except GLib.Error as e:
            raise OutputError("cannot serve RTSP on %s:%s (%s); choose another port with --rtsp-out PORT"
                              % (host, port, e.message)) from e
        self._source.attach(self._context)
        cleanup = GLib.timeout_source_new_seconds(SESSION_CLEANUP_S)
        cleanup.set_callback(self._cleanup_sessions)
        cleanup.attach(self._context)
        self.port = server.get_bound_port()
        shown = host if ":" not in host else "[%s]" % host
        self.urls = ["rtsp://%s:%d%s" % (shown, self.port, path) for path in self.mounts]
        self._thread = threading.Thread(target=self._loop.run, name="rtsp-server", daemon=True)
        self._thread.start()
        log.info("RTSP out on %s", ", ".join(self.urls))
        if host not in LOCAL_HOSTS:
            log.warning("RTSP out listens on %s: anyone who can reach this machine can watch (it has no password)",
                        host)

    @property
    def feeding(self) -> int:
        """Mounts being watched now (each has one feeder, however many clients)."""
        with self._lock:
            return len(self._feeders)

    def _configure(self, factory, media, encoder: LiveEncoder) -> None:
        """A mount's first client: its media is built; feed it until it is unprepared (its last client gone)."""
        appsrc = media.get_element().get_by_name("src")
        with self._lock:
            if self._closed:
                return
            feeder = _Feeder(self.Gst, encoder, appsrc, self._ended)
            self._feeders.append(feeder)
        media.connect("unprepared", lambda _media: feeder.stop())

    def _ended(self, feeder: _Feeder) -> None:
        with self._lock:
            if feeder in self._feeders:
                self._feeders.remove(feeder)

    def _cleanup_sessions(self, *_args) -> bool:
        self._server.get_session_pool().cleanup()
        return True  # keep the timer

    def _drop_clients(self, *_args) -> bool:
        """On the server's loop: every client disconnected (their media unprepare), then the loop ends."""
        self._server.client_filter(lambda *_a: self.GstRtspServer.RTSPFilterResult.REMOVE)
        self._loop.quit()
        return False

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            feeders = list(self._feeders)
        if self._thread.is_alive():
            idle = self.GLib.idle_source_new()
            idle.set_callback(self._drop_clients)
            idle.attach(self._context)
            self._thread.join(5.0)
        # the listening socket closes with the last reference to its source: the port is free again
        self._source.destroy()
        self._source = None
        for feeder in feeders:
            feeder.stop(wait_s=2.0)
