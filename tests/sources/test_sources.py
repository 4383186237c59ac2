"""Sources and the capture thread on real files: order, loss, drops, and the --source parser."""
import threading
import time

import cv2
import numpy as np
import pytest

from jetcam_app.config import SourceConfig
from jetcam_app.errors import SourceError
from jetcam_app.sources.capture import CaptureThread
from jetcam_app.sources.spec import SourceSpec, create_source, parse_source
from jetcam_app.sources.synthetic import decode_index, draw_pattern

from conftest import write_index_video


def drain(capture, delay_s=0.0):
    frames = []
    while True:
        frame = capture.channel.get(0.5)
        if frame is None:
            if capture.channel.finished:
                return frames
            continue
        frames.append(frame)
        if delay_s:
            time.sleep(delay_s)


def run_capture(uri, delay_s=0.0, **config):
    source = create_source(SourceConfig(uri=uri, **config))
    source.open()
    stop = threading.Event()
    capture = CaptureThread(source, stop, queue_size=4)
    capture.start()
    try:
        frames = drain(capture, delay_s)
    finally:
        stop.set()
        capture.join(5)
        source.close()
    assert not capture.is_alive()
    return capture, frames


def test_replay_is_lossless_and_in_order(tmp_path):
    path = write_index_video(tmp_path / "v.mp4", n_frames=40)
    capture, frames = run_capture(path, delay_s=0.005)
    assert [f.index for f in frames] == list(range(40))
    assert [decode_index(f.image) for f in frames] == list(range(40))
    assert capture.captured == 40 and capture.dropped == 0


def test_paced_replay_with_slow_consumer_drops_and_accounts(tmp_path):
    path = write_index_video(tmp_path / "v.mp4", n_frames=45, fps=30.0)
    capture, frames = run_capture(path, delay_s=0.1, pace=True)  # 3 frame periods per frame
    indices = [decode_index(f.image) for f in frames]
    assert indices == [f.index for f in frames]
    assert all(b > a for a, b in zip(indices, indices[1:]))
    assert capture.dropped > 0
    assert len(frames) + capture.dropped == capture.captured == 45


def test_synthetic_index_round_trip_and_frame_limit():
    capture, frames = run_capture("test://320x240@30?frames=12")
    assert [decode_index(f.image) for f in frames] == list(range(12))
    assert frames[0].image.shape == (240, 320, 3)


def test_index_survives_jpeg_compression():
    image = draw_pattern(123457, 320, 240)
    ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 50])
    assert decode_index(cv2.imdecode(data, cv2.IMREAD_COLOR)) == 123457


def test_image_folder_sorted(tmp_path):
    for i in (2, 0, 1):
        cv2.imwrite(str(tmp_path / ("img%d.png" % i)), draw_pattern(i, 320, 240))
    (tmp_path / "notes.txt").write_text("not an image")
    _, frames = run_capture(str(tmp_path))
    assert [decode_index(f.image) for f in frames] == [0, 1, 2]


@pytest.mark.parametrize("make, message", [
    (lambda p: str(p / "missing.mp4"), "video file not found"),
    (lambda p: (p / "bad.mp4").write_text("not a video") and str(p / "bad.mp4"), "not a video"),
    (lambda p: (p / "empty").mkdir() or str(p / "empty"), "holds no images"),
    (lambda p: str(p / "missing.jpg"), "image not found"),
])
def test_source_errors_name_the_fix(tmp_path, make, message):
    source = create_source(SourceConfig(uri=make(tmp_path)))
    with pytest.raises(SourceError, match=message):
        source.open()


@pytest.mark.parametrize("uri, kind, location", [
    ("csi://0", "csi", "0"), ("csi", "csi", "0"), ("csi://1", "csi", "1"),
    ("usb", "usb", "/dev/video0"), ("usb:1", "usb", "/dev/video1"), ("/dev/video2", "usb", "/dev/video2"),
    ("v4l2:///dev/video3", "usb", "/dev/video3"), ("rtsp://cam.local:554/stream", "rtsp", "rtsp://cam.local:554/stream"),
    ("file://clip.mp4", "file", "clip.mp4"), ("clip.mp4", "file", "clip.mp4"), ("photo.JPG", "image", "photo.JPG"),
])
def test_parse_source_forms(uri, kind, location):
    spec = parse_source(uri)
    assert (spec.kind, spec.location) == (kind, location)


@pytest.mark.parametrize("uri, kind, location, params", [
    ("csi://0?sensor-mode=3", "csi", "0", {"sensor-mode": "3"}),
    ("usb:1?format=mjpeg", "usb", "/dev/video1", {"format": "mjpeg"}),
    ("/dev/video2?format=yuyv", "usb", "/dev/video2", {"format": "yuyv"}),
    ("rtsp://cam/s#latency=100&protocols=tcp", "rtsp", "rtsp://cam/s", {"latency": "100", "protocols": "tcp"}),
])
def test_parse_source_options(uri, kind, location, params):
    assert parse_source(uri) == SourceSpec(kind, location, params)


def test_parse_test_source_options():
    assert parse_source("test://640x480@15").params == {"width": "640", "height": "480", "fps": "15"}
    assert parse_source("test://?frames=5&live=1").params == {"frames": "5", "live": "1"}


@pytest.mark.parametrize("uri", ["csi://x", "v4l2:///dev/video0 ! fakesink", "rtsp://a b", "ftp://x", "test://big",
                                 "/dev/video0;rm"])
def test_parse_source_rejects_bad_forms(uri):
    with pytest.raises(SourceError):
        parse_source(uri)


def test_directory_source_kind(tmp_path):
    assert parse_source(str(tmp_path)) == SourceSpec("folder", str(tmp_path))


def test_decode_index_of_blank_frame_is_zero():
    assert decode_index(np.zeros((240, 320, 3), np.uint8)) == 0


def test_decode_threads_limit_the_decoder_and_change_no_frame(tmp_path):
    """decode_threads: 1 gives FFmpeg's decoder one thread (OpenCV's choice is one per core) and the same frames;
    in a `sources:` entry a negative count is a one-line error naming the setting."""
    video = write_index_video(tmp_path / "clip.mp4", n_frames=12)
    plain, limited = create_source(SourceConfig(uri=video)), create_source(SourceConfig(uri=video, decode_threads=1))
    plain.open()
    limited.open()
    if hasattr(cv2, "CAP_PROP_N_THREADS"):  # OpenCV 4.7+; older ones decode with their own choice (a warning)
        assert limited._cap.get(cv2.CAP_PROP_N_THREADS) == 1
    for _ in range(12):
        np.testing.assert_array_equal(limited.read().image, plain.read().image)
    assert limited.read() is None and plain.read() is None
    plain.close()
    limited.close()
    with pytest.raises(SourceError, match="decode_threads must be >= 0"):
        create_source(SourceConfig(uri=video, decode_threads=-1)).open()
