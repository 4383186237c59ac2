"""The two ways to run a capture pipeline: OpenCV's VideoCapture (GStreamer or V4L2 backend) and PyGObject's Gst."""

import logging
import threading
import time
from typing import Any, Callable, NamedTuple, Optional, Tuple

import numpy as np

from ..errors import SourceError, mask_secrets
from ..stats import is_jetson  # noqa: F401  (re-exported: callers import it from here)

log = logging.getLogger(__name__)

GST_INSTALL_HINT = ("sudo apt install python3-gi gir1.2-gstreamer-1.0 gir1.2-gst-plugins-base-1.0 "
                    "gstreamer1.0-plugins-base gstreamer1.0-plugins-good (in a venv: pip install PyGObject)")
_POLL_S = 0.1  # how often a waiting pull looks at the bus, so an error surfaces before the timeout
_gst = None  # type: Any
_gst_error = None  # type: Optional[str]


class PipelineStopped(SourceError):
    """The running pipeline ended (eos=True) or failed; a live source treats both as a disconnect."""

    def __init__(self, message: str, eos: bool = False):
        super().__init__(message)
        self.eos = eos


class Sample(NamedTuple):
    image: Any  # H x W x 3 BGR, owned (copied out of the GStreamer buffer); what `adopt` made of a BGRx one
    pts_s: Optional[float]  # the buffer's presentation time (pipeline running time), None if unknown
    offset: Optional[int]  # the source's frame counter (videotestsrc, v4l2src), None if the source sets none
    age_s: Optional[float]  # how long ago the frame was captured, by the pipeline clock, None if unknown
    fps: Optional[float]  # the negotiated frame rate, None if unknown or variable


def load_gst():
    """Gst, initialised once; SourceError with the install hint when PyGObject or GStreamer is missing."""
    global _gst, _gst_error
    if _gst is None and _gst_error is None:
        try:
            import gi

            gi.require_version("Gst", "1.0")
            gi.require_version("GstApp", "1.0")
            from gi.repository import Gst, GstApp  # noqa: F401  (GstApp makes appsink's methods callable)

            Gst.init(None)
            _gst = Gst
        except (ImportError, ValueError) as e:
            _gst_error = "PyGObject with GStreamer 1.0 is not importable (%s)" % e
    if _gst is None:
        raise SourceError("%s; fix: %s" % (_gst_error, GST_INSTALL_HINT))
    return _gst


def gobject_reason() -> Optional[str]:
    """None when the PyGObject runner can be used here, else why not."""
    try:
        load_gst()
    except SourceError as e:
        return str(e)
    return None


def has_element(name: str) -> Optional[bool]:
    """Whether a GStreamer element is installed; None when that cannot be told (no Python Gst)."""
    if gobject_reason():
        return None
    return load_gst().ElementFactory.find(name) is not None


def opencv_has_gstreamer() -> bool:
    """cv2 built with GStreamer (JetPack's OpenCV is; pip's opencv-python is not)."""
    import cv2

    for line in cv2.getBuildInformation().splitlines():
        if line.strip().startswith("GStreamer:"):
            return "YES" in line.split(":", 1)[1].upper()
    return False


class _Call:
    """One blocking call on a daemon thread, so the caller can wait with a timeout (OpenCV's reads have none)."""

    def __init__(self, fn: Callable[[], Any]):
        self.done = threading.Event()
        self.result = None  # type: Any
        self.error = None  # type: Optional[BaseException]
        self._fn = fn
        threading.Thread(target=self._run, name="opencv-capture", daemon=True).start()

    def _run(self) -> None:
        try:
            self.result = self._fn()
        except BaseException as e:  # handed to the waiting thread, which re-raises it
            self.error = e
        finally:
            self.done.set()


