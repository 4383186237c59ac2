"""Pure builders of GStreamer pipeline strings (CSI, USB, RTSP, test, file), with the validation of what goes in."""

import re
from fractions import Fraction
from typing import Optional

from ..errors import SourceError, mask_secrets

# Every live pipeline ends here: one buffer, newest wins, so a slow consumer never sees stale frames.
# sync=false: a camera is already paced by its sensor; syncing to the clock would only add latency.
LIVE_SINK = "appsink drop=true max-buffers=1 sync=false"
# A file pipeline keeps sync=true so it plays at its own frame rate and behaves like a camera.
PACED_SINK = "appsink drop=true max-buffers=1"
TO_BGR = "videoconvert ! video/x-raw,format=BGR"
# Jetson's converter out of NVMM memory: BGRx is the closest format nvvidconv can produce.
NVMM_TO_BGRX = "nvvidconv ! video/x-raw,format=BGRx"


def nvmm_out(to_device: bool = False) -> str:
    """Out of NVMM on a Jetson: BGRx from nvvidconv (the VIC engine), then BGR on the CPU (videoconvert), or, for
    frames that go to CUDA (nvmm_frames.py), BGRx as it is: the device drops the fourth byte."""
    return NVMM_TO_BGRX if to_device else NVMM_TO_BGRX + " ! " + TO_BGR

USB_FORMATS = ("yuyv", "mjpeg")
TEST_PATTERNS = ("smpte", "ball", "snow", "black", "white", "red", "green", "blue", "checkers-1", "checkers-8",
                 "circular", "blink", "smpte75", "zone-plate", "gamut", "chroma-zone-plate", "solid-color",
                 "pinwheel", "spokes", "gradient", "colors")
# What gst_parse_launch treats as syntax inside a property value ('&', ';', '?' in camera URLs are fine).
_URL_FORBIDDEN = re.compile(r"[\s!\"'`\\]")
_DEVICE = re.compile(r"^/dev/video\d+$")


def framerate(fps: float) -> str:
    """A GStreamer fraction: 30 -> '30/1', 29.97 -> '30000/1001'."""
    if fps <= 0:
        raise SourceError("frame rate must be > 0, got %r; pass --fps 30" % fps)
    if float(fps).is_integer():
        return "%d/1" % int(fps)
    ntsc = fps * 1.001  # 29.97, 59.94 and 23.976 are really 30000/1001, 60000/1001 and 24000/1001
    if abs(ntsc - round(ntsc)) < 0.01:
        return "%d/1001" % (round(ntsc) * 1000)
    value = Fraction(fps).limit_denominator(1000)
    return "%d/%d" % (value.numerator, value.denominator)


def _size(width: int, height: int) -> str:
    if int(width) <= 0 or int(height) <= 0:
        raise SourceError("capture size must be positive, got %sx%s; pass e.g. --width 1280 --height 720" % (width, height))
    return "width=%d,height=%d" % (int(width), int(height))


def validate_device(device: str) -> str:
    """A V4L2 node, /dev/videoN and nothing else (no pipeline fragments ride along)."""
    if not _DEVICE.match(device or ""):
        raise SourceError("bad V4L2 device %r; use /dev/videoN (e.g. --source /dev/video0 or usb:0)" % device)
    return device


def validate_url(url: str) -> str:
    """An rtsp:// or rtsps:// URL without spaces, quotes or pipeline characters."""
    if not re.match(r"^rtsps?://[^/]", url or "", re.IGNORECASE):
        raise SourceError("bad RTSP URL %r; use rtsp://host[:port]/path" % mask_secrets(url or ""))
    if _URL_FORBIDDEN.search(url):
        raise SourceError("RTSP URL %r contains spaces, quotes or pipeline characters; percent-encode them (%%20 for a "
                          "space)" % mask_secrets(url))
    return url


def quote_path(path: str) -> str:
    """A file path as a quoted GStreamer property value; quotes and backslashes are refused, not escaped."""
    if not path or any(c in path for c in "\"\\\n\r"):
        raise SourceError("file path %r is empty or contains quotes, backslashes or newlines; rename the file" % path)
    return '"%s"' % path


def csi_pipeline(sensor_id: int, width: int, height: int, fps: float, flip: int = 0,
                 sensor_mode: Optional[int] = None, to_device: bool = False) -> str:
    """nvarguscamerasrc (Jetson's Argus camera stack) -> NVMM -> nvvidconv -> BGR appsink (BGRx: to_device)."""
    if int(sensor_id) < 0:
        raise SourceError("CSI sensor id must be >= 0, got %r; use csi://0" % sensor_id)
    if not 0 <= int(flip) <= 7:
        raise SourceError("flip must be an nvvidconv flip-method between 0 and 7, got %r" % flip)
    source = "nvarguscamerasrc sensor-id=%d" % int(sensor_id)
    if sensor_mode is not None:
        if int(sensor_mode) < 0:
            raise SourceError("sensor-mode must be >= 0, got %r" % sensor_mode)
        source += " sensor-mode=%d" % int(sensor_mode)
    return "%s ! video/x-raw(memory:NVMM),%s,framerate=%s ! nvvidconv flip-method=%d ! video/x-raw,format=BGRx%s ! %s" % (
        source, _size(width, height), framerate(fps), int(flip), "" if to_device else " ! " + TO_BGR, LIVE_SINK)


