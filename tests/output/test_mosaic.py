"""The mosaic: grid shape, tiles in the sources' order, aspect kept, names drawn."""
import numpy as np
import pytest

from jetcam_app.output.mosaic import Mosaic, fit, grid_shape, tile_size


@pytest.mark.parametrize("n, shape", [(1, (1, 1)), (2, (1, 2)), (3, (2, 2)), (4, (2, 2)), (5, (2, 3)), (9, (3, 3)),
                                      (10, (3, 4)), (32, (6, 6))])
def test_grid_shape(n, shape):
    assert grid_shape(n) == shape


def test_tiles_shrink_to_fit_1080p_width():
    assert tile_size(2) == (640, 360)
    w, h = tile_size(32)
    assert w * grid_shape(32)[1] <= 1920 and w % 2 == 0 and h % 2 == 0


def test_fit_keeps_the_aspect_ratio_on_black():
    tile = fit(np.full((100, 400, 3), 200, np.uint8), (640, 360))
    assert tile.shape == (360, 640, 3)
    assert (tile[180, :, 0] == 200).all()  # full width
    assert tile[0, 320, 0] == 0 and tile[359, 320, 0] == 0  # bars above and below


def test_tiles_in_order_with_their_names():
    mosaic = Mosaic(["a", "b", "c"])
    mosaic.update("a", np.full((360, 640, 3), (0, 0, 255), np.uint8))
    mosaic.update("c", np.full((360, 640, 3), (255, 0, 0), np.uint8))
    mosaic.note("c", "ended")
    canvas = mosaic.compose()
    assert canvas.shape == (720, 1280, 3)
    assert tuple(canvas[100, 320]) == (0, 0, 255)  # a: row 0, col 0
    assert not canvas[100, 960].any()  # b: no frame yet
    assert tuple(canvas[460, 320]) == (255, 0, 0)  # c: row 1, col 0
    assert (canvas[700, 5:60] == 255).any()  # c's name plate, bottom left, white text
