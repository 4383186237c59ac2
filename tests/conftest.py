"""Shared fixtures and capability markers: tests needing CUDA, GStreamer or TensorRT skip with the reason."""

import os
import sys

import matplotlib

# matplotlib's FreeType must be loaded before GStreamer's (pulled in when test modules probe Gst at
# collection): the other order segfaults when the report plots are drawn. benchmark.py does the same.
matplotlib.use("Agg")
import matplotlib.ft2font  # noqa: E402,F401
import cv2
import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from jetcam_app.sources.synthetic import draw_pattern  # noqa: E402


def pytest_configure(config):
    """A shell that starts the tests in the background (`cmd &` without job control) makes them ignore SIGINT, and
    so the Ctrl-C tests (and the benchmark processes they start) would wait for a signal that never comes. Ctrl-C
    is given back its usual meaning here; the processes the tests start inherit the default."""
    import signal

    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


def pytest_runtest_logstart(nodeid, location):
    """The test now running, in the file $JETCAM_TEST_MARK names (scripts/test.sh): a crash of the interpreter
    (abort, segfault) prints no test name of its own, and the printed tail of its stack dump may not reach it."""
    mark = os.environ.get("JETCAM_TEST_MARK")
    if mark:
        with open(mark, "w") as f:
            f.write(nodeid + "\n")


def cuda_reason():
    import torch

    if not torch.cuda.is_available():
        return "needs a CUDA device; torch.cuda.is_available() is False here"
    return None


def pytest_collection_modifyitems(config, items):
    reason = cuda_reason()
    for item in items:
        if reason and "needs_cuda" in item.keywords:
            item.add_marker(pytest.mark.skip(reason=reason))


def write_index_video(path, n_frames=30, fps=30.0, size=(320, 240)):
    """An mp4 whose frames carry their index (jetcam_app.sources.synthetic.decode_index reads it back)."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, size)
    assert writer.isOpened(), "OpenCV cannot write mp4 here"
    for i in range(n_frames):
        writer.write(draw_pattern(i, size[0], size[1]))
    writer.release()
    return str(path)


@pytest.fixture
def index_video(tmp_path):
    return write_index_video(tmp_path / "index.mp4")


@pytest.fixture(scope="session")
def photos():
    """scikit-image's real photographs as BGR uint8 arrays."""
    skimage_data = pytest.importorskip("skimage.data")
    out = {}
    loaders = {"astronaut": skimage_data.astronaut, "coffee": skimage_data.coffee, "chelsea": skimage_data.chelsea,
               "motorcycle_left": lambda: skimage_data.stereo_motorcycle()[0], "rocket": skimage_data.rocket,
               "camera": skimage_data.camera}  # the cameraman, greyscale: a second person for pose and masks
    for name, load in loaders.items():
        rgb = load()
        if rgb.ndim == 2:
            rgb = np.stack([rgb] * 3, -1)
        out[name] = np.ascontiguousarray(rgb[..., :3][..., ::-1])
    return out


def export_adapter(name):
    """The model's adapter for an export or build test: random weights, or its own where it has no random variant
    (the TFJS graphs, whose weights come in the graph's file); skipped where those are not fetched."""
    from jetcam_app.config import ModelConfig
    from jetcam_app.errors import WeightsError
    from jetcam_app.inference.adapters.base import create_adapter

    try:
        adapter = create_adapter(ModelConfig(name=name, random_weights=True))
        if getattr(adapter, "weights_json", None) is None:  # a torch module: random weights build
            return adapter
        adapter = create_adapter(ModelConfig(name=name))  # a TFJS graph: its own file, or nanodet's default
        adapter.build_network()  # WeightsError here where the file is not fetched
        return adapter
    except ImportError as e:
        pytest.skip("the %s adapter does not import yet: %s" % (name, e))
    except WeightsError as e:
        pytest.skip("%s's weights are not here: %s" % (name, e))
