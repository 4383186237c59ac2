"""One descriptor per source kind: how --source maps to it, its GStreamer pipeline, the plugins it needs, its likely causes."""

import re
from dataclasses import dataclass
from typing import Callable, Dict, Optional, Tuple

from ..errors import SourceError, mask_secrets
from . import gst_pipelines as pipelines
from .gst_runner import has_element, is_jetson

# How a kind's frames are produced: a GStreamer pipeline that must run; a GStreamer pipeline or, where there is
# no GStreamer runner, OpenCV's V4L2 backend; or Python alone (files, folders, the synthetic source).
GSTREAMER, GSTREAMER_OR_V4L2, PYTHON = "gstreamer", "gstreamer-or-v4l2", "python"
# Elements every GStreamer kind's pipeline ends in (listed by doctor next to the kind's own).
CONVERTERS = ("videoconvert", "appsink")
RTSP_QUERY_OPTIONS = ("protocols",)  # RTSP options also read from the URL's query, and removed from what is sent
RTSP_TCP_ADVICE = "add #protocols=tcp to the URL"
_MISSING_PLUGINS = ("GStreamer element(s) {missing} not installed; fix: sudo apt install gstreamer1.0-plugins-good "
                    "gstreamer1.0-plugins-base (gst-inspect-1.0 {first} to check)")


@dataclass(frozen=True)
class PipelineRequest:
    """What a kind's pipeline builder gets: the spec's location and options, and the size and rate to capture at."""

    location: str
    params: Dict[str, str]
    width: int
    height: int
    fps: float
    flip: int = 0
    pixel_format: Optional[str] = None  # USB: yuyv or mjpeg, chosen from what the device offers
    to_device: bool = False  # a Jetson's NVMM path ends in BGRx for frames that go to CUDA (nvmm_frames.py)


@dataclass(frozen=True)
class SourceKind:
    """A kind of --source. `matches` and `parse` read the --source text (None for the path kinds, which the
    filesystem decides); `build` makes the GStreamer pipeline; `plugins` are the elements it cannot run without
    (`optional_plugins`: used for some devices only); `causes` are named when it delivers no frame."""

    name: str
    forms: Tuple[str, ...]  # how it is written on --source, for help and errors
    location: str  # what SourceSpec.location holds: path, device, sensor, url, pipeline or nothing
    runner: str = PYTHON
    matches: Optional[Callable[[str], bool]] = None  # the lower-cased --source text is this kind
    parse: Optional[Callable[[str, str], Tuple[str, Dict[str, str]]]] = None  # (text, uri) -> (location, params)
    sized: bool = False  # takes width/height/fps from its options, else source.width/height/fps
    stream_fps: bool = False  # its frame rate comes from the stream's caps once it runs
    build: Optional[Callable[[PipelineRequest], str]] = None
    plugins: Tuple[str, ...] = ()
    optional_plugins: Tuple[str, ...] = ()
    missing_plugins: str = _MISSING_PLUGINS  # the error; {missing}: the missing elements, {first}: the first one
    decoders: Tuple[str, ...] = ()  # (on a Jetson, elsewhere): what decodebin needs for the stream's codec
    daemon: Optional[str] = None  # a service the camera needs
    causes: str = ""  # DEVICE is replaced by the location
    description: str = "{location}"  # how logs and errors name the source

    def describe(self, location: str) -> str:
        """How logs, errors, summary.json and the page name the source: never with the URL's password."""
        return mask_secrets(self.description.format(location=location))

    def doctor_plugins(self) -> Tuple[str, ...]:
        """Every element doctor lists for this kind; empty when it needs no GStreamer (test:// runs in Python unless
        ?gst=1) or its pipeline is not known in advance (a custom one)."""
        if not self.plugins or self.runner == PYTHON:
            return ()
        return self.plugins + self.optional_plugins + CONVERTERS


def query(text: str) -> Dict[str, str]:
    params = {}
    for part in filter(None, text.split("&")):
        key, _, value = part.partition("=")
        params[key] = value
    return params


def int_param(params: Dict[str, str], names, default: Optional[int] = None) -> Optional[int]:
    for name in names:
        if params.get(name) not in (None, ""):
            try:
                return int(params[name])
            except ValueError as e:
                raise SourceError("source option %s must be a whole number, got %r" % (name, params[name])) from e
    return default


