"""The box outlines the fused graph draws (box_outlines.py) are the overlay's outline pixels: run here on CPU tensors,
in the graph on CUDA (tests/inference/test_fused_stages.py compares the frames the graph sends back)."""

import numpy as np
import pytest
import torch

from jetcam_app.config import OverlayConfig
from jetcam_app.inference.box_outlines import GPU_OUTLINES_SUPPORTED, OutlinePainter
from jetcam_app.output.overlay import Overlay
from jetcam_app.types import Detections

pytestmark = pytest.mark.skipif(not GPU_OUTLINES_SUPPORTED, reason="torch %s has no scatter_reduce_ (1.12+): the host "
                                "draws every outline" % torch.__version__)


def packed_rows(rng, height, width, rows, kept):
    """static_nms.pack_detections' layout: header (kept, exact, ...), then x1, y1, x2, y2, score, label rows."""
    x0, y0 = rng.uniform(-20, width + 5, rows), rng.uniform(-20, height + 5, rows)
    boxes = np.stack([x0, y0, x0 + rng.uniform(-3, width / 2, rows), y0 + rng.uniform(-3, height / 2, rows)], 1)
    boxes[:5] = np.round(boxes[:5]) + 0.5  # halfway coordinates round to even in both
    packed = np.zeros((rows + 1, 6), np.float32)
    packed[0, :2] = kept, 1
    packed[1:, :4] = boxes
    packed[1:, 4] = rng.uniform(0, 1, rows)
    packed[1:, 5] = rng.integers(1, 91, rows)
    return packed


@pytest.mark.parametrize("height, width", [(720, 1280), (480, 640), (1080, 1920), (100, 90)])
@pytest.mark.parametrize("kept", [0, 1, 37, 100])
def test_painter_draws_the_overlays_outline_pixels(height, width, kept):
    """Overlapping boxes of many classes, boxes past every edge, inverted and thinner-than-the-outline ones."""
    rng = np.random.default_rng(height * 1000 + kept)
    packed = packed_rows(rng, height, width, 100, kept)
    frame = rng.integers(0, 255, (height, width, 3), dtype=np.uint8)
    expected = frame.copy()
    overlay = Overlay()
    overlay._metrics(height, width)
    overlay._draw_outlines(expected, np.rint(packed[1:1 + kept, :4]).astype(np.int32), packed[1:1 + kept, 5])
    image = torch.from_numpy(frame.copy())
    OutlinePainter(height, width, torch.device("cpu")).draw(image, torch.from_numpy(packed))
    np.testing.assert_array_equal(image.numpy(), expected)
    assert kept == 0 or (expected != frame).any()  # the comparison saw outlines


def test_overlay_leaves_outlines_to_the_gpu_when_told():
    det = Detections(np.array([[40, 60, 200, 220]], np.float32), np.array([0.9], np.float32), np.array([1]),
                     ["__background__", "person"])
    plain = np.full((240, 320, 3), 127, np.uint8)
    drawn = plain.copy()
    overlay = Overlay(OverlayConfig(enabled=True, hud=False))
    overlay.annotate(plain, det, None, outlined=True)
    overlay.annotate(drawn, det, None)
    assert (plain[150, 40] == 127).all() and not (drawn[150, 40] == 127).all()  # the left edge, below the label
    assert (plain != 127).any()  # the label is still drawn
