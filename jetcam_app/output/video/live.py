"""One H.264 encoder per picture for the live outputs (the page's MSE and WebRTC views, RTSP out), started only while
something watches, its access units fanned out to every viewer. The encoder muxes into fragmented MP4 in memory, so
each unit comes both as an MP4 fragment (MSE) and as Annex-B bytes with SPS/PPS before each keyframe (RTP: RTSP,
WebRTC). offer() never waits: the newest frame replaces one the encoder has not taken yet, and a viewer that falls
behind loses its oldest units and resumes at the next keyframe, so neither a slow encoder nor a slow viewer ever
slows the pipeline."""

import collections
import logging
import threading
import time
from dataclasses import dataclass
from fractions import Fraction
from typing import Deque, List, Optional  # noqa: F401 - Deque and List in type comments

import numpy as np

from .fmp4 import X264_OPTIONS, av_module

log = logging.getLogger(__name__)
LIVE_MOVFLAGS = "frag_keyframe+empty_moov+default_base_moof+frag_every_frame"


def _picture_type_i():
    """PyAV's "I" picture type: an enum member in PyAV >= 13, the string in 12 (Python 3.8)."""
    av = av_module()
    kinds = getattr(getattr(getattr(av, "video", None), "frame", None), "PictureType", None) if av else None
    return kinds.I if kinds is not None else "I"


PICTURE_I = _picture_type_i()


@dataclass(frozen=True)
class Unit:
    """One encoded frame, as `annexb` (start codes; SPS and PPS first on a keyframe) for RTP packetisers, or as
    `fragment` (moof + mdat) for MSE: a subscription gets one kind (the other field is empty)."""

    index: int  # the pipeline's frame index
    keyframe: bool
    fragment: bytes
    annexb: bytes
    offered_at: float  # time.monotonic() when the pipeline offered the frame


def _close(container) -> None:
    if container is None:
        return
    try:
        container.close()
    except Exception as e:  # noqa: B902 - a muxer that fails at its trailer: nothing left to save in memory
        log.debug("closing a live encoder's muxer: %s", e)


class _Bytes:
    """A write-only file for PyAV: what the muxer writes, taken after each packet."""

    def __init__(self):
        self._chunks = []  # type: List[bytes]

    def write(self, data) -> int:
        self._chunks.append(bytes(data))
        return len(data)

    def take(self) -> bytes:
        data, self._chunks = b"".join(self._chunks), []
        return data


class Subscription:
    """A viewer's queue of units; get() waits for the next. A viewer that falls `max_units` behind drops its oldest
    and waits for the next keyframe (a decoder cannot start anywhere else)."""

    def __init__(self, encoder: "LiveEncoder", max_units: int, fragments: bool = False):
        self.encoder = encoder
        self.fragments = fragments  # MP4 fragments (MSE) rather than Annex-B units (RTP: RTSP, WebRTC)
        self.max_units = max(2, int(max_units))
        self.units = collections.deque()  # type: Deque[Unit]
        self.need_keyframe = True
        self.dropped = 0
        self.closed = False

    def _push(self, unit: Unit) -> None:  # under the encoder's condition
        if self.need_keyframe and not unit.keyframe:
            return
        self.need_keyframe = False
        if len(self.units) >= self.max_units:
            self.dropped += len(self.units)
            self.units.clear()
            self.need_keyframe = not unit.keyframe
            if self.need_keyframe:
                return
        self.units.append(unit)

    def get(self, timeout_s: float = 1.0) -> Optional[Unit]:
        """The next unit, or None after timeout_s without one (or once the encoder closed)."""
        with self.encoder._cond:
            self.encoder._cond.wait_for(lambda: self.units or self.closed or self.encoder.closed, timeout_s)
            return self.units.popleft() if self.units else None

    def close(self) -> None:
        self.encoder.unsubscribe(self)