class OpenCVRunner:
    """cv2.VideoCapture(pipeline, CAP_GSTREAMER) or a V4L2 capture; reads run on a helper thread with a timeout."""

    def __init__(self, open_capture: Callable[[], Any], name: str):
        self.name = name
        self._open_capture = open_capture
        self._capture = None  # type: Any
        self._pending = None  # type: Optional[_Call]

    def start(self, timeout_s: float) -> None:
        call = _Call(self._open_capture)
        if not call.done.wait(timeout_s):
            raise PipelineStopped("OpenCV did not open the capture within %.1f s" % timeout_s)
        if call.error is not None:
            raise PipelineStopped("OpenCV failed to open the capture: %s" % call.error)
        self._capture = call.result
        if self._capture is None or not self._capture.isOpened():
            raise PipelineStopped("OpenCV could not open the capture (run with GST_DEBUG=2 to see GStreamer's reason)")

    def _read(self) -> Tuple[bool, Any, float]:
        import cv2

        ok, image = self._capture.read()
        return ok, image, float(self._capture.get(cv2.CAP_PROP_POS_MSEC))

    def pull(self, timeout_s: float) -> Optional[Sample]:
        if self._capture is None:
            raise PipelineStopped("capture is closed")
        if self._pending is None:
            self._pending = _Call(self._read)
        if not self._pending.done.wait(max(0.0, timeout_s)):
            return None  # the read goes on; the next pull waits for the same frame, never a second one
        call, self._pending = self._pending, None
        if call.error is not None:
            raise PipelineStopped("OpenCV capture failed: %s" % call.error)
        ok, image, pos_ms = call.result
        if not ok or image is None:
            raise PipelineStopped("OpenCV returned no frame (end of stream or the camera stopped)", eos=True)
        return Sample(image, pos_ms / 1000.0 if pos_ms > 0 else None, None, None, None)

    def stop(self) -> None:
        if self._pending is not None:
            self._pending.done.wait(2.0)  # releasing a capture in the middle of a read can crash some backends
            self._pending = None
        capture, self._capture = self._capture, None
        if capture is not None:
            capture.release()


