"""Recordings through GStreamer, for Jetsons with a hardware H.264 encoder (Nano, Xavier: nvv4l2h264enc; the Orin
Nano has none). PyAV's libx264 costs a CPU core or more at 1080p30 that a Nano does not have; the encoder engine
(NVENC) costs none. The file stays crash-safe like Fmp4Writer's: mp4mux writes fragmented MP4, a fragment per
frame, and filesink hands every buffer to the OS at once, so `kill -9` loses only the frames still in the pipeline
(measured with x264enc on a desktop: 58 of 60 frames decode; a plain mp4mux file keeps 0).

The pipeline is run by OpenCV's GStreamer VideoWriter (JetPack's OpenCV has GStreamer; pip's opencv-python has
not), which sets the appsrc caps from its own fps and size and time-stamps each frame."""

import logging
import os
import time
from typing import Optional, Tuple

import numpy as np

from ...errors import OutputError
from ...sources import gst_runner

log = logging.getLogger(__name__)

NV_ENCODER = "nvv4l2h264enc"
X264_ENCODER = "x264enc"  # desktops: the same muxing, tested where no Jetson is
ENCODERS = (NV_ENCODER, X264_ENCODER)
# fragment-duration (ms) below any frame's duration: mp4mux closes a fragment at every frame (and at every keyframe
# anyway). At 1000 ms a kill loses up to a second (30 of 60 frames kept, measured). streamable=true is left out: it
# is deprecated and changes nothing for a kill; without it a clean stop also writes the duration into the header.
MUXER = "mp4mux fragment-duration=1"
# buffer-mode=unbuffered: filesink's own 64 KiB buffer is lost with the process (a kill lost 5-8 frames of 8 KiB
# each with it, and every frame of a small static picture). sync=false: frames are written as fast as they come.
SINK = "filesink location=%s sync=false buffer-mode=unbuffered"
FSYNC_INTERVAL_S = 1.0  # as Fmp4Writer: the OS's copy reaches the disk about once a second (power loss)
INSTALL_HINTS = {
    NV_ENCODER: "JetPack's nvidia-l4t-gstreamer (sudo apt install nvidia-l4t-gstreamer)",
    X264_ENCODER: "sudo apt install gstreamer1.0-plugins-ugly",
}
OTHER_ELEMENTS = ("appsrc", "videoconvert", "h264parse", "mp4mux", "filesink")


def quote_location(path: str) -> str:
    """A path as a double-quoted GStreamer property value: spaces, '!' and quotes of the other kind are literal
    there; a backslash escapes the next character, so it is doubled. A double quote or a line break cannot be
    written safely into a pipeline string and is refused."""
    if not path or any(c in path for c in "\"\n\r"):
        raise OutputError("cannot record to %r through GStreamer: the path is empty or contains a double quote or a "
                          "line break; choose another file name" % (path,))
    return '"%s"' % path.replace("\\", "\\\\")


def _keyframe_interval(fps: float) -> int:
    if not fps or fps <= 0:
        raise OutputError("the recording's frame rate must be > 0, got %r" % (fps,))
    return max(1, int(round(fps)))  # a keyframe (an IDR) every second: a damaged file plays from the next second


