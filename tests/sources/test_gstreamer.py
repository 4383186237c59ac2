"""GStreamer capture: exact pipeline strings, real videotestsrc/filesrc pipelines through GStreamerSource, reconnects."""

import logging
import os
import threading
import time

import cv2
import numpy as np
import pytest

from jetcam_app.config import SourceConfig
from jetcam_app.errors import CaptureTimeout, SourceError
from jetcam_app.sources import gst_pipelines as P
from jetcam_app.sources import v4l2
from jetcam_app.sources.capture import CaptureThread
from jetcam_app.sources.gst_runner import (GObjectRunner, OpenCVRunner, PipelineStopped, gobject_reason,
                                           opencv_has_gstreamer)
from jetcam_app.sources.gstreamer import GStreamerSource
from jetcam_app.sources.spec import SourceSpec
from jetcam_app.sources.synthetic import decode_index, draw_pattern

GST_REASON = gobject_reason()
needs_gst = pytest.mark.skipif(GST_REASON is not None, reason="needs PyGObject + GStreamer: %s" % GST_REASON)
RUNNERS = [
    pytest.param("gobject", marks=needs_gst),
    pytest.param("opencv", marks=pytest.mark.skipif(
        not opencv_has_gstreamer(), reason="this cv2 was built without GStreamer (pip's opencv-python)")),
]
READ_TIMEOUT_S = 5.0


def config(**kw):
    base = dict(width=320, height=240, fps=30, timeout_s=5.0, reconnect_attempts=0, capture="gobject")
    base.update(kw)
    return SourceConfig(**base)


def drain(source, limit=200):
    frames = []
    for _ in range(limit):
        frame = source.read(READ_TIMEOUT_S)
        if frame is None:
            break
        frames.append(frame)
    return frames


def open_source(spec, cfg, backoff_s=0.05):
    source = GStreamerSource(spec, cfg)
    source.backoff_initial_s = backoff_s
    source.open()
    return source


@pytest.fixture
def mjpeg_avi(tmp_path):
    """An MJPEG AVI (avidemux + jpegdec are in gst-plugins-good) whose frames carry their index."""
    path = str(tmp_path / "index.avi")
    writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"MJPG"), 30.0, (320, 240))
    assert writer.isOpened(), "OpenCV cannot write MJPEG AVI here"
    for i in range(20):
        writer.write(draw_pattern(i, 320, 240))
    writer.release()
    return path


# -- exact strings ---------------------------------------------------------------------------------------------

def test_csi_pipeline_reflects_every_option():
    assert P.csi_pipeline(1, 1920, 1080, 30, flip=2, sensor_mode=3) == (
        "nvarguscamerasrc sensor-id=1 sensor-mode=3 ! video/x-raw(memory:NVMM),width=1920,height=1080,framerate=30/1"
        " ! nvvidconv flip-method=2 ! video/x-raw,format=BGRx ! videoconvert ! video/x-raw,format=BGR"
        " ! appsink drop=true max-buffers=1 sync=false")
    assert P.csi_pipeline(0, 1280, 720, 59.94).startswith(
        "nvarguscamerasrc sensor-id=0 ! video/x-raw(memory:NVMM),width=1280,height=720,framerate=60000/1001 "
        "! nvvidconv flip-method=0 !")


def test_usb_pipelines_raw_and_mjpeg():
    assert P.usb_pipeline("/dev/video1", 640, 480, 15, "yuyv") == (
        "v4l2src device=/dev/video1 ! video/x-raw,format=YUY2,width=640,height=480,framerate=15/1"
        " ! videoconvert ! video/x-raw,format=BGR ! appsink drop=true max-buffers=1 sync=false")
    assert P.usb_pipeline("/dev/video0", 1280, 720, 30, "mjpeg") == (
        "v4l2src device=/dev/video0 ! image/jpeg,width=1280,height=720,framerate=30/1 ! jpegdec"
        " ! videoconvert ! video/x-raw,format=BGR ! appsink drop=true max-buffers=1 sync=false")
    assert P.usb_pipeline("/dev/video0", 1280, 720, 30, "mjpeg", jetson=True) == (
        "v4l2src device=/dev/video0 ! image/jpeg,width=1280,height=720,framerate=30/1 ! nvv4l2decoder mjpeg=1"
        " ! nvvidconv ! video/x-raw,format=BGRx ! videoconvert ! video/x-raw,format=BGR"
        " ! appsink drop=true max-buffers=1 sync=false")


