"""A grid of the sources' latest annotated frames, each tile named, for the window, the stream or one recording."""

import math
from typing import Dict, Optional, Sequence, Tuple

import cv2
import numpy as np

from .overlay import BLACK, FONT, LINE_TYPE, WHITE

MAX_WIDTH = 1920  # the mosaic fits a 1080p screen; tiles shrink as sources are added
TILE_WIDTH = 640


def grid_shape(n: int) -> Tuple[int, int]:
    """(rows, cols) for n tiles: as square as possible, wider than tall."""
    cols = max(1, int(math.ceil(math.sqrt(n))))
    rows = max(1, int(math.ceil(n / float(cols))))
    return rows, cols


def tile_size(n: int, aspect: float = 16 / 9.0) -> Tuple[int, int]:
    """(width, height) of one tile for n sources; even numbers, as video encoders want."""
    _, cols = grid_shape(n)
    width = min(TILE_WIDTH, MAX_WIDTH // cols) // 2 * 2
    return width, max(2, int(round(width / aspect)) // 2 * 2)


def fit(image: np.ndarray, size: Tuple[int, int]) -> np.ndarray:
    """`image` scaled to fit `size` (w, h) keeping its aspect ratio, centred on black."""
    w, h = size
    ih, iw = image.shape[:2]
    scale = min(w / float(iw), h / float(ih))
    nw, nh = max(1, int(round(iw * scale))), max(1, int(round(ih * scale)))
    tile = np.zeros((h, w, 3), np.uint8)
    x, y = (w - nw) // 2, (h - nh) // 2
    interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    tile[y:y + nh, x:x + nw] = cv2.resize(image, (nw, nh), interpolation=interpolation)
    return tile


def _name_plate(tile: np.ndarray, text: str) -> None:
    scale = max(0.4, tile.shape[0] / 720.0)
    (tw, th), base = cv2.getTextSize(text, FONT, scale, 1)
    y0 = tile.shape[0] - th - base - 6
    cv2.rectangle(tile, (0, y0), (tw + 8, tile.shape[0]), BLACK, -1)
    cv2.putText(tile, text, (4, tile.shape[0] - base - 3), FONT, scale, WHITE, 1, LINE_TYPE)


class Mosaic:
    """Keeps each source's latest annotated frame and composes the grid on demand, in the sources' order."""

    def __init__(self, names: Sequence[str]):
        self.names = list(names)
        self.tile_wh = tile_size(len(self.names))
        self._tiles = {}  # type: Dict[str, np.ndarray]
        self._notes = {}  # type: Dict[str, str]

    def update(self, name: str, image: np.ndarray) -> None:
        """The source's latest annotated frame, scaled only when a mosaic is composed (sources may outrun it).
        Held by reference: the multi-source pipeline gives its sources no reused frame buffers."""
        self._tiles[name] = image

    def note(self, name: str, text: str) -> None:
        """A state shown after the tile's name (e.g. "ended", "failed")."""
        self._notes[name] = text

    def compose(self) -> np.ndarray:
        rows, cols = grid_shape(len(self.names))
        w, h = self.tile_wh
        canvas = np.zeros((rows * h, cols * w, 3), np.uint8)
        for k, name in enumerate(self.names):
            r, c = divmod(k, cols)
            tile = canvas[r * h:(r + 1) * h, c * w:(c + 1) * w]
            image = self._tiles.get(name)  # type: Optional[np.ndarray]
            if image is not None:
                tile[:] = fit(image, (w, h))
            note = self._notes.get(name)
            _name_plate(tile, name if not note else "%s (%s)" % (name, note))
        return canvas