def recording_pipeline(path: str, fps: float, size: Tuple[int, int], bitrate: int,
                       encoder: str = NV_ENCODER) -> str:
    """The pipeline string for cv2.VideoWriter(pipeline, cv2.CAP_GSTREAMER, 0, fps, size): BGR frames in, H.264 in
    fragmented MP4 out. `bitrate` is in bits per second whatever the encoder (x264enc takes kbit/s)."""
    keyint = _keyframe_interval(fps)
    width, height = int(size[0]), int(size[1])
    if width <= 0 or height <= 0:
        raise OutputError("the recording's size must be positive, got %sx%s" % (size[0], size[1]))
    if int(bitrate) <= 0:
        raise OutputError("the recording's bitrate must be > 0 bit/s, got %r; pass e.g. 4M" % (bitrate,))
    if encoder == NV_ENCODER:
        # nvvidconv takes no 3-byte BGR: videoconvert pads it to BGRx, the VIC converts to NV12 in NVMM memory.
        # insert-sps-pps=1: the parameter sets ride with every IDR; idrinterval = iframeinterval so every I frame
        # is an IDR (a decoder can start there); maxperf-enable=1 keeps the encoder clocked up so frames never queue.
        encode = ("videoconvert ! video/x-raw,format=BGRx ! nvvidconv ! video/x-raw(memory:NVMM),format=NV12 ! "
                  "nvv4l2h264enc insert-sps-pps=1 bitrate=%d iframeinterval=%d idrinterval=%d maxperf-enable=1"
                  % (int(bitrate), keyint, keyint))
    elif encoder == X264_ENCODER:
        # zerolatency: no B frames, no lookahead, so each frame leaves the encoder as it goes in (as NVENC's do).
        encode = ("videoconvert ! video/x-raw,format=I420 ! x264enc speed-preset=ultrafast tune=zerolatency "
                  "key-int-max=%d bitrate=%d" % (keyint, max(1, int(bitrate) // 1000)))
    else:
        raise OutputError("unknown GStreamer H.264 encoder %r; use one of: %s" % (encoder, ", ".join(ENCODERS)))
    # width and height in the caps: a frame of another size fails at once instead of being cropped or garbled.
    return "appsrc ! video/x-raw,format=BGR,width=%d,height=%d ! %s ! h264parse ! %s ! %s" % (
        width, height, encode, MUXER, SINK % quote_location(path))


def hardware_encoder() -> Optional[str]:
    """'nvv4l2h264enc' where GStreamer has it and nvvidconv (a Jetson with JetPack's plugins), else None; never
    raises. It tells that the plugin is installed, not that the module has the engine: where the element opens no
    device (an Orin Nano, if its JetPack lists it), GstWriter raises OutputError: then record with Fmp4Writer."""
    try:
        if gst_runner.has_element(NV_ENCODER) and gst_runner.has_element("nvvidconv"):
            return NV_ENCODER
    except Exception as e:  # no gi, no GStreamer, a broken registry: the software writers still work
        log.debug("looking for %s: %s", NV_ENCODER, e)
    return None


def missing_elements(encoder: str) -> Optional[list]:
    """The elements of the recording pipeline GStreamer lacks; None when that cannot be told (no PyGObject)."""
    names = ((NV_ENCODER, "nvvidconv") if encoder == NV_ENCODER else (encoder,)) + OTHER_ELEMENTS
    try:
        found = [(name, gst_runner.has_element(name)) for name in names]
    except Exception:
        return None
    if any(present is None for _, present in found):
        return None
    return [name for name, present in found if not present]


class GstWriter:
    """write(image_bgr) hands one frame to the GStreamer pipeline; release() ends the stream (EOS), so mp4mux
    finishes the file. Same interface as Fmp4Writer, used from one thread (VideoFileSink's writer thread)."""

    def __init__(self, path: str, fps: float, size: Tuple[int, int], bitrate: int, encoder: str = NV_ENCODER):
        import cv2

        self.path = path
        self.size = (int(size[0]), int(size[1]))
        self.pipeline = recording_pipeline(path, fps, self.size, bitrate, encoder)
        self.frames = 0
        self._fd = None  # type: Optional[int]
        self._synced_at = time.monotonic()
        if not gst_runner.opencv_has_gstreamer():
            raise OutputError("cannot record %s with %s: this OpenCV %s is built without GStreamer "
                              "(cv2.getBuildInformation() says GStreamer: NO); fix: use JetPack's OpenCV "
                              "(pip uninstall opencv-python) or record with PyAV (pip install av)"
                              % (path, encoder, cv2.__version__))
        self._writer = cv2.VideoWriter(self.pipeline, cv2.CAP_GSTREAMER, 0, float(fps), self.size)
        if not self._writer.isOpened():
            self._remove_empty()
            missing = missing_elements(encoder)
            if missing:
                why = "GStreamer lacks %s; fix: %s" % (", ".join(missing), INSTALL_HINTS.get(encoder, "install them"))
            else:  # an Orin Nano's JetPack may list nvv4l2h264enc, but the module has no encoder engine
                why = "the pipeline did not start (is the folder writable?%s); GST_DEBUG=2 shows why" % (
                    " an Orin Nano has no encoder engine: record with PyAV" if encoder == NV_ENCODER else "")
            raise OutputError("cannot record %s with %s: %s" % (path, encoder, why))

    def _remove_empty(self) -> None:
        try:
            if os.path.getsize(self.path) == 0:
                os.remove(self.path)
        except OSError:
            pass

    def write(self, image_bgr: np.ndarray) -> None:
        if (image_bgr.shape[1], image_bgr.shape[0]) != self.size:  # OpenCV would drop it with only a warning
            raise OutputError("recording %s: a %dx%d frame in a %dx%d recording" % (
                self.path, image_bgr.shape[1], image_bgr.shape[0], self.size[0], self.size[1]))
        self._writer.write(np.ascontiguousarray(image_bgr))
        self.frames += 1
        now = time.monotonic()
        if now - self._synced_at >= FSYNC_INTERVAL_S:
            self._sync()
            self._synced_at = now

    def _sync(self) -> None:
        """fsync through a descriptor of our own: on Linux it forces every written page of the file to the disk,
        whoever wrote it (filesink has no periodic sync; its o-sync would sync every buffer)."""
        try:
            if self._fd is None:
                self._fd = os.open(self.path, os.O_RDONLY)
            os.fsync(self._fd)
        except OSError as e:  # not there yet, or a filesystem without fsync: the data is still with the OS
            log.debug("fsync of %s: %s", self.path, e)

    def release(self) -> None:
        self._writer.release()  # EOS through the pipeline; mp4mux writes the duration into the header
        self._sync()
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