class LiveEncoder:
    """offer(image, index) from the frame path; subscribe() from viewers. `init_segment` (ftyp + moov) and `codec`
    (e.g. avc1.42C01F) describe the stream to MSE once the first frame is encoded (wait_ready())."""

    def __init__(self, name: str, fps: float, bitrate: int, max_units: int = 0):
        self.av = av_module()
        self.name = name
        self.fps = float(fps) if fps and fps > 0 else 30.0
        self.bitrate = int(bitrate)
        self.max_units = max_units or int(2 * self.fps)
        self.closed = False
        self.init_segment = b""
        self.codec = ""
        self.sps_pps = b""
        self.size = (0, 0)
        self.frames_encoded = 0
        self.offers_replaced = 0  # frames the encoder never took: a newer one arrived first
        self.encode_ms_total = 0.0
        self._cond = threading.Condition()
        self._subs = []  # type: List[Subscription]
        self._slot = None  # type: Optional[tuple]
        self._thread = None  # type: Optional[threading.Thread]
        self._keyframe_wanted = False

    @property
    def available(self) -> bool:
        return self.av is not None

    @property
    def viewers(self) -> int:
        return len(self._subs)

    def subscribe(self, fragments: bool = False) -> Subscription:
        """A viewer's queue: Annex-B units as soon as each frame is encoded (RTP), or with `fragments` the MP4
        fragments (MSE), which the muxer writes one frame later. The next frame is forced to a keyframe, so a viewer
        starts at once rather than at the next second's keyframe."""
        sub = Subscription(self, self.max_units, fragments)
        with self._cond:
            self._subs.append(sub)
            self._keyframe_wanted = True
            if self._thread is None and not self.closed:
                self._thread = threading.Thread(target=self._run, name="h264-%s" % self.name, daemon=True)
                self._thread.start()
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        with self._cond:
            sub.closed = True
            if sub in self._subs:
                self._subs.remove(sub)
            self._cond.notify_all()

    def stats(self) -> dict:
        """For the page's stats.json: one encoder's work, whoever watches it."""
        return {"viewers": self.viewers, "frames_encoded": self.frames_encoded, "codec": self.codec or None,
                "offers_replaced": self.offers_replaced,
                "encode_ms_mean": round(self.encode_ms_total / self.frames_encoded, 2) if self.frames_encoded else None}

    def offer(self, image_bgr: np.ndarray, index: int) -> None:
        """Keep this frame for the encoder (a copy: the pipeline reuses its buffers); nothing while unwatched."""
        if not self._subs or self.closed:
            return
        frame = np.ascontiguousarray(image_bgr).copy()
        with self._cond:
            if self._slot is not None:
                self.offers_replaced += 1
            self._slot = (frame, index, time.monotonic())
            self._cond.notify_all()

    def wait_ready(self, timeout_s: float = 5.0) -> bool:
        """True once the init segment exists (the first frame was encoded)."""
        with self._cond:
            return self._cond.wait_for(lambda: bool(self.init_segment) or self.closed, timeout_s) and not self.closed

    def close(self) -> None:
        with self._cond:
            self.closed = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(5.0)

    # -- the encoder thread

    def _run(self) -> None:
        stream = container = sink = None
        pending = collections.deque()  # packets muxed whose fragment the muxer has not written yet
        try:
            while True:
                with self._cond:
                    self._cond.wait_for(lambda: self.closed or self._slot is not None or not self._subs, 1.0)
                    if self.closed:
                        return
                    if not self._subs:  # nobody watches: stop encoding, and start afresh for the next viewer
                        self.init_segment = b""
                        self._thread = None
                        return
                    if self._slot is None:
                        continue
                    image, index, offered_at = self._slot
                    self._slot = None
                size = (image.shape[1] - image.shape[1] % 2, image.shape[0] - image.shape[0] % 2)
                if container is None or size != self.size:
                    _close(container)
                    sink, container, stream = self._open(size)
                    pending.clear()
                start = time.perf_counter()
                frame = self.av.VideoFrame.from_ndarray(image[:size[1], :size[0]], format="bgr24")
                frame.pts = self.frames_encoded
                with self._cond:
                    if self._keyframe_wanted:  # a viewer joined: give it a keyframe now (forced-idr makes it an IDR)
                        frame.pict_type = PICTURE_I
                        self._keyframe_wanted = False
                packets = stream.encode(frame)
                if packets and not self.sps_pps:  # libx264's SPS and PPS (Annex B), there once it has encoded
                    self.set_parameter_sets(bytes(stream.codec_context.extradata or b""))
                for packet in packets:
                    keyframe, data = bool(packet.is_keyframe), bytes(packet)
                    self._deliver(Unit(index=index, keyframe=keyframe, fragment=b"",
                                       annexb=(self.sps_pps + data) if keyframe else data, offered_at=offered_at),
                                  fragments=False)
                    pending.append((index, keyframe, offered_at))
                    container.mux(packet)
                    self._publish(sink.take(), pending)
                self.encode_ms_total += (time.perf_counter() - start) * 1000.0
                self.frames_encoded += 1
        except Exception as e:  # noqa: B902 - the live view ends; the pipeline and the recording go on
            log.error("live H.264 encoder of %s stopped: %s", self.name, e)
            with self._cond:
                self.closed = True
                self._cond.notify_all()
        finally:
            # closed here, on its own thread: an output container left to the garbage collector crashes PyAV 12's
            # dealloc (Python 3.8's gc.collect() segfaulted on one)
            _close(container)

    def _open(self, size):
        sink = _Bytes()
        container = self.av.open(sink, "w", format="mp4", options={"movflags": LIVE_MOVFLAGS, "flush_packets": "1"})
        stream = container.add_stream("libx264", rate=Fraction(self.fps).limit_denominator(1001))
        stream.width, stream.height = size
        stream.pix_fmt = "yuv420p"
        stream.bit_rate = self.bitrate
        stream.codec_context.gop_size = max(1, int(round(self.fps)))
        stream.options = dict(X264_OPTIONS, **{"forced-idr": "1"})
        self.size = size
        self.sps_pps = b""
        with self._cond:
            self.init_segment = b""
            for sub in self._subs:
                sub.units.clear()
                sub.need_keyframe = True
        return sink, container, stream

    def _publish(self, data: bytes, pending) -> None:
        """Split what the muxer wrote: the init segment once, then one fragment per muxed packet (the muxer writes
        a packet's fragment when the next packet arrives)."""
        if not data:
            return
        moof = data.find(b"moof")
        if not self.init_segment:
            head = data if moof < 0 else data[:moof - 4]
            self._set_init(head)
            data = b"" if moof < 0 else data[moof - 4:]
        if not data or not pending:
            return
        index, keyframe, offered_at = pending.popleft()
        self._deliver(Unit(index=index, keyframe=keyframe, fragment=data, annexb=b"", offered_at=offered_at),
                      fragments=True)

    def _deliver(self, unit: Unit, fragments: bool) -> None:
        with self._cond:
            for sub in self._subs:
                if sub.fragments == fragments:
                    sub._push(unit)
            self._cond.notify_all()

    def _set_init(self, head: bytes) -> None:
        with self._cond:
            self.init_segment = head
            self._cond.notify_all()

    def set_parameter_sets(self, extradata: bytes) -> None:
        """SPS + PPS (Annex B) and the MSE codec string from them."""
        self.sps_pps = bytes(extradata)
        sps = self.sps_pps.find(b"\x00\x00\x01\x67")
        if sps >= 0 and len(self.sps_pps) >= sps + 7:
            profile, constraints, level = self.sps_pps[sps + 4:sps + 7]
            self.codec = "avc1.%02X%02X%02X" % (profile, constraints, level)
