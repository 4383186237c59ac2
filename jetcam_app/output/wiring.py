"""Which sinks each source and the mosaic get, from the output section: one source owns the window, the saved
results, the recording and the page; several sources each own a recording and a picture on the page, and the
window, a mosaic recording and the page's main picture show the mosaic of them."""

import logging
import os
from typing import Any, List, Optional, Sequence

from ..config import OutputConfig
from .input_recorder import LazyInputRecorder
from .live_status import LiveStatus
from .sinks.base import Sink, build_sinks
from .sinks.image_files import ImageFilesSink
from .sinks.video_file import LazyVideoFileSink
from .sinks.web import WebSink
from .sinks.window import DisplaySink
from .video.fmp4 import VideoSettings
from .video.outputs import LiveVideo

log = logging.getLogger(__name__)
WINDOW_TITLE = "jetcam_app"


def per_source_path(path: str, name: str) -> str:
    """rec.mp4 -> rec_<name>.mp4: one file per source."""
    root, ext = os.path.splitext(path)
    return "%s_%s%s" % (root, name, ext)


def live_video(cfg: OutputConfig, names: Sequence[str], fps: float) -> Optional[LiveVideo]:
    """The live H.264 encoders, when an output streams them (the page, RTSP out or push); None otherwise."""
    if not (cfg.http_port or cfg.rtsp_out or cfg.rtsp_push):
        return None
    live = LiveVideo(names, fps, VideoSettings.from_output(cfg))
    try:
        # imported here: GStreamer loads only for a run that serves or pushes RTSP
        if cfg.rtsp_out:
            from .video.rtsp_out import RtspOut

            live.closers.append(RtspOut(cfg.rtsp_out, cfg.http_host, live.encoders, live.several))
        if cfg.rtsp_push:
            from .video.rtsp_push import RtspPush

            live.closers.append(RtspPush(cfg.rtsp_push, live.encoders["main"]))
    except BaseException:
        live.close()  # a port in use: what already started (the RTSP server) ends before the error is shown
        raise
    return live


def web_sink(cfg: OutputConfig, status: LiveStatus, names: Sequence[str],
             live: Optional[LiveVideo] = None) -> Optional[WebSink]:
    """The live page, when --http asks for it; with several sources also each one's own stream."""
    if not cfg.http_port:
        return None
    several = len(names) > 1
    web = WebSink(cfg.http_port, cfg.http_host, cfg.http_token, status, sources=names if several else (),
                  video=VideoSettings.from_output(cfg), encoders=live.encoders if live is not None else None)
    log.info("live page %son %s%s", "(the mosaic and each source's own stream) " if several else "", web.url,
             "?token=..." if cfg.http_token else "")
    return web


def source_sinks(cfg: OutputConfig, several: bool, name: str, source, out_dir: str, fps: float, headless: bool,
                 web: Optional[WebSink], live: Optional[LiveVideo] = None) -> Sink:
    """The sinks of one source's annotated frames."""
    sinks = []  # type: List[Any]
    if live is not None:
        sinks.append(live.source_sink(name))
    if several:
        if cfg.record and not cfg.mosaic:
            sinks.append(LazyVideoFileSink(per_source_path(cfg.record, name), fps, VideoSettings.from_output(cfg)))
        if web is not None:
            sinks.append(web.source_sink(name))
        return build_sinks(sinks)
    if not headless:
        sinks.append(DisplaySink(WINDOW_TITLE))
    # --save (the default for images): annotated images under their own names; a video as <run>/annotated.mp4
    if source.still_images and cfg.save is not False:
        sinks.append(ImageFilesSink(out_dir, source.files))
    elif cfg.save and not cfg.record:
        sinks.append(LazyVideoFileSink(os.path.join(out_dir, "annotated.mp4"), fps, VideoSettings.from_output(cfg)))
    if cfg.record:
        if source.still_images:
            log.warning("--record makes one video of the images, each resized to the first one's size; the "
                        "annotated images themselves are saved in %s", out_dir)
        sinks.append(LazyVideoFileSink(cfg.record, fps, VideoSettings.from_output(cfg)))
    if web is not None:
        sinks.append(web)
    return build_sinks(sinks)


def mosaic_sinks(cfg: OutputConfig, several: bool, headless: bool, fps: float, web: Optional[WebSink],
                 live: Optional[LiveVideo] = None) -> Sink:
    """The sinks of the mosaic of several sources (none for one source: its own sinks show it)."""
    sinks = []  # type: List[Any]
    if several and live is not None:
        sinks.append(live.mosaic_sink())
    if several:
        if not headless:
            sinks.append(DisplaySink(WINDOW_TITLE))
        if cfg.record and cfg.mosaic:
            sinks.append(LazyVideoFileSink(cfg.record, fps, VideoSettings.from_output(cfg)))
        if web is not None:
            sinks.append(web)
    return build_sinks(sinks)


def input_recorder(cfg: OutputConfig, several: bool, name: str, fps: float) -> Optional[LazyInputRecorder]:
    """--save-input: the raw captured frames of a source (one file per source when several)."""
    if not cfg.save_input:
        return None
    return LazyInputRecorder(per_source_path(cfg.save_input, name) if several else cfg.save_input, fps,
                             VideoSettings.from_output(cfg))