def test_rtsp_pipeline_reflects_latency_protocols_and_jetson():
    url = "rtsp://user:pw@10.0.0.2:554/Streaming/Channels/101?transportmode=unicast&profile=Profile_1"
    assert P.rtsp_pipeline(url, latency_ms=50, protocols="tcp") == (
        "rtspsrc location=%s latency=50 protocols=tcp ! decodebin ! videoconvert ! video/x-raw,format=BGR"
        " ! appsink drop=true max-buffers=1 sync=false" % url)
    assert P.rtsp_pipeline("rtsp://cam/live", jetson=True) == (
        "rtspsrc location=rtsp://cam/live latency=200 ! decodebin ! nvvidconv ! video/x-raw,format=BGRx"
        " ! videoconvert ! video/x-raw,format=BGR ! appsink drop=true max-buffers=1 sync=false")


def test_usb_format_chosen_from_what_the_device_reports():
    assert P.choose_usb_format(["MJPG", "YUYV"]) == "yuyv"
    assert P.choose_usb_format(["MJPG", "H264"]) == "mjpeg"
    with pytest.raises(SourceError, match="metadata node"):
        P.choose_usb_format([])


@pytest.mark.parametrize("call", [
    lambda: P.usb_pipeline("/dev/video0 ! fakesink", 640, 480, 30),
    lambda: P.usb_pipeline("/dev/video0 num-buffers=1", 640, 480, 30),
    lambda: P.validate_device("/tmp/video0"),
    lambda: P.rtsp_pipeline("rtsp://cam/live ! filesink location=/etc/passwd"),
    lambda: P.rtsp_pipeline("rtsp://cam/live latency=0"),
    lambda: P.rtsp_pipeline('rtsp://cam/"x"'),
    lambda: P.rtsp_pipeline("http://cam/live"),
    lambda: P.rtsp_pipeline("rtsp://cam/live", protocols="tcp ! fakesink"),
    lambda: P.file_pipeline('/tmp/a" ! fakesink location="b'),
    lambda: P.csi_pipeline(0, 1280, 720, 30, flip=9),
    lambda: P.csi_pipeline(0, 0, 720, 30),
    lambda: P.test_pipeline(320, 240, 30, pattern="smpte ! fakesink"),
    lambda: P.check_custom_pipeline("videotestsrc ! fakesink"),
])
def test_smuggled_pipeline_fragments_and_bad_values_are_refused(call):
    with pytest.raises(SourceError):
        call()


@needs_gst
def test_built_strings_parse_in_gstreamer():
    from jetcam_app.sources.gst_runner import load_gst

    Gst = load_gst()
    for text in (P.usb_pipeline("/dev/video0", 640, 480, 30, "yuyv"), P.usb_pipeline("/dev/video0", 640, 480, 30, "mjpeg"),
                 P.rtsp_pipeline("rtsp://cam/a?b=1&c=2", 100, "tcp"), P.file_pipeline("/tmp/with space.mp4", 320, 240),
                 P.test_pipeline(320, 240, 30, "ball", 10)):
        assert Gst.parse_launch(text) is not None
    if Gst.ElementFactory.find("nvarguscamerasrc") is None:  # off a Jetson: only the missing element may fail
        with pytest.raises(Exception, match="nvarguscamerasrc"):
            Gst.parse_launch(P.csi_pipeline(0, 1280, 720, 30))


# -- real pipelines through the class a CSI camera uses ----------------------------------------------------------

