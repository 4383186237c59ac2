"""V4L2 device discovery (nodes, capture formats, sizes, access) and OpenCV's V4L2 capture for USB cameras."""

import errno
import fcntl
import glob
import os
import re
import struct
from dataclasses import dataclass, field
from typing import List, Optional, Tuple

from ..errors import SourceError

# ioctl numbers from linux/videodev2.h: _IOR('V', 0, v4l2_capability), _IOWR('V', 2, v4l2_fmtdesc),
# _IOWR('V', 74, v4l2_frmsizeenum); the structs are 104, 64 and 44 bytes on every Linux ABI.
VIDIOC_QUERYCAP = 0x80685600
VIDIOC_ENUM_FMT = 0xC0405602
VIDIOC_ENUM_FRAMESIZES = 0xC02C564A
BUF_TYPE_VIDEO_CAPTURE = 1
CAP_VIDEO_CAPTURE = 0x00000001
CAP_DEVICE_CAPS = 0x80000000
FRMSIZE_TYPE_DISCRETE = 1
MAX_SIZES_LISTED = 12


@dataclass
class VideoDevice:
    """What one /dev/videoN offers: driver and card names, capture formats (FOURCC -> discrete sizes), access."""

    path: str
    readable: bool
    writable: bool
    card: str = ""
    driver: str = ""
    is_capture: bool = False
    formats: List[Tuple[str, List[Tuple[int, int]]]] = field(default_factory=list)
    error: Optional[str] = None

    @property
    def fourccs(self) -> List[str]:
        return [fourcc for fourcc, _ in self.formats]

    def summary(self) -> str:
        if self.error:
            return "%s: %s" % (self.path, self.error)
        formats = ", ".join("%s %s" % (f, " ".join("%dx%d" % s for s in sizes[:4]) or "") for f, sizes in self.formats)
        kind = "capture" if self.is_capture else "no capture (metadata or output node)"
        return "%s: %s [%s] %s" % (self.path, self.card or "?", kind, formats.strip() or "no formats")


def list_video_devices() -> List[str]:
    """The /dev/videoN nodes that exist, in numeric order."""
    def number(path: str) -> int:
        match = re.search(r"(\d+)$", path)
        return int(match.group(1)) if match else -1

    return sorted(glob.glob("/dev/video[0-9]*"), key=number)


def describe_devices() -> str:
    found = list_video_devices()
    return ", ".join(found) if found else "none (no /dev/video* at all: is a camera plugged in and its driver loaded?)"


def _cstr(raw: bytes) -> str:
    return raw.split(b"\0", 1)[0].decode("utf-8", "replace")


def _fourcc(code: int) -> str:
    return "".join(chr((code >> (8 * i)) & 0xFF) for i in range(4)).strip()


def _frame_sizes(fd: int, pixelformat: int) -> List[Tuple[int, int]]:
    sizes = []
    for index in range(64):
        buf = bytearray(struct.pack("III24s8s", index, pixelformat, 0, b"", b""))
        try:
            fcntl.ioctl(fd, VIDIOC_ENUM_FRAMESIZES, buf)
        except OSError:
            break  # EINVAL ends the enumeration
        kind = struct.unpack_from("I", buf, 8)[0]
        width, height = struct.unpack_from("II", buf, 12)
        if kind != FRMSIZE_TYPE_DISCRETE:
            sizes.append((width, height))  # stepwise/continuous: the minimum; drivers accept a range
            break
        sizes.append((width, height))
    sizes.sort(key=lambda s: -s[0] * s[1])
    return sizes[:MAX_SIZES_LISTED]


def probe_device(path: str) -> VideoDevice:
    """Query a node's capabilities and capture formats; never raises (failures land in .error)."""
    device = VideoDevice(path, os.access(path, os.R_OK), os.access(path, os.W_OK))
    try:
        fd = os.open(path, os.O_RDWR | os.O_NONBLOCK)
    except OSError as e:
        if e.errno in (errno.EACCES, errno.EPERM):
            device.error = "permission denied (fix: sudo usermod -aG video $USER, then log in again)"
        else:
            device.error = "cannot open: %s" % os.strerror(e.errno or 0)
        return device
    try:
        cap = bytearray(104)
        fcntl.ioctl(fd, VIDIOC_QUERYCAP, cap)
        device.driver = _cstr(bytes(cap[0:16]))
        device.card = _cstr(bytes(cap[16:48]))
        capabilities, device_caps = struct.unpack_from("II", cap, 84)
        caps = device_caps if capabilities & CAP_DEVICE_CAPS else capabilities
        device.is_capture = bool(caps & CAP_VIDEO_CAPTURE)
        for index in range(32):
            buf = bytearray(struct.pack("III32sII12s", index, BUF_TYPE_VIDEO_CAPTURE, 0, b"", 0, 0, b""))
            try:
                fcntl.ioctl(fd, VIDIOC_ENUM_FMT, buf)
            except OSError:
                break
            pixelformat = struct.unpack_from("I", buf, 44)[0]
            device.formats.append((_fourcc(pixelformat), _frame_sizes(fd, pixelformat)))
    except OSError as e:
        device.error = "not a V4L2 device (%s)" % os.strerror(e.errno or 0)
    finally:
        os.close(fd)
    return device


def check_device(path: str) -> VideoDevice:
    """The device probed, or a SourceError naming the fix: absent (listing what exists), no access, not a camera."""
    if not os.path.exists(path):
        raise SourceError("camera %s does not exist; video devices here: %s" % (path, describe_devices()))
    device = probe_device(path)
    if not (device.readable and device.writable) or (device.error or "").startswith("permission"):
        raise SourceError("no permission to open %s; fix: sudo usermod -aG video $USER, then log in again" % path)
    if device.error:
        raise SourceError("%s: %s; video devices here: %s" % (path, device.error, describe_devices()))
    if not device.is_capture or not device.formats:
        raise SourceError("%s (%s) is not a capture node (USB cameras also create metadata nodes); try another of: %s"
                          % (path, device.card or device.driver, describe_devices()))
    return device


def open_opencv_v4l2(path: str, width: int, height: int, fps: float, pixel_format: str):
    """cv2.VideoCapture on OpenCV's V4L2 backend, asking for the size, rate and format, with a 1-frame buffer."""
    import cv2

    capture = cv2.VideoCapture(int(path[len("/dev/video"):]), cv2.CAP_V4L2)
    if capture.isOpened():
        capture.set(cv2.CAP_PROP_FOURCC, cv2.VideoWriter_fourcc(*("MJPG" if pixel_format == "mjpeg" else "YUYV")))
        capture.set(cv2.CAP_PROP_FRAME_WIDTH, width)
        capture.set(cv2.CAP_PROP_FRAME_HEIGHT, height)
        capture.set(cv2.CAP_PROP_FPS, fps)
        # Drivers queue 4+ buffers by default: each one is a frame of lag for a slow consumer.
        capture.set(cv2.CAP_PROP_BUFFERSIZE, 1)
    return capture
