"""RTSP push (--rtsp-push URL): the run's annotated H.264 published to an RTSP server someone else runs (MediaMTX,
go2rtc, Wowza), which then serves it to any number of viewers, through firewalls and NAT the camera box cannot be
reached through. The main live encoder's units (live.py) go as they are, nothing is encoded twice, into GStreamer's
rtspclientsink (ANNOUNCE / SETUP / RECORD, RTP interleaved over the RTSP TCP connection).

Why not PyAV's rtsp muxer: PyAV holds the GIL in avformat_write_header and av_write_trailer, which for RTSP are the
connection and its handshake. A server that accepts the connection and does not answer froze every Python thread,
the pipeline's included, for the whole socket timeout at each retry (measured: 5.1 s). GStreamer connects and sends
on threads of its own, without the GIL; Python only hands it buffers. A server that is down, refuses or goes away
is a warning and a retry every few seconds, and the pipeline never waits."""

import logging
import threading
import time
from typing import Optional
from urllib.parse import urlsplit

from ...errors import OutputError, mask_secrets
from .live import LiveEncoder
from .rtsp_out import load_gst, push_unit

log = logging.getLogger(__name__)
RETRY_S = 3.0
TCP_TIMEOUT_US = 5000000  # a server that stops answering ends the connection after this long (default 20 s)
# the location is set as a property, never in the launch line: no quoting to get wrong, no password in a description
LAUNCH = ("appsrc name=src is-live=true format=time do-timestamp=true "
          "caps=video/x-h264,stream-format=byte-stream,alignment=au "
          "! h264parse config-interval=-1 ! rtspclientsink name=sink protocols=tcp latency=0")
ELEMENTS = ("appsrc", "h264parse", "rtspclientsink")  # base, bad, gstreamer1.0-rtsp


class RtspPush:
    """Publishes `encoder` (the main picture) to `url` (rtsp://[user:password@]host:port/path); close() ends it."""

    def __init__(self, url: str, encoder: LiveEncoder, retry_s: float = RETRY_S):
        if not encoder.available:
            raise OutputError("--rtsp-push needs PyAV for its H.264 encoder; fix: pip install av")
        parts = urlsplit(url)
        if parts.scheme not in ("rtsp", "rtsps") or not parts.hostname:
            raise OutputError("--rtsp-push wants an RTSP URL such as rtsp://127.0.0.1:8554/jetcam, not %s"
                              % mask_secrets(url))
        _, self.Gst, _ = load_gst(ELEMENTS, server=False)
        self.url = url
        self.shown = mask_secrets(url)  # the password never reaches a log
        self.encoder = encoder
        self.retry_s = float(retry_s)
        self.connected = False
        self.connections = 0
        self.pushed = 0  # units handed to GStreamer, over every connection
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rtsp-push", daemon=True)
        self._thread.start()
        log.info("RTSP push to %s", self.shown)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5.0)

    def _run(self) -> None:
        failing = False  # one warning an outage, not one a retry
        while not self._stop.is_set() and not self.encoder.closed:
            reason = self._connection()
            if reason is None:
                return  # closing
            if not failing or self.connected:
                log.warning("RTSP push to %s: %s; retrying every %.0f s", self.shown, reason, self.retry_s)
            else:
                log.debug("RTSP push to %s: %s", self.shown, reason)
            failing = True  # until a connection works: one that worked and broke warns again
            self.connected = False
            self._stop.wait(self.retry_s)

    def _connection(self) -> Optional[str]:
        """One connection, from the encoder's next keyframe until it fails (the reason) or close() (None)."""
        Gst = self.Gst
        pipeline = Gst.parse_launch(LAUNCH)
        sink, appsrc = pipeline.get_by_name("sink"), pipeline.get_by_name("src")
        sink.set_property("location", self.url)
        sink.set_property("tcp-timeout", TCP_TIMEOUT_US)
        bus = pipeline.get_bus()
        sub = self.encoder.subscribe()  # watched only while connecting or connected: else the encoder may stop
        duration = int(Gst.SECOND / self.encoder.fps)
        need_keyframe = False
        try:
            if pipeline.set_state(Gst.State.PLAYING) == Gst.StateChangeReturn.FAILURE:
                return self._bus_error(bus) or "GStreamer could not start the push"
            while not self._stop.is_set() and not self.encoder.closed:
                unit = sub.get(0.2)
                if unit is not None and not (need_keyframe and not unit.keyframe):
                    # refused while the connection is made, or when it stalls: resume at a keyframe
                    need_keyframe = not push_unit(Gst, appsrc, unit, duration)
                    self.pushed += 0 if need_keyframe else 1
                error = self._bus_error(bus)
                if error:
                    return error
            return None
        finally:
            sub.close()
            started = time.monotonic()
            pipeline.set_state(Gst.State.NULL)  # TEARDOWN; off the GIL, bounded by the TCP timeout
            log.debug("RTSP push stopped in %.2f s", time.monotonic() - started)

    def _bus_error(self, bus) -> Optional[str]:
        """The connection's fate from the bus: the first error or end (its one line), or None. The RTP session
        reaching PLAYING means the server took ANNOUNCE, SETUP and RECORD: connected."""
        Gst = self.Gst
        kinds = Gst.MessageType.ERROR | Gst.MessageType.EOS | Gst.MessageType.STATE_CHANGED
        while True:
            message = bus.pop_filtered(kinds)
            if message is None:
                return None
            if message.type == Gst.MessageType.ERROR:
                error, debug = message.parse_error()
                detail = (debug or "").strip().splitlines()[-1:]  # e.g. "Failed to connect. (Generic error)"
                return mask_secrets("%s%s" % (error.message, " (%s)" % detail[0].strip() if detail else ""))
            if message.type == Gst.MessageType.EOS:
                return "the stream ended"
            factory = message.src.get_factory() if isinstance(message.src, Gst.Element) else None
            if factory is not None and factory.get_name() == "rtpbin" and not self.connected:
                if message.parse_state_changed()[1] == Gst.State.PLAYING:
                    self.connected = True
                    self.connections += 1
                    log.info("RTSP push connected to %s", self.shown)
