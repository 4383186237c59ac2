"""Recordings that survive a crash: H.264 (PyAV's libx264) in fragmented MP4, a fragment per frame, packets flushed
and the file fsynced about once a second, optionally split into segments. A plain MP4 is playable only once its
index (moov) is written at close; `kill -9`, the OOM killer or a pulled cable leave 0 frames that decode. A
fragmented file carries an index per fragment, so everything up to the last flushed fragment plays."""

import logging
import os
import time
from dataclasses import dataclass
from fractions import Fraction
from typing import Optional, Tuple

import numpy as np

from ...config_checks import parse_bitrate
from ...errors import OutputError

log = logging.getLogger(__name__)

# frag_every_frame: a kill loses at most the frame being written (1 s fragments lose up to a second: 45 of 60 frames
# kept when killed at frame 60); empty_moov + default_base_moof: the form browsers' MSE and every player read.
MOVFLAGS = "frag_keyframe+empty_moov+default_base_moof+frag_every_frame"
FSYNC_INTERVAL_S = 1.0
X264_OPTIONS = {"preset": "ultrafast", "tune": "zerolatency", "profile": "baseline"}
DEFAULT_BITRATE = "4M"


def av_module():
    """PyAV, or None where it is not installed (Python 3.6 has no wheel of a release with libx264 inside)."""
    try:
        import av
    except ImportError:
        return None
    return av


@dataclass(frozen=True)
class VideoSettings:
    """How recordings are encoded: H.264 in fragmented MP4 where PyAV is there (`fragmented`), at `bitrate` bits per
    second, in segments of `segment_s` seconds (0: one file)."""

    bitrate: int = 4000000
    segment_s: float = 0.0
    fragmented: bool = True

    @classmethod
    def from_output(cls, output) -> "VideoSettings":
        return cls(bitrate=parse_bitrate(output.bitrate), segment_s=float(output.record_segment_s))


def segment_path(path: str, number: int) -> str:
    """rec.mp4 -> rec_0001.mp4, rec_0002.mp4, ..."""
    root, ext = os.path.splitext(path)
    return "%s_%04d%s" % (root, number, ext)


class Fmp4Writer:
    """write(image_bgr) encodes one frame and muxes it into the current file; release() finishes it. Used from one
    thread (the sink's writer thread). `segment_s` > 0 starts a new file (a new encoder, so it opens on a keyframe)
    every segment_s of frames: a damaged tail then costs at most one segment."""

    def __init__(self, path: str, fps: float, size: Tuple[int, int], bitrate: int, segment_s: float = 0.0):
        self.av = av_module()
        if self.av is None:
            raise OutputError("fragmented MP4 needs PyAV; fix: pip install av")
        self.path = path
        self.fps = float(fps) if fps and fps > 0 else 30.0
        self.size = (int(size[0]), int(size[1]))  # (width, height), even
        self.bitrate = int(bitrate)
        self.segment_frames = int(round(segment_s * self.fps)) if segment_s and segment_s > 0 else 0
        self.frames = 0
        self.files = []  # type: list  # the files written, in order
        self._file = None
        self._container = None
        self._stream = None
        self._frames_in_file = 0
        self._synced_at = time.monotonic()

    def _rate(self):
        return Fraction(self.fps).limit_denominator(1001)

    def _open(self) -> None:
        path = segment_path(self.path, len(self.files) + 1) if self.segment_frames else self.path
        try:
            self._file = open(path, "wb", buffering=0)  # unbuffered: each flushed fragment reaches the OS at once
        except OSError as e:
            raise OutputError("cannot write the video %s (%s); choose a writable path for --record / --save-input"
                              % (path, e.strerror or e)) from e
        self._container = self.av.open(self._file, "w", format="mp4",
                                       options={"movflags": MOVFLAGS, "flush_packets": "1"})
        stream = self._container.add_stream("libx264", rate=self._rate())
        stream.width, stream.height = self.size
        stream.pix_fmt = "yuv420p"
        stream.bit_rate = self.bitrate
        stream.codec_context.gop_size = max(1, int(round(self.fps)))  # a keyframe every second
        stream.options = dict(X264_OPTIONS)
        self._stream = stream
        self._frames_in_file = 0
        self.files.append(path)

    def write(self, image_bgr: np.ndarray) -> None:
        if self._container is None or (self.segment_frames and self._frames_in_file >= self.segment_frames):
            self._close_file()
            self._open()
        frame = self.av.VideoFrame.from_ndarray(np.ascontiguousarray(image_bgr), format="bgr24")
        frame.pts = self._frames_in_file
        for packet in self._stream.encode(frame):
            self._container.mux(packet)
        self._frames_in_file += 1
        self.frames += 1
        now = time.monotonic()
        if now - self._synced_at >= FSYNC_INTERVAL_S:
            self._sync()
            self._synced_at = now

    def _sync(self) -> None:
        self._file.flush()
        try:
            os.fsync(self._file.fileno())
        except OSError as e:  # a pipe or a filesystem without fsync: the data is flushed, not forced to the disk
            log.debug("fsync of %s: %s", self._file.name, e)

    def _close_file(self) -> None:
        if self._container is None:
            return
        try:
            for packet in self._stream.encode(None):
                self._container.mux(packet)
            self._container.close()
            self._sync()
        finally:
            self._file.close()
            self._container = self._stream = self._file = None

    def release(self) -> None:
        self._close_file()


def describe_recording(fragmented: bool, bitrate: Optional[int]) -> str:
    if fragmented:
        return "H.264 %.1f Mbit/s, fragmented MP4 (survives a crash)" % (bitrate / 1e6)
    return "OpenCV mp4v (finished at close only: a crash leaves it unplayable; pip install av for H.264 fMP4)"
