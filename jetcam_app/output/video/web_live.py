"""The page's H.264 views over its HTTP server: fragmented MP4 streamed to MediaSource (MSE), for browsers and
players; (WebRTC answers on the same server, webrtc.py). A viewer that leaves or stalls only ends its own request."""

import logging
from typing import Callable

from .live import LiveEncoder

log = logging.getLogger(__name__)
MSE_CODEC_HEADER = "X-Jetcam-Codec"  # the page builds its SourceBuffer's type from it: video/mp4; codecs="avc1..."


def serve_mse(handler, encoder: LiveEncoder, closed: Callable[[], bool]) -> None:
    """Stream `encoder`'s init segment, then its fragments from the next keyframe on, until the viewer goes."""
    if not encoder.available:
        handler.send_error(501, "H.264 needs PyAV (pip install av); the MJPEG stream is at stream.mjpg")
        return
    sub = encoder.subscribe(fragments=True)
    try:
        if not encoder.wait_ready(5.0):
            handler.send_error(503, "no frame yet")
            return
        handler.send_response(200)
        handler.send_header("Content-Type", "video/mp4")
        handler.send_header(MSE_CODEC_HEADER, encoder.codec)
        handler.send_header("Cache-Control", "no-store")
        handler.end_headers()
        handler.wfile.write(encoder.init_segment)
        while not closed() and not encoder.closed:
            unit = sub.get(1.0)
            if unit is not None:
                handler.wfile.write(unit.fragment)
    except OSError as e:  # the viewer left, or stalled past the socket timeout
        log.debug("MSE viewer gone: %s", e)
    finally:
        sub.close()
