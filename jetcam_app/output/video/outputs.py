"""The live H.264 encoders of a run, one per picture ("main": the one source, or the mosaic of several; and each
source's own when there are several), shared by every live output (the page's MSE and WebRTC views, RTSP out and
push), and the sinks that offer them the pipeline's frames."""

from typing import Dict, Optional, Sequence

import numpy as np

from ..sinks.base import Sink
from .fmp4 import VideoSettings
from .live import LiveEncoder

MAIN = "main"


class EncoderSink(Sink):
    """Offers each annotated frame to one live encoder; returns at once (LiveEncoder.offer never waits)."""

    def __init__(self, encoder: LiveEncoder):
        self.encoder = encoder

    def write(self, image_bgr: np.ndarray, frame_index: int) -> None:
        self.encoder.offer(image_bgr, frame_index)


class LiveVideo:
    """encoders[MAIN] and, with several sources, encoders[name] for each; close() stops them all."""

    def __init__(self, names: Sequence[str], fps: float, video: Optional[VideoSettings] = None):
        bitrate = (video or VideoSettings()).bitrate
        self.several = len(names) > 1
        self.encoders = {MAIN: LiveEncoder(MAIN, fps, bitrate)}  # type: Dict[str, LiveEncoder]
        if self.several:
            self.encoders.update({name: LiveEncoder(name, fps, bitrate) for name in names})
        self.closers = []  # type: list  # the outputs built on the encoders (RTSP server, push), closed first

    def source_sink(self, name: str) -> Sink:
        """The sink of a source's own frames: its encoder with several sources, the main one with one."""
        return EncoderSink(self.encoders[name if self.several else MAIN])

    def mosaic_sink(self) -> Sink:
        return EncoderSink(self.encoders[MAIN])

    def stats(self) -> Dict[str, dict]:
        return {name: encoder.stats() for name, encoder in self.encoders.items()}

    def close(self) -> None:
        for closer in reversed(self.closers):
            closer.close()
        for encoder in self.encoders.values():
            encoder.close()