def _parse_test(text: str, uri: str) -> Tuple[str, Dict[str, str]]:
    body, _, raw_query = text[len("test://"):].partition("?")
    params = query(raw_query)
    match = re.match(r"^(?:(\d+)x(\d+))?(?:@(\d+(?:\.\d+)?))?$", body)
    if not match:
        raise SourceError("bad test source %r; use test://640x480@30 or test://?width=640&height=480&fps=30" % uri)
    if match.group(1):
        params.setdefault("width", match.group(1))
        params.setdefault("height", match.group(2))
    if match.group(3):
        params.setdefault("fps", match.group(3))
    return "", params


def _parse_csi(text: str, uri: str) -> Tuple[str, Dict[str, str]]:
    if text.lower().startswith("csi://"):
        body, _, raw_query = text[len("csi://"):].partition("?")
    else:
        body, raw_query = "0", text[4:]
    sensor = body or "0"
    if not sensor.isdigit():
        raise SourceError("bad CSI sensor id %r; use csi://0, csi://1, ... (options: csi://0?sensor-mode=3)" % sensor)
    return sensor, query(raw_query)


def _parse_usb(text: str, uri: str) -> Tuple[str, Dict[str, str]]:
    body, _, raw_query = text.partition("?")
    if body.lower() == "usb" or re.match(r"^usb:\d+$", body.lower()):
        device = "/dev/video%s" % (body.partition(":")[2] or "0")
    else:
        device = body[len("v4l2://"):] if body.lower().startswith("v4l2://") else body
    if not re.match(r"^/dev/video\d+$", device):
        raise SourceError("bad V4L2 device %r in %r; use /dev/videoN" % (device, uri))
    return device, query(raw_query)


def _parse_rtsp(text: str, uri: str) -> Tuple[str, Dict[str, str]]:
    # Options ride in the fragment (never sent to the server): rtsp://cam/stream#latency=100&protocols=tcp
    url, _, fragment = text.partition("#")
    if any(c in url for c in " !\"'`\n\t"):
        raise SourceError("RTSP URL %r contains spaces or pipeline characters; quote only the URL" % mask_secrets(uri))
    params = _take_query_options(url)
    params.update(query(fragment))  # the fragment, the documented form, wins
    return _drop_query_options(url), params


def _take_query_options(url: str) -> Dict[str, str]:
    """?protocols=tcp in the query is read too (the form users try first); the camera's own keys stay its own."""
    return {k: v for k, v in query(url.partition("?")[2]).items() if k in RTSP_QUERY_OPTIONS}


def _drop_query_options(url: str) -> str:
    """The URL sent to the server: without the query keys this app reads (a server would ignore or refuse them)."""
    base, _, raw_query = url.partition("?")
    kept = [part for part in filter(None, raw_query.split("&")) if part.partition("=")[0] not in RTSP_QUERY_OPTIONS]
    return base + ("?" + "&".join(kept) if kept else "")


def jetson_mjpeg(pixel_format: Optional[str]) -> bool:
    """Whether a USB camera's MJPEG decodes on a Jetson's hardware decoder into NVMM memory."""
    return pixel_format == "mjpeg" and is_jetson() and has_element("nvv4l2decoder") is not False


def leaves_nvmm(kind: str, pixel_format: Optional[str]) -> bool:
    """Whether the kind's pipeline leaves NVMM memory through nvvidconv here (a Jetson): CSI, RTSP on the hardware
    decoder, USB MJPEG; where it does, its frames may go to CUDA as BGRx (nvmm_frames.py)."""
    return (kind in ("csi", "rtsp") and is_jetson()) or (kind == "usb" and jetson_mjpeg(pixel_format))


def _build_usb(r: PipelineRequest) -> str:
    return pipelines.usb_pipeline(r.location, r.width, r.height, r.fps, r.pixel_format or "yuyv",
                                  jetson_mjpeg(r.pixel_format), r.to_device)


