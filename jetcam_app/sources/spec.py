"""Parse --source strings in the jetson-utils forms into a SourceSpec, and create the Source for it."""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Dict

from ..config import SourceConfig
from ..errors import SourceError
from ..registry import SOURCES

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


@dataclass(frozen=True)
class SourceSpec:
    kind: str  # file, image, folder, test, csi, usb, rtsp, gst
    location: str  # path, device node, sensor id, URL, or pipeline
    params: Dict[str, str] = field(default_factory=dict)

    @property
    def is_camera(self) -> bool:
        return self.kind in ("csi", "usb", "rtsp", "gst")


def _query(text: str) -> Dict[str, str]:
    params = {}
    for part in filter(None, text.split("&")):
        key, _, value = part.partition("=")
        params[key] = value
    return params


def parse_source(uri: str) -> SourceSpec:
    """csi://0, csi, usb, usb:1, /dev/video0, v4l2:///dev/video0, rtsp://..., file://path, a path,
    a directory, test://[WxH][@FPS] or test://?width=..&height=..&fps=..&frames=.."""
    text = uri.strip()
    if not text:
        raise SourceError("empty --source; give a video file, a folder of images, csi://0, usb:0 or test://")
    lower = text.lower()
    if lower.startswith("test://"):
        rest = text[len("test://"):]
        body, _, query = rest.partition("?")
        params = _query(query)
        match = re.match(r"^(?:(\d+)x(\d+))?(?:@(\d+(?:\.\d+)?))?$", body)
        if not match:
            raise SourceError("bad test source %r; use test://640x480@30 or test://?width=640&height=480&fps=30" % uri)
        if match.group(1):
            params.setdefault("width", match.group(1))
            params.setdefault("height", match.group(2))
        if match.group(3):
            params.setdefault("fps", match.group(3))
        return SourceSpec("test", "", params)
    if lower == "csi" or lower.startswith(("csi://", "csi?")):
        body, _, query = text[len("csi://"):].partition("?") if lower.startswith("csi://") else ("0", "", text[4:])
        sensor = body or "0"
        if not sensor.isdigit():
            raise SourceError("bad CSI sensor id %r; use csi://0, csi://1, ... (options: csi://0?sensor-mode=3)" % sensor)
        return SourceSpec("csi", sensor, _query(query))
    if lower.startswith(("usb", "v4l2://", "/dev/video")):
        body, _, query = text.partition("?")
        if body.lower() == "usb" or re.match(r"^usb:\d+$", body.lower()):
            device = "/dev/video%s" % (body.partition(":")[2] or "0")
        else:
            device = body[len("v4l2://"):] if body.lower().startswith("v4l2://") else body
        spec = _usb_device(device, uri)
        return SourceSpec("usb", spec.location, _query(query))
    if lower.startswith(("rtsp://", "rtsps://")):
        # Options ride in the fragment (never sent to the server): rtsp://cam/stream#latency=100&protocols=tcp
        url, _, fragment = text.partition("#")
        if any(c in url for c in " !\"'`\n\t"):
            raise SourceError("RTSP URL %r contains spaces or pipeline characters; quote only the URL" % uri)
        return SourceSpec("rtsp", url, _query(fragment))
    if lower.startswith("gst://"):
        return SourceSpec("gst", text[len("gst://"):])
    if re.match(r"^[a-z][a-z0-9+.-]*://", lower) and not lower.startswith("file://"):
        raise SourceError("unknown source scheme in %r; use csi://, usb:N, v4l2://, rtsp://, file://, test:// or a path" % uri)
    if lower.startswith("file://"):
        text = text[len("file://"):]
    path = os.path.expanduser(text)
    if os.path.isdir(path):
        return SourceSpec("folder", path)
    if path.lower().endswith(IMAGE_EXTENSIONS):
        return SourceSpec("image", path)
    return SourceSpec("file", path)


def _usb_device(device: str, uri: str) -> SourceSpec:
    if not re.match(r"^/dev/video\d+$", device):
        raise SourceError("bad V4L2 device %r in %r; use /dev/videoN" % (device, uri))
    return SourceSpec("usb", device)


def create_source(config: SourceConfig):
    """The Source for config.uri (a custom config.gst pipeline wins)."""
    from ..assets import sample_video_path

    uri = config.uri
    if config.gst:
        spec = SourceSpec("gst", config.gst)
    elif uri == "sample":
        spec = SourceSpec("file", sample_video_path())
    else:
        spec = parse_source(uri)
    kind = spec.kind
    if kind == "test" and spec.params.get("gst") == "1":
        kind = "gst"  # test://...?gst=1 runs videotestsrc through the same class as a CSI camera
    return SOURCES.get(kind)(spec, config)


def source_name(config: SourceConfig) -> str:
    """How predictions.jsonl names the source of a video or camera frame: the URI or path as given
    ('sample': the bundled video's path, relative to the working folder when inside it)."""
    if config.gst:
        return "gst://" + config.gst
    if config.uri != "sample":
        return config.uri
    from ..assets import MEDIA_DIR, SAMPLE_VIDEO

    path = os.path.join(MEDIA_DIR, SAMPLE_VIDEO)  # named even where absent: an injected source may stand in for it
    relative = os.path.relpath(path)
    return path if relative.startswith("..") else relative