@pytest.mark.parametrize("runner", RUNNERS)
@pytest.mark.parametrize("spec", [
    SourceSpec("test", "", {"width": "322", "height": "242", "frames": "12"}),  # 322*3 rows are padded to 968 bytes
    SourceSpec("gst", "videotestsrc is-live=true num-buffers=12 ! video/x-raw,width=322,height=242,framerate=30/1 "
                      "! videoconvert ! video/x-raw,format=BGR ! appsink drop=true max-buffers=1 sync=false"),
])
def test_videotestsrc_frames_have_the_size_and_increasing_indices(runner, spec):
    source = open_source(spec, config(capture=runner))
    try:
        assert source.is_live and source.runner_name
        frames = drain(source)
    finally:
        source.close()
    assert len(frames) >= 2
    assert all(f.image.shape == (242, 322, 3) for f in frames)
    assert source.frame_size == (322, 242)
    indices = [f.index for f in frames]
    assert indices == sorted(set(indices)) and indices[0] == 0
    stamps = [f.timestamp_s for f in frames]
    assert stamps == sorted(stamps)
    assert source.read(0.1) is None and source.reconnects == 0  # stays ended, no invented frame


@pytest.mark.parametrize("runner", RUNNERS)
def test_filesrc_decodebin_frames_arrive_in_order(runner, mjpeg_avi):
    source = open_source(SourceSpec("gst", P.file_pipeline(mjpeg_avi)), config(capture=runner))
    try:
        frames = drain(source)
    finally:
        source.close()
    assert frames and all(f.image.shape == (240, 320, 3) for f in frames)
    encoded = [decode_index(f.image) for f in frames]
    assert encoded == sorted(set(encoded)) and encoded[-1] == 19
    assert [f.index for f in frames] == sorted(set(f.index for f in frames))


def test_opencv_runner_reads_with_a_timeout(mjpeg_avi):
    """The OpenCV runner's threaded read, on OpenCV's own file backend (its GStreamer backend is absent here)."""
    runner = OpenCVRunner(lambda: cv2.VideoCapture(mjpeg_avi), "OpenCV file")
    runner.start(READ_TIMEOUT_S)
    encoded = []
    try:
        with pytest.raises(PipelineStopped):
            for _ in range(25):
                sample = runner.pull(READ_TIMEOUT_S)
                assert sample is not None
                encoded.append(decode_index(sample.image))
    finally:
        runner.stop()
        runner.stop()
    assert encoded == list(range(20))


# -- reconnects and failures -----------------------------------------------------------------------------------

@needs_gst
def test_end_of_a_finite_pipeline_is_the_end_not_a_disconnect():
    pipeline = ("videotestsrc is-live=true num-buffers=25 ! video/x-raw,width=320,height=240,framerate=30/1 "
                "! videoconvert ! video/x-raw,format=BGR ! appsink drop=false max-buffers=8")
    source = open_source(SourceSpec("gst", pipeline), config(reconnect_attempts=3))
    try:
        frames = drain(source)
    finally:
        source.close()
    assert [f.index for f in frames] == list(range(25)) and source.reconnects == 0
    assert source.stop_reason == "end of stream"


@needs_gst
def test_a_disconnect_reconnects_then_stops_cleanly(caplog):
    caplog.set_level(logging.INFO, logger="jetcam_app.sources.gstreamer")
    # A lossless appsink here (drop=false), so a loaded machine cannot drop frames and the count is exact;
    # identity fails the stream on its 5th buffer, as a camera or a network stream that goes away.
    pipeline = ("videotestsrc is-live=true ! identity error-after=5 ! video/x-raw,width=320,height=240,"
                "framerate=30/1 ! videoconvert ! video/x-raw,format=BGR ! appsink drop=false max-buffers=8")
    source = open_source(SourceSpec("gst", pipeline), config(reconnect_attempts=2))
    try:
        frames = drain(source)
    finally:
        source.close()
    assert source.reconnects == 2
    assert "gave up after 2 reconnect attempt(s)" in source.stop_reason
    assert [f.index for f in frames] == list(range(12))  # 3 sessions of 4 frames, indices run on
    stamps = [f.timestamp_s for f in frames]
    assert stamps == sorted(stamps)
    attempts = [r.getMessage() for r in caplog.records
                if r.levelno == logging.WARNING and "reconnect attempt" in r.getMessage()]
    assert len(attempts) == 2 and "attempt 2/2" in attempts[1]


