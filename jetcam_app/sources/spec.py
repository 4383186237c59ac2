"""Parse --source strings in the jetson-utils forms into a SourceSpec, and create the Source for it."""

import logging
import os
import re
from dataclasses import dataclass, field
from typing import Dict

from ..config import SourceConfig
from ..errors import SourceError, mask_secrets
from ..registry import SOURCES
from .kinds import PYTHON, kind_of, source_kind

log = logging.getLogger(__name__)
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


@dataclass(frozen=True)
class SourceSpec:
    kind: str  # a name in kinds.KINDS: file, image, folder, test, csi, usb, rtsp, gst
    location: str  # path, device node, sensor id, URL, or pipeline (the kind's descriptor says which)
    params: Dict[str, str] = field(default_factory=dict)


def parse_source(uri: str) -> SourceSpec:
    """csi://0, csi, usb, usb:1, /dev/video0, v4l2:///dev/video0, rtsp://..., file://path, a path,
    a directory, test://[WxH][@FPS] or test://?width=..&height=..&fps=..&frames=.."""
    text = uri.strip()
    if not text:
        raise SourceError("empty --source; give a video file, a folder of images, csi://0, usb:0 or test://")
    kind = kind_of(text)
    if kind is not None:
        location, params = kind.parse(text, uri)
        return SourceSpec(kind.name, location, params)
    lower = text.lower()
    if re.match(r"^[a-z][a-z0-9+.-]*://", lower) and not lower.startswith("file://"):
        raise SourceError("unknown source scheme in %r; use csi://, usb:N, v4l2://, rtsp://, file://, test:// or a path"
                          % mask_secrets(uri))
    if lower.startswith("file://"):
        text = text[len("file://"):]
    path = os.path.expanduser(text)
    if os.path.isdir(path):
        return SourceSpec("folder", path)
    if path.lower().endswith(IMAGE_EXTENSIONS):
        return SourceSpec("image", path)
    return SourceSpec("file", path)


def create_source(config: SourceConfig, buffers=None, device=None):
    """The Source for config.uri (a custom config.gst pipeline wins); `buffers`: the stages' HostFramePool for the
    source to decode into, or None; `device`: the engine's torch device, where a video file may decode on NVDEC
    (source.decode; None = the CPU)."""
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
    if kind == "file" and config.decode != "cpu":
        from .nvdec import NvdecVideoSource, gpu_decode_choice

        on_gpu, why = gpu_decode_choice(config.decode, device)
        log.info("%s: %s", spec.location, why)
        if on_gpu:
            return NvdecVideoSource(spec, config, device, buffers)
    if source_kind(kind).runner != PYTHON:  # GStreamer: a Jetson's NVMM frames may go to the device (nvmm_frames.py)
        return SOURCES.get(kind)(spec, config, buffers, device=device)
    return SOURCES.get(kind)(spec, config, buffers)


def prediction_source(config: SourceConfig) -> str:
    """How predictions.jsonl names the source of a video or camera frame: the URI or path as given, but for a URL's
    password ('sample': the bundled video's path, relative to the working folder when inside it)."""
    if config.gst:
        return mask_secrets("gst://" + config.gst)
    if config.uri != "sample":
        return mask_secrets(config.uri)
    from ..assets import MEDIA_DIR, SAMPLE_VIDEO

    path = os.path.join(MEDIA_DIR, SAMPLE_VIDEO)  # named even where absent: an injected source may stand in for it
    relative = os.path.relpath(path)
    return path if relative.startswith("..") else relative