def choose_usb_format(fourccs) -> str:
    """'yuyv' when the device offers raw YUYV (no decode cost), else 'mjpeg'; SourceError when it offers neither."""
    offered = {f.upper() for f in fourccs}
    if "YUYV" in offered:
        return "yuyv"
    if "MJPG" in offered or "JPEG" in offered:
        return "mjpeg"
    raise SourceError("the camera offers %s but only YUYV and MJPG are supported; pass your own pipeline with --gst"
                      % (", ".join(sorted(offered)) or "no capture formats (is it a metadata node? try the next /dev/videoN)"))


def usb_pipeline(device: str, width: int, height: int, fps: float, pixel_format: str = "yuyv",
                 jetson: bool = False, to_device: bool = False) -> str:
    """v4l2src, raw YUYV or MJPEG (jpegdec, or nvv4l2decoder mjpeg=1 on a Jetson: BGRx out of it with to_device),
    to a BGR appsink."""
    validate_device(device)
    caps = "%s,framerate=%s" % (_size(width, height), framerate(fps))
    if pixel_format == "yuyv":
        middle = "video/x-raw,format=YUY2,%s ! %s" % (caps, TO_BGR)
    elif pixel_format == "mjpeg":
        decode = "nvv4l2decoder mjpeg=1 ! " + nvmm_out(to_device) if jetson else "jpegdec ! " + TO_BGR
        middle = "image/jpeg,%s ! %s" % (caps, decode)
    else:
        raise SourceError("unknown USB pixel format %r; use one of: %s" % (pixel_format, ", ".join(USB_FORMATS)))
    return "v4l2src device=%s ! %s ! %s" % (device, middle, LIVE_SINK)


def rtsp_pipeline(url: str, latency_ms: int = 200, protocols: Optional[str] = None, jetson: bool = False,
                  to_device: bool = False) -> str:
    """rtspsrc -> decodebin (hardware decoders on a Jetson, then nvvidconv out of NVMM: BGRx with to_device)
    -> BGR appsink."""
    validate_url(url)
    if int(latency_ms) < 0:
        raise SourceError("RTSP latency must be >= 0 ms, got %r" % latency_ms)
    source = "rtspsrc location=%s latency=%d" % (url, int(latency_ms))
    if protocols is not None:
        if protocols not in ("tcp", "udp", "udp-mcast", "http"):
            raise SourceError("RTSP protocols must be tcp, udp, udp-mcast or http, got %r" % protocols)
        source += " protocols=%s" % protocols
    convert = nvmm_out(to_device) if jetson else TO_BGR
    return "%s ! decodebin ! %s ! %s" % (source, convert, LIVE_SINK)


def test_pipeline(width: int, height: int, fps: float, pattern: str = "smpte", num_buffers: Optional[int] = None,
                  is_live: bool = True) -> str:
    """videotestsrc, paced like a camera (is-live), optionally ending after num_buffers frames."""
    if pattern not in TEST_PATTERNS:
        raise SourceError("unknown videotestsrc pattern %r; use one of: %s" % (pattern, ", ".join(TEST_PATTERNS)))
    source = "videotestsrc is-live=%s pattern=%s" % ("true" if is_live else "false", pattern)
    if num_buffers is not None:
        source += " num-buffers=%d" % int(num_buffers)
    return "%s ! video/x-raw,%s,framerate=%s ! %s ! %s" % (source, _size(width, height), framerate(fps), TO_BGR, LIVE_SINK)


def file_pipeline(path: str, width: Optional[int] = None, height: Optional[int] = None) -> str:
    """filesrc -> decodebin -> BGR appsink, played at the file's own rate (sync) like a camera."""
    scale = ""
    if width and height:
        scale = "videoscale ! video/x-raw,%s ! " % _size(width, height)
    return "filesrc location=%s ! decodebin ! %s%s ! %s" % (quote_path(path), scale, TO_BGR, PACED_SINK)


def check_custom_pipeline(pipeline: str) -> str:
    """A user's own --gst pipeline: anything goes, but it must end in an appsink we can pull BGR frames from."""
    text = (pipeline or "").strip()
    if not text:
        raise SourceError("empty --gst pipeline; end yours in '! videoconvert ! video/x-raw,format=BGR ! appsink'")
    last = text.split("!")[-1].split()
    if not last or last[0] != "appsink":
        raise SourceError("--gst pipeline must end in an appsink; append '! videoconvert ! video/x-raw,format=BGR ! %s'"
                          % LIVE_SINK)
    return text