@needs_gst
def test_camera_gone_mid_run_reconnects_fail_then_stop(mjpeg_avi):
    pipeline = P.file_pipeline(mjpeg_avi).replace("decodebin !", "decodebin ! identity error-after=5 !")
    source = open_source(SourceSpec("gst", pipeline), config(reconnect_attempts=3))
    try:
        first = source.read(READ_TIMEOUT_S)
        os.remove(mjpeg_avi)  # the "camera" is unplugged: every restart fails with a bus error
        rest = drain(source)
    finally:
        source.close()
    assert first is not None and len(rest) >= 1
    assert source.reconnects == 3
    assert "No such file" in source.stop_reason or "not found" in source.stop_reason.lower()


@needs_gst
def test_a_stalled_stream_counts_as_a_disconnect():
    pipeline = ("videotestsrc is-live=true ! video/x-raw,width=320,height=240,framerate=1/30 ! videoconvert "
                "! video/x-raw,format=BGR ! appsink drop=true max-buffers=1 sync=false")
    source = open_source(SourceSpec("gst", pipeline), config(timeout_s=0.5, reconnect_attempts=1))
    try:
        frames = drain(source)
    finally:
        source.close()
    assert len(frames) == 2  # the first frame of each session; nothing invented while stalled
    assert [f.index for f in frames] == [0, 1] and source.skipped_frames == 0
    assert source.reconnects == 1 and "no frame for 0.5 s" in source.stop_reason


@needs_gst
def test_close_from_another_thread_ends_a_waiting_read():
    pipeline = ("videotestsrc is-live=true ! video/x-raw,width=320,height=240,framerate=1/30 ! videoconvert "
                "! video/x-raw,format=BGR ! appsink drop=true max-buffers=1 sync=false")
    source = open_source(SourceSpec("gst", pipeline), config(timeout_s=60))
    assert source.read(1.0) is not None
    threading.Timer(0.3, source.close).start()
    try:
        result = source.read(30.0)
    except CaptureTimeout:
        result = "timeout"
    assert result is None
    source.close()


def test_absent_device_is_a_clear_error_listing_devices():
    for capture in ("gobject", "opencv", "auto"):
        source = GStreamerSource(SourceSpec("usb", "/dev/video9"), config(capture=capture, timeout_s=30))
        start = time.perf_counter()
        with pytest.raises(SourceError) as info:
            source.open()
        assert time.perf_counter() - start < 30
        message = str(info.value)
        assert "/dev/video9 does not exist" in message and "video devices here:" in message
        for device in v4l2.list_video_devices():
            assert device in message


def test_probe_of_a_node_that_is_not_v4l2():
    device = v4l2.probe_device("/dev/null")
    assert device.error and "not a V4L2 device" in device.error and not device.formats


@needs_gst
@pytest.mark.parametrize("spec, expected", [
    (SourceSpec("csi", "0"), "nvarguscamerasrc"),
    (SourceSpec("gst", "videotestsrc ! nosuchelement ! appsink"), "no element"),
    (SourceSpec("gst", "videotestsrc num-buffers=3 ! video/x-raw,format=I420 ! appsink"), "format=BGR"),
])
def test_open_failures_name_the_cause(spec, expected):
    if spec.kind == "csi" and os.path.exists("/etc/nv_tegra_release"):
        pytest.skip("on a Jetson the CSI plugins exist")
    with pytest.raises(SourceError, match=expected):
        GStreamerSource(spec, config(timeout_s=3)).open()


def test_opencv_capture_without_gstreamer_says_so():
    if opencv_has_gstreamer():
        pytest.skip("this cv2 has GStreamer")
    with pytest.raises(SourceError, match="OpenCV built with GStreamer"):
        GStreamerSource(SourceSpec("test", ""), config(capture="opencv")).open()