class GObjectRunner:
    """Gst.parse_launch, frames pulled from the appsink with a timeout, bus errors turned into PipelineStopped."""

    name = "PyGObject (Gst.parse_launch + appsink)"

    def __init__(self, pipeline: str, adopt: Optional[Callable[[np.ndarray], Any]] = None):
        self.description = pipeline
        # BGRx frames (a Jetson's nvvidconv output): the H x W x 4 view of the mapped buffer, valid only during
        # the call, goes to `adopt`, which returns the frame's own pixels (nvmm_frames.py: a CUDA tensor)
        self._adopt = adopt
        self._pipeline = None  # type: Any
        self._sink = None  # type: Any
        self._bus = None  # type: Any

    def start(self, timeout_s: float) -> None:
        Gst = load_gst()
        from gi.repository import GLib

        try:
            pipeline = Gst.parse_launch(self.description)
        except GLib.Error as e:
            raise PipelineStopped("GStreamer cannot build the pipeline: %s (is the plugin installed? check with "
                                  "gst-inspect-1.0 ELEMENT)" % e.message) from e
        sink = None
        if isinstance(pipeline, Gst.Bin):
            sinks = pipeline.iterate_sinks()
            while True:
                status, element = sinks.next()
                if status != Gst.IteratorResult.OK:
                    break
                if element.get_factory() is not None and element.get_factory().get_name() == "appsink":
                    sink = element
        if sink is None:
            raise PipelineStopped("the pipeline has no appsink; end it in '! videoconvert ! video/x-raw,format=BGR ! appsink'")
        self._pipeline, self._sink, self._bus = pipeline, sink, pipeline.get_bus()
        if pipeline.set_state(Gst.State.PLAYING) == Gst.StateChangeReturn.FAILURE:
            problem = self._bus_problem(self._bus) or "the pipeline refused to start"
            self.stop()
            raise PipelineStopped(problem)

    @staticmethod
    def _bus_problem(bus) -> Optional[str]:
        """The first error on the bus (warnings are logged), or None; drains everything else."""
        Gst = load_gst()
        kinds = Gst.MessageType.ERROR | Gst.MessageType.EOS | Gst.MessageType.WARNING
        while True:
            message = bus.timed_pop_filtered(0, kinds)
            if message is None:
                return None
            if message.type == Gst.MessageType.WARNING:
                warning, _ = message.parse_warning()
                log.warning("GStreamer warning from %s: %s", message.src.get_name(), mask_secrets(warning.message))
            elif message.type == Gst.MessageType.ERROR:
                error, debug = message.parse_error()
                detail = (debug or "").strip().splitlines()[-1:] if debug else []
                return mask_secrets("GStreamer error from %s: %s%s" % (message.src.get_name(), error.message,
                                                                       " (%s)" % detail[0] if detail else ""))
            elif message.type == Gst.MessageType.EOS:
                return "end of stream"

    def pull(self, timeout_s: float) -> Optional[Sample]:
        sink, bus, pipeline = self._sink, self._bus, self._pipeline  # stop() may clear them from another thread
        if sink is None:
            raise PipelineStopped("capture is closed")
        deadline = time.perf_counter() + max(0.0, timeout_s)
        while True:
            wait_s = min(_POLL_S, max(0.0, deadline - time.perf_counter()))
            sample = sink.try_pull_sample(int(wait_s * 1e9))
            if sample is not None:
                return self._convert(sample, pipeline, self._adopt)
            eos = sink.is_eos()
            problem = self._bus_problem(bus)
            if problem is not None and problem != "end of stream":
                raise PipelineStopped(problem)  # an upstream error also ends the stream: the error is what happened
            if eos or problem is not None:
                raise PipelineStopped("end of stream", eos=True)
            if time.perf_counter() >= deadline:
                return None

    @staticmethod
    def _convert(sample, pipeline, adopt=None) -> Sample:
        Gst = load_gst()
        structure = sample.get_caps().get_structure(0)
        width, height = structure.get_value("width"), structure.get_value("height")
        pixel_format = structure.get_value("format")
        if pixel_format == "BGR":
            channels = 3
        elif pixel_format == "BGRx" and adopt is not None:
            channels = 4
        else:
            raise PipelineStopped("the appsink receives %s frames; end the pipeline in "
                                  "'! videoconvert ! video/x-raw,format=BGR ! appsink'" % pixel_format)
        ok, num, den = structure.get_fraction("framerate")
        buffer = sample.get_buffer()
        mapped, info = buffer.map(Gst.MapFlags.READ)
        if not mapped:
            raise PipelineStopped("cannot map a GStreamer buffer")
        try:
            # Rows are padded to 4 bytes (e.g. 642 px * 3 = 1926 -> 1928), so take the stride from the size.
            stride = info.size // height
            data = np.frombuffer(info.data, np.uint8, count=stride * height)
            view = data.reshape(height, stride)[:, :width * channels].reshape(height, width, channels)
            image = view.copy() if channels == 3 else adopt(view)
        finally:
            buffer.unmap(info)
        pts_s = age_s = None
        if buffer.pts != Gst.CLOCK_TIME_NONE:
            pts_s = buffer.pts / 1e9
            clock = pipeline.get_clock()
            if clock is not None:
                age_s = (clock.get_time() - pipeline.get_base_time() - buffer.pts) / 1e9
        offset = None if buffer.offset == Gst.BUFFER_OFFSET_NONE else int(buffer.offset)
        fps = num / den if ok and num > 0 and den > 0 else None
        return Sample(image, pts_s, offset, age_s, fps)

    def stop(self) -> None:
        pipeline, self._pipeline = self._pipeline, None  # close() and a reconnect may both stop it
        self._sink = self._bus = None
        if pipeline is not None:
            pipeline.set_state(load_gst().State.NULL)
