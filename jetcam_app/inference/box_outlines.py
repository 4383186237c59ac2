"""Box outlines drawn on the GPU, inside the fused CUDA graph: the same pixels Overlay's outlines draw, from the
colours and thickness defined here for both.

jetson-utils draws detection boxes with CUDA for the same reason: on the host, a hundred outlines a frame
(random weights, a crowd) cost a drawing thread dozens of OpenCV calls, each giving the GIL up and queueing
to get it back, which slows the inference thread too (docs/performance.md). On the device they are a few kernels on the frame that was uploaded anyway; the drawn frame comes back in one copy,
and the host adds the labels and the HUD.

Static shapes throughout (so it can be captured): every row of the packed result is considered, the ones past
the kept count masked out. Overlay draws each box as `thickness` nested 1 px rectangles, one palette colour at a
time; where outlines cross, the later drawing wins: the inner inset, then the higher palette index. Here each
candidate pixel carries that order as a number, the largest number per pixel is kept (scatter-reduce amax),
and it selects the colour, so the result does not depend on the order the GPU writes in.
"""

import colorsys
import functools
from typing import Tuple

import torch

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


# scatter_reduce_ (torch 1.12+) keeps the largest order per pixel; without it (JetPack 4.6's torch 1.10) the host draws
# the outlines.
GPU_OUTLINES_SUPPORTED = hasattr(torch.Tensor, "scatter_reduce_")


class OutlinePainter:
    """draw(image, packed): outlines of the detections packed by static_nms.pack_detections (frame pixels) onto an
    HxWx3 uint8 tensor, in place."""

    def __init__(self, height: int, width: int, device: torch.device):
        self.height, self.width = int(height), int(width)
        self.thickness = box_thickness(self.height)
        self.palette = torch.tensor([class_color(i) for i in range(PALETTE_SIZE)], dtype=torch.uint8, device=device)
        self.insets = torch.arange(self.thickness, device=device)
        self.xs = torch.arange(self.width, device=device)
        self.ys = torch.arange(self.height, device=device)
        self.order = torch.zeros(self.height * self.width, dtype=torch.int32, device=device)

    def draw(self, image: torch.Tensor, packed: torch.Tensor) -> None:
        rows = packed[1:]
        kept = torch.arange(rows.shape[0], device=rows.device) < packed[0, 0]
        corners = torch.round(rows[:, :4]).to(torch.int64)  # half to even, as np.rint in Overlay
        shade = rows[:, 5].to(torch.int64) % PALETTE_SIZE
        inset = self.insets[None, :]
        x0, y0 = corners[:, 0:1] + inset, corners[:, 1:2] + inset  # (boxes, thickness)
        x1, y1 = corners[:, 2:3] - inset, corners[:, 3:4] - inset
        order = (inset * PALETTE_SIZE + shade[:, None] + 1).to(torch.int32)  # 0 = no outline
        drawn = kept[:, None, None]
        none = order.new_zeros(())  # a tensor, not 0: torch 1.10's where() does not promote a Python scalar
        # horizontal sides: rows y0 and y1 over the columns between x0 and x1 (polylines clips to the frame)
        across = (self.xs >= torch.minimum(x0, x1)[..., None]) & (self.xs <= torch.maximum(x0, x1)[..., None]) & drawn
        # vertical sides: columns x0 and x1 over the rows between y0 and y1
        down = (self.ys >= torch.minimum(y0, y1)[..., None]) & (self.ys <= torch.maximum(y0, y1)[..., None]) & drawn
        # Every candidate gets a pixel inside the frame; the ones not drawn carry order 0, which changes nothing.
        # (Sending them all to one spare pixel would queue every atomic on a single address.)
        indices, orders = [], []
        for y in (y0, y1):
            inside = across & ((y >= 0) & (y < self.height))[..., None]
            indices.append((y.clamp(0, self.height - 1)[..., None] * self.width + self.xs).flatten())
            orders.append(torch.where(inside, order[..., None], none).flatten())
        for x in (x0, x1):
            inside = down & ((x >= 0) & (x < self.width))[..., None]
            indices.append((self.ys * self.width + x.clamp(0, self.width - 1)[..., None]).flatten())
            orders.append(torch.where(inside, order[..., None], none).flatten())
        self.order.zero_()
        self.order.scatter_reduce_(0, torch.cat(indices), torch.cat(orders), reduce="amax")
        winner = self.order.view(self.height, self.width).to(torch.int64)
        colour = self.palette[(winner - 1).clamp(min=0) % PALETTE_SIZE]
        image.copy_(torch.where(winner[..., None] > 0, colour, image))