# -- live semantics ----------------------------------------------------------------------------------------------

@needs_gst
def test_slow_consumer_sees_fresh_frames_and_drops_are_counted():
    source = open_source(SourceSpec("test", "", {"fps": "30"}), config())
    stop = threading.Event()
    thread = CaptureThread(source, stop, queue_size=4)
    thread.start()
    latencies_s, frames = [], []
    try:
        deadline = time.perf_counter() + 30
        while len(frames) < 8 and time.perf_counter() < deadline:
            frame = thread.channel.get(1.0)
            if frame is None:
                continue
            latencies_s.append(time.perf_counter() - frame.capture_time)
            frames.append(frame)
            time.sleep(0.15)  # about 4.5 frame periods of "inference"
    finally:
        stop.set()
        thread.join(10)
        source.close()
    assert not thread.is_alive() and thread.error is None
    assert len(frames) == 8
    # A buffering pipeline would show ~1 s of lag by the 8th frame; latest-frame-wins keeps it near one period.
    assert max(latencies_s) < 0.5, latencies_s
    assert thread.dropped > 0
    wall_s = frames[-1].capture_time - frames[0].capture_time
    assert frames[-1].timestamp_s - frames[0].timestamp_s > 0.5 * wall_s  # timestamps follow the camera clock


@needs_gst
def test_a_jetson_s_bgrx_frames_go_to_the_device_without_videoconvert(monkeypatch):
    """The NVMM path's end as it runs on a Jetson, but for the camera: an RTSP source whose pipeline (videotestsrc
    here, for nvvidconv's BGRx) the kind builds with to_device; PyGObject's runner hands each BGRx buffer to the
    upload (the host here, no CUDA), and the frames equal the CPU path's BGR ones."""
    import dataclasses

    import torch

    from jetcam_app.sources import gstreamer, kinds
    from jetcam_app.sources.nvmm_frames import DeviceUpload
    from jetcam_app.types import DeviceFrame

    class Cuda:
        type, index = "cuda", 0

    built = []

    def build(request):  # nvvidconv's BGRx stood in for by videoconvert's
        fmt = "videoconvert ! video/x-raw,format=BGRx" if request.to_device else P.TO_BGR
        built.append(request.to_device)
        return ("videotestsrc is-live=true num-buffers=6 pattern=smpte ! video/x-raw,width=322,height=242,"
                "framerate=30/1 ! %s ! %s" % (fmt, P.LIVE_SINK))

    monkeypatch.setitem(kinds.KINDS, "rtsp", dataclasses.replace(kinds.KINDS["rtsp"], build=build,
                                                                 plugins=("videotestsrc",)))
    monkeypatch.setattr(kinds, "is_jetson", lambda: True)
    monkeypatch.setattr(gstreamer, "DeviceUpload", lambda device: DeviceUpload(torch.device("cpu")))
    frames = {}
    for decode in ("auto", "cpu"):
        source = GStreamerSource(SourceSpec("rtsp", "rtsp://cam/live"), config(capture="auto", decode=decode),
                                 device=Cuda())
        source.open()
        try:
            frames[decode] = drain(source)
            assert source.decoded_on == ("gpu" if decode == "auto" else "cpu")
            assert source.runner_name == GObjectRunner.name or decode == "cpu"
        finally:
            source.close()
    assert built == [True, False]
    on_device, on_host = frames["auto"], frames["cpu"]
    assert on_device and on_host and all(isinstance(f, DeviceFrame) for f in on_device)
    assert not any(isinstance(f, DeviceFrame) for f in on_host)
    pixels = on_device[0].device_image
    assert tuple(pixels.shape) == (242, 322, 3) and pixels.is_contiguous()
    assert np.array_equal(pixels.numpy(), on_host[0].image)  # the same BGR, the fourth byte dropped
    assert on_device[0].image.shape == (242, 322, 3)  # a sink that shows pixels still gets them