_KINDS = (
    SourceKind(
        "test", ("test://", "test://WxH@FPS", "test://?width=W&height=H&fps=F&frames=N"), "nothing",
        matches=lambda lower: lower.startswith("test://"), parse=_parse_test, sized=True,
        build=lambda r: pipelines.test_pipeline(r.width, r.height, r.fps, r.params.get("pattern", "smpte"),
                                                int_param(r.params, ("frames", "num_buffers"))),
        plugins=("videotestsrc",),
        causes="videotestsrc missing (sudo apt install gstreamer1.0-plugins-base)",
        description="test:// (videotestsrc)"),
    SourceKind(
        "csi", ("csi://0", "csi", "csi://0?sensor-mode=3"), "sensor", runner=GSTREAMER,
        matches=lambda lower: lower == "csi" or lower.startswith(("csi://", "csi?")), parse=_parse_csi, sized=True,
        build=lambda r: pipelines.csi_pipeline(int(r.location), r.width, r.height, r.fps, r.flip,
                                               int_param(r.params, ("sensor_mode", "sensor-mode", "mode")),
                                               r.to_device),
        plugins=("nvarguscamerasrc", "nvvidconv"),
        missing_plugins="GStreamer element(s) {missing} not installed: CSI cameras need a Jetson with JetPack's "
                        "nvarguscamerasrc (sudo apt install nvidia-l4t-gstreamer); on a desktop use usb:0 or test://",
        daemon="nvargus-daemon",
        causes="nvargus-daemon not running (sudo systemctl restart nvargus-daemon), sensor not connected or its "
               "ribbon reversed, wrong sensor-id (try csi://1), the camera busy in another process, or a size/fps "
               "the sensor has no mode for",
        description="csi://{location}"),
    SourceKind(
        "usb", ("usb:0", "usb", "/dev/video0", "v4l2:///dev/video0", "usb:0?format=mjpeg"), "device",
        runner=GSTREAMER_OR_V4L2, matches=lambda lower: lower.startswith(("usb", "v4l2://", "/dev/video")),
        parse=_parse_usb, sized=True, build=_build_usb, plugins=("v4l2src",), optional_plugins=("jpegdec",),
        causes="the camera busy in another process (fuser -v DEVICE), no permission (sudo usermod -aG video $USER), "
               "or a size/fps/format it does not offer (python run.py doctor --source DEVICE lists them)"),
    SourceKind(
        "rtsp", ("rtsp://host/path", "rtsps://host/path", "rtsp://host/path#latency=100&protocols=tcp"), "url",
        runner=GSTREAMER, matches=lambda lower: lower.startswith(("rtsp://", "rtsps://")), parse=_parse_rtsp,
        stream_fps=True,
        build=lambda r: pipelines.rtsp_pipeline(r.location, int_param(r.params, ("latency", "latency_ms"), 200),
                                                r.params.get("protocols"), is_jetson(), r.to_device),
        plugins=("rtspsrc", "decodebin"), decoders=("nvv4l2decoder", "avdec_h264"),
        causes="host unreachable, wrong path or credentials, a firewall on UDP (" + RTSP_TCP_ADVICE + "), or a "
               "codec with no decoder here"),
    SourceKind(
        "gst", ("gst://PIPELINE", "--gst PIPELINE"), "pipeline", runner=GSTREAMER,
        matches=lambda lower: lower.startswith("gst://"), parse=lambda text, uri: (text[len("gst://"):], {}),
        stream_fps=True, build=lambda r: pipelines.check_custom_pipeline(r.location),
        causes="an element that is not installed, caps that cannot be negotiated, or a source that never starts",
        description="gst pipeline"),
    SourceKind("folder", ("a folder of images",), "path"),
    SourceKind("image", ("photo.jpg",), "path"),
    SourceKind("file", ("clip.mp4", "file://clip.mp4"), "path"),
)
KINDS = {kind.name: kind for kind in _KINDS}  # type: Dict[str, SourceKind]


def source_kind(name: str) -> SourceKind:
    if name not in KINDS:
        raise SourceError("unknown source kind %r; kinds: %s" % (name, ", ".join(KINDS)))
    return KINDS[name]


def kind_of(text: str) -> Optional[SourceKind]:
    """The kind whose --source form `text` is written in; None for a path (or an unknown scheme)."""
    lower = text.lower()
    for kind in _KINDS:
        if kind.matches is not None and kind.matches(lower):
            return kind
    return None
