"""The boxes' colours and outline thickness, shared by the OpenCV overlay and the GPU outline painter."""
from __future__ import annotations

import colorsys
import functools
from typing import Tuple

PALETTE_SIZE = 20  # class ids share PALETTE_SIZE colours: all boxes of a colour are drawn in one call


def box_thickness(height: int) -> int:
    """Outline thickness in pixels for a frame of this height (2 px at 720p)."""
    return max(1, int(round(height / 360.0)))


@functools.lru_cache(maxsize=1024)
def class_color(class_id: int) -> Tuple[int, int, int]:
    """A stable, saturated BGR colour per class id (golden-ratio hue steps keep neighbours apart); ids
    PALETTE_SIZE apart share a colour, the label names the class."""
    hue = ((int(class_id) % PALETTE_SIZE) * 0.618033988749895) % 1.0
    r, g, b = colorsys.hsv_to_rgb(hue, 0.85, 0.95)
    return (int(b * 255), int(g * 255), int(r * 255))
