"""The Source interface: open, read frames (None at the end of the stream), close."""

from typing import Any, Optional, Tuple

from ..types import Frame


class Source:
    """A context manager yielding Frames. `is_live` sources (cameras) get latest-frame semantics;
    files are replayed losslessly unless paced. close() is idempotent."""

    is_live = False
    still_images = False  # photos: each frame is its own input (per-image results, no video verdict)
    decoded_on = "cpu"  # "gpu": its frames are types.DeviceFrame, their pixels on the CUDA device

    def __init__(self, buffers: Any = None):
        # A HostFramePool (inference/host_buffers.py) the stages offer, given at construction; sources that can
        # decode into a given array take their frames' arrays from it, the others ignore it.
        self.buffers = buffers
        self.nominal_fps = None  # type: Optional[float]
        self.frame_size = None  # type: Optional[Tuple[int, int]]  # (width, height) once known
        self.reconnects = 0
        self.stop_reason = None  # type: Optional[str]  # why a live source gave up, for the summary
        self.skipped_frames = 0  # frames the source itself dropped before a read (gaps in its counter)
        self.frame_count = None  # type: Optional[int]  # frames the source holds, where known (files)

    def open(self) -> None:
        """Raise SourceError naming the device or path and one fix."""
        raise NotImplementedError

    def read(self, timeout_s: float = 1.0) -> Optional[Frame]:
        """The next frame; None at the end of the stream; CaptureTimeout when none came in time."""
        raise NotImplementedError

    def close(self) -> None:
        pass

    def describe(self) -> str:
        return type(self).__name__

    def __enter__(self) -> "Source":
        self.open()
        return self

    def __exit__(self, *exc) -> None:
        self.close()
