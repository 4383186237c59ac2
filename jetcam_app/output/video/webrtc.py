"""The page's WebRTC view, answered WHEP-style: the page POSTs its SDP offer to whep (or sources/NAME/whep) and gets
the answer back (201). aiortc carries the picture's LiveEncoder's H.264 as it is: the track hands aiortc av.Packets
made of the encoder's Annex-B units, which its sender only packetises into RTP (FU-A/STAP-A, packetization-mode 1),
so every viewer shares the one encoder. No STUN or TURN server is configured (host candidates: the LAN, a VPN, an SSH
tunnel's far end); the page falls back to MSE where WebRTC does not connect. aiortc runs on one asyncio loop in a
daemon thread; the HTTP handler threads wait on it. Without aiortc (Python 3.6) whep answers 501."""

import asyncio
import concurrent.futures
import logging
import threading
from fractions import Fraction
from typing import Dict, Optional  # noqa: F401 - in type comments

from .fmp4 import av_module
from .live import LiveEncoder

log = logging.getLogger(__name__)
MAX_PEERS = 8
ANSWER_TIMEOUT_S = 10.0  # offer to answer: aiortc gathers its host candidates before answering
CONNECT_TIMEOUT_S = 20.0  # a peer that has not connected by then is closed (a page that left, no ICE path)
VIDEO_TIME_BASE = Fraction(1, 90000)
H264_PROFILES = ("42e01f", "42001f")  # constrained baseline, baseline: what libx264's baseline profile writes


def aiortc_module():
    """aiortc, or None where it is not installed (no release for Python 3.6)."""
    try:
        import aiortc
    except ImportError:
        return None
    return aiortc


class WebRtcError(Exception):
    """An offer not answered; `status` is the HTTP status to send."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


_TRACK_CLASS = None


def _track_class():
    """The MediaStreamTrack that serves a LiveEncoder's units as av.Packets (built once aiortc is imported)."""
    global _TRACK_CLASS
    if _TRACK_CLASS is not None:
        return _TRACK_CLASS
    from aiortc import MediaStreamTrack
    from aiortc.mediastreams import MediaStreamError

    av = av_module()

    class UnitTrack(MediaStreamTrack):
        """Subscribes on the first recv() (once the peer connected, so it starts at a fresh keyframe); pts in 90 kHz
        from the time the pipeline offered each frame."""

        kind = "video"

        def __init__(self, encoder: LiveEncoder, executor):
            super().__init__()
            self.encoder, self._executor = encoder, executor
            self._sub = None
            self._first = None  # type: Optional[float]
            self._pts = -1

        async def recv(self):
            loop = asyncio.get_event_loop()
            while True:
                if self.readyState != "live" or self.encoder.closed:
                    raise MediaStreamError
                if self._sub is None:
                    self._sub = self.encoder.subscribe()
                unit = await loop.run_in_executor(self._executor, self._sub.get, 0.5)
                if unit is not None:
                    break
            if self._first is None:
                self._first = unit.offered_at
            self._pts = max(self._pts + 1, int(round((unit.offered_at - self._first) * 90000)))
            packet = av.Packet(unit.annexb)
            packet.pts, packet.time_base = self._pts, VIDEO_TIME_BASE
            return packet

        def stop(self) -> None:
            super().stop()
            if self._sub is not None:
                self._sub.close()

    _TRACK_CLASS = UnitTrack
    return UnitTrack


