"""GStreamerSource: live CSI, USB, RTSP, test and custom pipelines, with a first-frame timeout and reconnects."""

import dataclasses
import logging
import threading
import time
from typing import Optional

from ..config import SourceConfig
from ..errors import CaptureTimeout, SourceError, mask_secrets
from ..types import DeviceFrame, Frame
from . import gst_pipelines as pipelines
from . import v4l2
from .base import Source
from .gst_runner import (GObjectRunner, OpenCVRunner, PipelineStopped, Sample, gobject_reason, has_element,
                         opencv_has_gstreamer)
from .kinds import GSTREAMER_OR_V4L2, PipelineRequest, leaves_nvmm, source_kind
from .nvmm_frames import DeviceUpload, device_frames_choice

log = logging.getLogger(__name__)

CAPTURE_MODES = ("auto", "opencv", "gobject")


# GStreamer elements whose end of stream means a camera or a stream went away (reconnect), not the end.
LIVE_ELEMENTS = ("rtspsrc", "v4l2src", "nvarguscamerasrc", "nvv4l2camerasrc", "udpsrc", "tcpclientsrc", "souphttpsrc",
                 "srtsrc", "rtmpsrc", "libcamerasrc", "uridecodebin uri=rtsp", "uridecodebin uri=http")


class GStreamerSource(Source):
    """A live camera or stream. Latest frame wins inside the pipeline (appsink drop=true max-buffers=1); a disconnect,
    end of stream, bus error or a stall longer than timeout_s triggers reconnects with exponential backoff."""

    is_live = True
    backoff_initial_s = 0.5
    backoff_max_s = 5.0
    # A stream that ran this long since its last reconnect has recovered: the attempt budget starts over.
    stable_after_s = 10.0

    def __init__(self, spec, config: SourceConfig, buffers=None, device=None):
        super().__init__(buffers)
        self.device = device  # the engine's torch device: a Jetson's NVMM frames may go there as they are
        if config.capture not in CAPTURE_MODES:
            raise SourceError("unknown capture mode %r; use one of: %s" % (config.capture, ", ".join(CAPTURE_MODES)))
        if config.reconnect_attempts < 0 or config.timeout_s <= 0:
            raise SourceError("source.reconnect_attempts must be >= 0 and source.timeout_s > 0")
        self.spec = spec
        self.config = config
        self.kind = source_kind(spec.kind)
        self.pipeline = None  # type: Optional[str]  # the GStreamer pipeline, None for OpenCV's V4L2 backend
        self.runner_name = None  # type: Optional[str]
        self.stop_reason = None  # type: Optional[str]
        self.skipped_frames = 0  # gaps in the source's frame counter: frames the appsink dropped before a read
        if self.kind.sized:
            try:
                self.nominal_fps = float(spec.params.get("fps", config.fps))
                self.frame_size = (int(spec.params.get("width", config.width)),
                                   int(spec.params.get("height", config.height)))
            except ValueError as e:
                raise SourceError("bad size or fps in %r (%s); numbers only, e.g. width=1280&height=720&fps=30"
                                  % (spec.params, e)) from e
        self._runner = None
        self._runner_factory = None
        self._closed = threading.Event()
        self._pending = None  # type: Optional[Frame]  # the first frame, read by open() to prove the camera works
        self._failed = False
        self._attempts_used = 0
        self._retry_at = None  # type: Optional[float]
        self._next_index = 0
        self._index_base = None  # type: Optional[int]
        self._ts_base = 0.0
        self._last_ts = None  # type: Optional[float]
        self._last_frame_wall = 0.0  # when the last frame arrived (for the timestamp gap over an outage)
        self._stall_since = 0.0  # the last frame, or the (re)start of the pipeline (for stall detection)
        self._session_start = None  # type: Optional[float]
        self._session_first = True
        self._open_wall = 0.0

    # -- building -------------------------------------------------------------------------------------------

    def _build(self) -> None:
        """Choose the pipeline and the runner; checks the device and the plugins first, so failures are specific."""
        kind, params, config = self.kind, self.spec.params, self.config
        width, height = self.frame_size or (config.width, config.height)
        fps = self.nominal_fps or config.fps
        if kind.build is None:
            raise SourceError("GStreamerSource cannot open a %r source; use csi://, usb:N, rtsp:// or --gst" % kind.name)
        request = PipelineRequest(self.spec.location, params, width, height, fps, config.flip)
        if kind.runner == GSTREAMER_OR_V4L2:
            device = v4l2.check_device(pipelines.validate_device(self.spec.location))
            pixel_format = params.get("format") or pipelines.choose_usb_format(device.fourccs)
            if config.capture == "opencv" or (config.capture == "auto" and not self._gst_possible()):
                if config.capture == "auto":
                    log.info("no GStreamer runner here (%s); USB through OpenCV's V4L2 backend", self._gst_missing())
                path = device.path
                self.runner_name = "OpenCV V4L2 backend"
                self._runner_factory = lambda: OpenCVRunner(
                    lambda: v4l2.open_opencv_v4l2(path, width, height, fps, pixel_format), self.runner_name)
                return
            request = dataclasses.replace(request, location=device.path, pixel_format=pixel_format)
        if self._frames_to_device(request.pixel_format):
            request = dataclasses.replace(request, to_device=True)
        self.pipeline = kind.build(request)
        self._choose_runner()
        self._check_plugins()

    def _frames_to_device(self, pixel_format) -> bool:
        """source.decode for a live source: on a Jetson, NVMM frames go to CUDA as BGRx (nvmm_frames.py)."""
        nvmm = leaves_nvmm(self.kind.name, pixel_format)
        on, why = device_frames_choice(self.config.decode, self.device, nvmm, gobject_reason() if nvmm else None,
                                       self.config.capture)
        if nvmm or self.config.decode == "gpu":
            log.info("%s: %s", self.describe(), why)
        self.decoded_on = "gpu" if on else "cpu"
        return on

    def _gst_possible(self) -> bool:
        return opencv_has_gstreamer() or gobject_reason() is None

    def _gst_missing(self) -> str:
        return "OpenCV was built without GStreamer and %s" % (gobject_reason() or "")

    def _choose_runner(self) -> None:
        mode, pipeline = self.config.capture, self.pipeline
        # BGRx frames for the device need the buffer itself, which only PyGObject's runner hands over
        use_opencv = mode == "opencv" or (mode == "auto" and opencv_has_gstreamer() and self.decoded_on != "gpu")
        if use_opencv:
            if not opencv_has_gstreamer():
                raise SourceError("--capture opencv needs OpenCV built with GStreamer (pip's opencv-python is not); "
                                  "fix: use --capture gobject, or JetPack's OpenCV (pip uninstall opencv-python)")
            import cv2

            self.runner_name = "OpenCV CAP_GSTREAMER"
            self._runner_factory = lambda: OpenCVRunner(lambda: cv2.VideoCapture(pipeline, cv2.CAP_GSTREAMER),
                                                        self.runner_name)
            return
        reason = gobject_reason()
        if reason:
            raise SourceError("cannot run a GStreamer pipeline: OpenCV was built without GStreamer and %s" % reason)
        self.runner_name = GObjectRunner.name
        adopt = DeviceUpload(self.device) if self.decoded_on == "gpu" else None
        self._runner_factory = lambda: GObjectRunner(pipeline, adopt)

    def _check_plugins(self) -> None:
        missing = [name for name in self.kind.plugins if has_element(name) is False]
        if missing:
            raise SourceError(self.kind.missing_plugins.format(missing=", ".join(missing), first=missing[0]))

    # -- the stream -----------------------------------------------------------------------------------------

    def open(self) -> None:
        self._build()
        log.info("%s: capture through %s; pipeline: %s", self.describe(), self.runner_name,
                 mask_secrets(self.pipeline or "(V4L2)"))
        self._open_wall = time.perf_counter()
        try:
            self._start_runner()
            self._pending = self._first_frame(self.config.timeout_s)
        except PipelineStopped as e:
            self._stop_runner()
            raise SourceError(self._open_failure(str(e))) from e

    def _open_failure(self, problem: str) -> str:
        causes = (self.kind.causes or source_kind("gst").causes).replace("DEVICE", self.spec.location)
        # the pipeline is shown as it ran, but for the password an rtsp:// URL carries
        return mask_secrets("%s did not deliver a frame: %s; pipeline: %s; likely causes: %s" % (
            self.describe(), problem, self.pipeline or "OpenCV V4L2 %s" % self.spec.location, causes))

    def _first_frame(self, timeout_s: float) -> Frame:
        sample = self._runner.pull(timeout_s)
        if sample is None:
            raise PipelineStopped("no frame within %.1f s (source.timeout_s)" % timeout_s)
        return self._to_frame(sample)

    def _start_runner(self) -> None:
        runner = self._runner_factory()
        self._runner = runner
        self._session_first = True
        self._stall_since = time.perf_counter()
        runner.start(self.config.timeout_s)
        if self._closed.is_set():  # close() ran while this (re)connect was starting
            self._stop_runner()

    def _stop_runner(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            runner.stop()

    def read(self, timeout_s: float = 1.0) -> Optional[Frame]:
        if self._pending is not None:
            frame, self._pending = self._pending, None
            return frame
        deadline = time.perf_counter() + timeout_s
        while not (self._failed or self._closed.is_set()):
            now = time.perf_counter()
            if self._retry_at is not None:
                if now < self._retry_at:
                    if now >= deadline:
                        raise CaptureTimeout("%s: reconnecting (attempt %d/%d)" % (
                            self.describe(), self._attempts_used, self.config.reconnect_attempts))
                    self._closed.wait(min(self._retry_at, deadline) - now)
                    continue
                self._retry_at = None
                try:
                    self._start_runner()
                except PipelineStopped as e:
                    self._schedule_reconnect(str(e))
                continue
            if now >= deadline:
                raise CaptureTimeout("%s: no frame within %.2f s" % (self.describe(), timeout_s))
            runner = self._runner
            if runner is None:  # closed from another thread
                break
            stall_s = self._stall_since + self.config.timeout_s - now
            try:
                sample = runner.pull(max(0.0, min(deadline - now, stall_s)))
            except PipelineStopped as e:
                if e.eos and self._finite():
                    self._stop_runner()
                    self._failed = True
                    self.stop_reason = "end of stream"
                    break
                self._schedule_reconnect(str(e))
                continue
            if sample is not None:
                return self._to_frame(sample)
            if time.perf_counter() - self._stall_since >= self.config.timeout_s:
                self._schedule_reconnect("no frame for %.1f s" % self.config.timeout_s)
        return None

    def _finite(self) -> bool:
        """Whether end of stream is the end: test:// and pipelines of your own (videotestsrc num-buffers=25, a
        file), unless they read a camera or the network, whose end of stream is a disconnect to reconnect."""
        if self.spec.kind not in ("test", "gst"):
            return False
        pipeline = (self.pipeline or "").lower()
        return not any(element in pipeline for element in LIVE_ELEMENTS)

    def _schedule_reconnect(self, reason: str) -> None:
        self._stop_runner()
        if self._closed.is_set():
            return
        now = time.perf_counter()
        if self._session_start is not None and now - self._session_start >= self.stable_after_s:
            self._attempts_used = 0
        self._session_start = None
        if self._attempts_used >= self.config.reconnect_attempts:
            self._failed = True
            if self.config.reconnect_attempts == 0:
                self.stop_reason = "%s; not reconnecting (source.reconnect_attempts is 0)" % reason
                log.info("%s: %s", self.describe(), self.stop_reason)
            else:
                self.stop_reason = "%s; gave up after %d reconnect attempt(s)" % (reason, self._attempts_used)
                log.error("%s: %s", self.describe(), self.stop_reason)
            return
        self._attempts_used += 1
        self.reconnects += 1
        backoff_s = min(self.backoff_max_s, self.backoff_initial_s * 2 ** (self._attempts_used - 1))
        log.warning("%s: %s; reconnect attempt %d/%d in %.1f s", self.describe(), reason, self._attempts_used,
                    self.config.reconnect_attempts, backoff_s)
        self._retry_at = now + backoff_s

    def _to_frame(self, sample: Sample) -> Frame:
        now = time.perf_counter()
        if self._session_first:
            self._session_first = False
            self._session_start = now
            if self._attempts_used:
                log.info("%s: reconnected (attempt %d)", self.describe(), self._attempts_used)
            # Frame indices and timestamps run on across reconnects: the new session starts where the
            # last one stopped, plus the wall time the outage took, so a replay reproduces the gap.
            self._index_base = None if sample.offset is None else self._next_index - sample.offset
            if sample.pts_s is not None:
                self._ts_base = 0.0 if self._last_ts is None else self._last_ts + (now - self._last_frame_wall) - sample.pts_s
            if sample.fps and self.kind.stream_fps:
                self.nominal_fps = sample.fps
        if self._index_base is not None and sample.offset is not None:
            index = max(self._next_index, self._index_base + sample.offset)  # gaps = frames the appsink dropped
            self.skipped_frames += index - self._next_index
        else:
            index = self._next_index
        timestamp_s = sample.pts_s + self._ts_base if sample.pts_s is not None else now - self._open_wall
        age_s = sample.age_s if sample.age_s is not None and 0.0 <= sample.age_s < 10.0 else 0.0
        self._next_index, self._last_ts = index + 1, timestamp_s
        self._last_frame_wall = self._stall_since = now
        height, width = sample.image.shape[:2]
        self.frame_size = (width, height)
        if self.decoded_on == "gpu":
            return DeviceFrame(None, index, timestamp_s, now - age_s, device_image=sample.image)
        return Frame(sample.image, index, timestamp_s, now - age_s)

    def close(self) -> None:
        self._closed.set()
        self._pending = None
        self._stop_runner()

    def describe(self) -> str:
        return self.kind.describe(self.spec.location)
