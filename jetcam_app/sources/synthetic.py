"""test:// — a synthetic pattern of moving shapes whose frames carry their index in a readable bit strip."""

import time
from typing import Optional

import numpy as np

from ..config import SourceConfig
from ..errors import SourceError
from ..types import Frame
from .base import Source

INDEX_BITS = 20
MAX_TEST_SIDE = 8192  # an 8K frame; a larger one is a typo, not a test (100000x100000 is 28 GiB)
MAX_TEST_FPS = 10000
CELL_PX = 12  # one bit = a 12x12 square in the top-left strip; survives lossy video compression


def encode_index(image: np.ndarray, index: int) -> None:
    """Write `index` into the top-left strip of `image` (in place) as black/white squares."""
    for bit in range(INDEX_BITS):
        value = 255 if (index >> bit) & 1 else 0
        x0 = bit * CELL_PX
        image[0:CELL_PX, x0:x0 + CELL_PX] = value


def decode_index(image: np.ndarray) -> int:
    """Read back what encode_index wrote (the centre of each square, thresholded)."""
    index = 0
    half = CELL_PX // 2
    for bit in range(INDEX_BITS):
        patch = image[half - 2:half + 2, bit * CELL_PX + half - 2:bit * CELL_PX + half + 2]
        if float(patch.mean()) > 127:
            index |= 1 << bit
    return index


def draw_pattern(index: int, width: int, height: int) -> np.ndarray:
    """A deterministic frame: gradient background, shapes that move with `index`, the index in text and bits."""
    import cv2

    if width < INDEX_BITS * CELL_PX or height < 2 * CELL_PX:
        raise SourceError("test source frames must be at least %dx%d" % (INDEX_BITS * CELL_PX, 2 * CELL_PX))
    xs = np.linspace(0, 255, width, dtype=np.float32)
    ys = np.linspace(0, 255, height, dtype=np.float32)
    image = np.empty((height, width, 3), np.uint8)
    image[..., 0] = (xs[None, :] * 0.5 + 40).astype(np.uint8)
    image[..., 1] = (ys[:, None] * 0.4 + 30).astype(np.uint8)
    image[..., 2] = 60
    cx = int((index * 7) % max(1, width - 80)) + 40
    cy = int(height / 2 + (height / 4) * np.sin(index / 15.0))
    cv2.circle(image, (cx, cy), max(10, height // 10), (0, 200, 255), -1)
    bx = int((index * 4) % max(1, width - 120))
    cv2.rectangle(image, (bx, height - height // 4), (bx + 100, height - height // 4 + 60), (255, 80, 40), -1)
    cv2.putText(image, "frame %d" % index, (10, CELL_PX + 40), cv2.FONT_HERSHEY_SIMPLEX, 1.0, (255, 255, 255), 2)
    encode_index(image, index)
    return image


class SyntheticSource(Source):
    """Frames made on the fly. Options: width, height, fps, frames (0 = endless), live (0/1).
    Not live by default: it then behaves like a file replayed losslessly; `live=1` paces it at `fps`."""

    def __init__(self, spec, config: SourceConfig, buffers=None):
        super().__init__(buffers)
        params = spec.params
        try:
            self.width = int(params.get("width", config.width))
            self.height = int(params.get("height", config.height))
            self.nominal_fps = float(params.get("fps", config.fps))
            self.max_frames = int(params.get("frames", 0))
            self.is_live = params.get("live", "0") in ("1", "true", "yes")
        except ValueError as e:
            raise SourceError("bad test:// option (%s); numbers only, e.g. test://640x480@30?frames=100" % e) from e
        if not 0 < self.nominal_fps <= MAX_TEST_FPS or self.max_frames < 0:
            raise SourceError("test:// fps must be in (0, %d] and frames >= 0" % MAX_TEST_FPS)
        if not (0 < self.width <= MAX_TEST_SIDE and 0 < self.height <= MAX_TEST_SIDE):
            raise SourceError("test:// size %dx%d is out of range; use at most %dx%d, e.g. test://1920x1080"
                              % (self.width, self.height, MAX_TEST_SIDE, MAX_TEST_SIDE))
        self.frame_size = (self.width, self.height)
        self._index = 0
        self._start = None  # type: Optional[float]

    def open(self) -> None:
        draw_pattern(0, self.width, self.height)  # validates the size before the pipeline starts
        self.frame_count = self.max_frames or None
        self._start = time.perf_counter()

    def read(self, timeout_s: float = 1.0) -> Optional[Frame]:
        if self.max_frames and self._index >= self.max_frames:
            return None
        if self.is_live:
            due = self._start + self._index / self.nominal_fps
            delay = due - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
        index = self._index
        self._index += 1
        image = draw_pattern(index, self.width, self.height)
        return Frame(image, index, index / self.nominal_fps, time.perf_counter())

    def describe(self) -> str:
        return "test://%dx%d@%g" % (self.width, self.height, self.nominal_fps)
