"""A Jetson's NVMM frames to CUDA (nvmm_frames.py), the parts that need no Jetson: the pipeline strings with and
without the CPU's videoconvert, when source.decode chooses the device path and what it says, and the BGRx view to
BGR conversion. The same path through real GStreamer (videotestsrc) is in test_gstreamer.py."""

import numpy as np
import pytest

from jetcam_app.errors import ConfigError
from jetcam_app.sources import gst_pipelines as P
from jetcam_app.sources.nvmm_frames import DeviceUpload, device_frames_choice


class Cuda:
    type = "cuda"
    index = 0


def test_the_device_path_keeps_nvvidconv_s_bgrx_and_drops_videoconvert():
    sink = " ! appsink drop=true max-buffers=1 sync=false"
    assert P.csi_pipeline(0, 1280, 720, 30, flip=2, to_device=True) == (
        "nvarguscamerasrc sensor-id=0 ! video/x-raw(memory:NVMM),width=1280,height=720,framerate=30/1"
        " ! nvvidconv flip-method=2 ! video/x-raw,format=BGRx" + sink)
    assert P.usb_pipeline("/dev/video0", 1280, 720, 30, "mjpeg", jetson=True, to_device=True) == (
        "v4l2src device=/dev/video0 ! image/jpeg,width=1280,height=720,framerate=30/1 ! nvv4l2decoder mjpeg=1"
        " ! nvvidconv ! video/x-raw,format=BGRx" + sink)
    assert P.rtsp_pipeline("rtsp://cam/live", jetson=True, to_device=True) == (
        "rtspsrc location=rtsp://cam/live latency=200 ! decodebin ! nvvidconv ! video/x-raw,format=BGRx" + sink)
    # off a Jetson there is no NVMM: the flag changes nothing (the CPU's decoders give BGR through videoconvert)
    assert P.rtsp_pipeline("rtsp://cam/live", to_device=True) == P.rtsp_pipeline("rtsp://cam/live")
    assert P.usb_pipeline("/dev/video0", 640, 480, 30, "yuyv", to_device=True) == P.usb_pipeline(
        "/dev/video0", 640, 480, 30, "yuyv")
    assert "videoconvert" in P.csi_pipeline(0, 1280, 720, 30) and "videoconvert" not in P.csi_pipeline(
        0, 1280, 720, 30, to_device=True)


@pytest.mark.parametrize("mode, device, nvmm, gobject, capture, on, says", [
    ("auto", Cuda(), True, None, "auto", True, "no videoconvert"),
    ("gpu", Cuda(), True, None, "gobject", True, "nvvidconv BGRx -> CUDA"),
    ("cpu", Cuda(), True, None, "auto", False, "--decode cpu"),
    ("auto", None, True, None, "auto", False, "auto: the backend does not run on CUDA"),
    ("auto", Cuda(), True, "No module named 'gi'", "auto", False, "PyGObject's Gst does not load"),
    ("auto", Cuda(), True, None, "opencv", False, "--capture opencv hands over no buffer"),
    ("auto", Cuda(), False, None, "auto", False, "need a Jetson's NVMM path"),
    ("gpu", Cuda(), False, None, "auto", False, "need a Jetson's NVMM path"),  # files' option: no error
])
def test_when_frames_go_to_the_device_and_the_line_that_says_why(mode, device, nvmm, gobject, capture, on, says):
    chosen, why = device_frames_choice(mode, device, nvmm, gobject, capture)
    assert chosen is on and says in why


@pytest.mark.parametrize("device, gobject, capture, says", [
    (None, None, "auto", "the backend does not run on CUDA"),
    (Cuda(), "No module named 'gi'", "auto", "PyGObject"),
    (Cuda(), None, "opencv", "--capture gobject"),
])
def test_decode_gpu_on_a_jetson_that_cannot_is_a_config_error_naming_the_fix(device, gobject, capture, says):
    with pytest.raises(ConfigError) as e:
        device_frames_choice("gpu", device, True, gobject, capture)
    assert says in str(e.value) and "use --decode auto or cpu" in str(e.value) and "\n" not in str(e.value)


def test_a_padded_bgrx_view_becomes_an_owned_contiguous_bgr_image():
    torch = pytest.importorskip("torch")
    rows = np.random.default_rng(0).integers(1, 256, (6, 9 * 4 + 8), dtype=np.uint8)
    view = rows[:, :9 * 4].reshape(6, 9, 4)  # rows padded past the pixels, as a pitched buffer is
    image = DeviceUpload(torch.device("cpu"))(view)
    assert tuple(image.shape) == (6, 9, 3) and image.is_contiguous() and image.dtype == torch.uint8
    assert np.array_equal(image.numpy(), view[..., :3])
    rows[:] = 0  # the buffer is unmapped and reused after the call: the frame keeps its own pixels
    assert image.numpy().any()