class WebRtcServer:
    """answer(offer_sdp, encoder) -> the SDP answer, from any thread; at most `max_peers` connections at once. A peer
    whose connection fails or closes is dropped and unsubscribed; close() ends them all and the loop."""

    def __init__(self, max_peers: int = MAX_PEERS):
        self.aiortc = aiortc_module()
        self.max_peers = int(max_peers)
        self._peers = {}  # type: Dict[object, object]  # RTCPeerConnection -> its track; touched on the loop only
        self._lock = threading.Lock()
        self._loop = None  # type: Optional[asyncio.AbstractEventLoop]
        self._thread = None  # type: Optional[threading.Thread]
        self._executor = None  # type: Optional[concurrent.futures.ThreadPoolExecutor]
        self._closed = False

    @property
    def available(self) -> bool:
        return self.aiortc is not None

    @property
    def peers(self) -> int:
        return len(self._peers)

    def answer(self, offer_sdp: str, encoder: LiveEncoder, timeout_s: float = ANSWER_TIMEOUT_S) -> str:
        if not self.available:
            raise WebRtcError(501, "WebRTC needs aiortc (pip install aiortc); the page plays stream.mp4 instead")
        if not encoder.available:
            raise WebRtcError(501, "H.264 needs PyAV (pip install av); the MJPEG stream is at stream.mjpg")
        with self._lock:
            if self._closed:
                raise WebRtcError(503, "the server is closing")
            if self._loop is None:
                self._loop = asyncio.new_event_loop()
                self._executor = concurrent.futures.ThreadPoolExecutor(self.max_peers, thread_name_prefix="webrtc")
                self._thread = threading.Thread(target=self._run, name="webrtc", daemon=True)
                self._thread.start()
            loop = self._loop
        future = asyncio.run_coroutine_threadsafe(self._answer(offer_sdp, encoder), loop)
        try:
            return future.result(timeout_s)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise WebRtcError(504, "no answer within %.0f s" % timeout_s)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            loop = self._loop
        if loop is None:
            return
        try:
            asyncio.run_coroutine_threadsafe(self._close_all(), loop).result(5.0)
        except Exception as e:  # noqa: B902 - closing goes on
            log.debug("closing the WebRTC peers: %s", e)
        loop.call_soon_threadsafe(loop.stop)
        self._thread.join(5.0)
        self._executor.shutdown(wait=False)

    # -- on the loop
    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_forever()
            tasks = [t for t in asyncio.all_tasks(self._loop) if not t.done()]  # novermin: aiortc needs 3.8+
            for task in tasks:
                task.cancel()
            self._loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
        finally:
            self._loop.close()

    async def _answer(self, offer_sdp: str, encoder: LiveEncoder) -> str:
        if len(self._peers) >= self.max_peers:
            raise WebRtcError(503, "too many WebRTC viewers (%d); the page plays stream.mp4 instead" % self.max_peers)
        rtc = self.aiortc
        pc = rtc.RTCPeerConnection(rtc.RTCConfiguration(iceServers=[]))
        track = _track_class()(encoder, self._executor)
        self._peers[pc] = track
        try:
            transceiver = pc.addTransceiver(track, direction="sendonly")
            transceiver.setCodecPreferences(h264_codecs(rtc))
            await pc.setRemoteDescription(rtc.RTCSessionDescription(sdp=offer_sdp, type="offer"))
            await pc.setLocalDescription(await pc.createAnswer())
        except BaseException as e:  # noqa: B902 - a bad offer, one without H.264, or the wait given up
            await self._drop(pc)
            if isinstance(e, (WebRtcError, asyncio.CancelledError)) or not isinstance(e, Exception):
                raise
            raise WebRtcError(400, "cannot answer this offer: %s" % (e or type(e).__name__)) from e

        @pc.on("connectionstatechange")
        async def on_state():
            log.debug("WebRTC viewer %s", pc.connectionState)
            if pc.connectionState in ("failed", "closed"):
                await self._drop(pc)

        asyncio.ensure_future(self._connect_or_drop(pc))
        return pc.localDescription.sdp

    async def _connect_or_drop(self, pc) -> None:
        await asyncio.sleep(CONNECT_TIMEOUT_S)
        if pc.connectionState != "connected":
            await self._drop(pc)

    async def _drop(self, pc) -> None:
        track = self._peers.pop(pc, None)
        if track is not None:
            track.stop()
            await pc.close()

    async def _close_all(self) -> None:
        for pc in list(self._peers):
            await self._drop(pc)


def h264_codecs(rtc):
    """aiortc's H.264 capabilities in packetization-mode 1, constrained baseline first: the only codecs offered."""
    codecs = dict((str(c.parameters.get("profile-level-id", "")).lower(), c)
                  for c in rtc.RTCRtpSender.getCapabilities("video").codecs
                  if c.mimeType.lower() == "video/h264" and str(c.parameters.get("packetization-mode")) == "1")
    return [codecs[p] for p in H264_PROFILES if p in codecs] or list(codecs.values())
