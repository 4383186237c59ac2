"""The GStreamer recorder (Jetson's nvv4l2h264enc): its pipeline strings, the path's quoting, and, x264enc standing in
for the hardware encoder, that its muxing survives `kill -9` (>= 90 % of the frames decode; a plain mp4mux file keeps
0, so the test can fail). Where this OpenCV has no GStreamer, a PyGObject stand-in runs GstWriter's pipeline."""

import importlib.util
import os
import shutil
import signal
import subprocess
import sys

import numpy as np
import pytest

from jetcam_app.errors import OutputError
from jetcam_app.output.video import gst_recorder
from jetcam_app.output.video.gst_recorder import GstWriter, hardware_encoder, quote_location, recording_pipeline
from jetcam_app.sources import gst_runner

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
SIZE, FPS, FRAMES = (320, 240), 30, 60
TAIL = "h264parse ! mp4mux fragment-duration=1 ! filesink location=%s sync=false buffer-mode=unbuffered"


def test_pipeline_strings_jetson_and_desktop_where_x264enc_takes_kbit_and_the_keyframe_interval_is_rounded():
    assert recording_pipeline("/data/rec.mp4", 30, (1280, 720), 4000000) == (
        "appsrc ! video/x-raw,format=BGR,width=1280,height=720 ! videoconvert ! video/x-raw,format=BGRx ! nvvidconv ! "
        "video/x-raw(memory:NVMM),format=NV12 ! nvv4l2h264enc insert-sps-pps=1 bitrate=4000000 iframeinterval=30 "
        "idrinterval=30 maxperf-enable=1 ! " + TAIL % '"/data/rec.mp4"')
    assert recording_pipeline("rec.mp4", 29.97, (640, 480), 2500000, encoder="x264enc") == (
        "appsrc ! video/x-raw,format=BGR,width=640,height=480 ! videoconvert ! video/x-raw,format=I420 ! x264enc "
        "speed-preset=ultrafast tune=zerolatency key-int-max=30 bitrate=2500 ! " + TAIL % '"rec.mp4"')


def test_paths_are_quoted_and_what_cannot_be_is_refused():
    assert quote_location("/media/my videos/a!b's.mp4") == '"/media/my videos/a!b\'s.mp4"'
    assert quote_location("C:\\rec.mp4") == '"C:\\\\rec.mp4"'  # GStreamer unescapes it back to one backslash
    for bad in ('/tmp/a"b.mp4', "/tmp/a\nb.mp4", "/tmp/a\rb.mp4", ""):
        with pytest.raises(OutputError, match="double quote or a line break"):
            recording_pipeline(bad, 30, (64, 48), 10 ** 6)


def test_bad_settings_are_refused():
    for args, match in [((0, (64, 48), 10 ** 6, "x264enc"), "frame rate"), ((30, (0, 48), 10 ** 6, "x264enc"), "size"),
                        ((30, (64, 48), 0, "x264enc"), "bitrate"), ((30, (64, 48), 1, "omxh264enc"), "unknown GStr")]:
        with pytest.raises(OutputError, match=match):
            recording_pipeline("rec.mp4", *args)


def test_hardware_encoder_needs_both_elements_and_never_raises(monkeypatch):
    present = {"nvv4l2h264enc": True, "nvvidconv": True}
    monkeypatch.setattr(gst_runner, "has_element", lambda name: present[name])
    assert hardware_encoder() == "nvv4l2h264enc"
    present["nvvidconv"] = False
    assert hardware_encoder() is None
    monkeypatch.setattr(gst_runner, "has_element", lambda name: None)  # no PyGObject
    assert hardware_encoder() is None
    monkeypatch.setattr(gst_runner, "has_element", lambda name: 1 / 0)  # a broken registry
    assert hardware_encoder() is None


@pytest.mark.skipif(gst_runner.opencv_has_gstreamer(), reason="this OpenCV has GStreamer")
def test_an_opencv_without_gstreamer_is_one_line_with_the_fix(tmp_path):
    with pytest.raises(OutputError, match=r"GStreamer: NO\); fix: .*pip install av") as info:
        GstWriter(str(tmp_path / "rec.mp4"), 30, SIZE, 10 ** 6, encoder="x264enc")
    assert "\n" not in str(info.value)


class _GiVideoWriter:
    """cv2.VideoWriter(pipeline, cv2.CAP_GSTREAMER, 0, fps, size) as JetPack's OpenCV runs it, for pip's OpenCV: BGR caps
    of the size and rate on the appsrc, time-stamped frames pushed (blocking when it is full), EOS at release()."""

    def __init__(self, pipeline, api, fourcc, fps, size):
        self.Gst = Gst = gst_runner.load_gst()
        try:
            self.pipeline = Gst.parse_launch(pipeline)
        except Exception:  # GLib.Error: an element is missing; OpenCV's isOpened() is then False
            self.pipeline = None
            return
        self.src = self.pipeline.iterate_sources().next()[1]
        caps = "video/x-raw,format=BGR,width=%d,height=%d,framerate=%d/1" % (size[0], size[1], fps)
        for name, value in (("caps", Gst.Caps.from_string(caps)), ("format", Gst.Format.TIME), ("block", True)):
            self.src.set_property(name, value)
        self.duration, self.frames = int(Gst.SECOND / fps), 0
        if self.pipeline.set_state(Gst.State.PLAYING) == Gst.StateChangeReturn.FAILURE:
            self.pipeline = None

    def isOpened(self):
        return self.pipeline is not None

    def write(self, image):
        buffer = self.Gst.Buffer.new_wrapped(image.tobytes())
        buffer.pts, buffer.duration = self.frames * self.duration, self.duration
        self.src.emit("push-buffer", buffer)
        self.frames += 1

    def release(self):
        Gst = self.Gst
        self.src.emit("end-of-stream")
        self.pipeline.get_bus().timed_pop_filtered(10 * Gst.SECOND, Gst.MessageType.EOS | Gst.MessageType.ERROR)
        self.pipeline.set_state(Gst.State.NULL)


def gstreamer_opencv(patch=setattr):
    """Where this OpenCV has no GStreamer, GstWriter runs its pipeline in the PyGObject stand-in."""
    if not gst_runner.opencv_has_gstreamer():
        import cv2
        patch(cv2, "VideoWriter", _GiVideoWriter)
        patch(gst_runner, "opencv_has_gstreamer", lambda: True)


def frame(i):  # noise, so frames are of a realistic size (several KiB), and a bar that moves
    image = np.random.RandomState(i).randint(0, 256, (SIZE[1], SIZE[0], 3)).astype(np.uint8)
    image[:, (i * 5) % SIZE[0]] = 255
    return image


def _cannot_run():
    if importlib.util.find_spec("av") is None:
        return "PyAV is not installed (it counts the frames that decode)"
    if not gst_runner.opencv_has_gstreamer() and gst_runner.gobject_reason():
        return "this OpenCV has no GStreamer and PyGObject is missing: %s" % gst_runner.gobject_reason()
    missing = gst_recorder.missing_elements("x264enc")
    if missing is None and shutil.which("gst-inspect-1.0"):  # OpenCV's GStreamer without PyGObject
        missing = [e for e in ("x264enc",) + gst_recorder.OTHER_ELEMENTS
                   if subprocess.call(["gst-inspect-1.0", "--exists", e]) != 0]
    if missing:
        return "GStreamer lacks %s (x264enc: sudo apt install gstreamer1.0-plugins-ugly)" % ", ".join(missing)
    return None


CANNOT_RUN = _cannot_run()
needs_gstreamer = pytest.mark.skipif(CANNOT_RUN is not None, reason=str(CANNOT_RUN))


def decodable_frames(path):
    """Frames that decode, reading on to the damaged tail of a killed file."""
    import av
    count = 0
    try:
        with av.open(str(path)) as container:
            for _ in container.decode(video=0):
                count += 1
    except (getattr(av.error, "FFmpegError", Exception), ValueError):
        pass
    return count


KILLED_WRITER = """
import os, sys, time
sys.path[:0] = [%(root)r, %(here)r]
import test_gst_recorder as t
t.gstreamer_opencv()
t.gst_recorder.MUXER = %(muxer)r
writer = t.GstWriter(%(path)r, t.FPS, t.SIZE, 2000000, "x264enc")
for i in range(t.FRAMES):
    writer.write(t.frame(i))
    time.sleep(1.0 / t.FPS)  # at a camera's pace
os.kill(os.getpid(), 9)  # no grace: what is still in the pipeline is lost with the process
"""


@needs_gstreamer
@pytest.mark.parametrize("muxer", [gst_recorder.MUXER, "mp4mux"])
def test_kill_9_keeps_the_fragmented_recording_and_loses_a_plain_one(tmp_path, muxer):
    path = str(tmp_path / "my rec!.mp4")  # the quoting, end to end
    code = subprocess.call([sys.executable, "-c", KILLED_WRITER % dict(root=ROOT, here=HERE, muxer=muxer, path=path)],
                           timeout=60)
    assert code == -signal.SIGKILL
    kept = decodable_frames(path)
    if muxer == gst_recorder.MUXER:
        assert kept >= 0.9 * FRAMES, "only %d of %d frames survived the kill" % (kept, FRAMES)
    else:
        assert kept == 0  # the index (moov) of a plain MP4 is written at EOS only: the test can fail


@needs_gstreamer
def test_a_clean_release_keeps_every_frame_and_the_duration(tmp_path, monkeypatch):
    import av
    gstreamer_opencv(monkeypatch.setattr)
    path = str(tmp_path / "my video!\\b's.mp4")  # GStreamer must read the quoted path back as it is
    writer = GstWriter(path, FPS, SIZE, 2000000, "x264enc")
    with pytest.raises(OutputError, match="a 64x48 frame in a 320x240 recording"):
        writer.write(np.zeros((48, 64, 3), np.uint8))
    for i in range(30):
        writer.write(frame(i))
    writer.release()
    assert decodable_frames(path) == 30
    with av.open(path) as container:
        assert abs(container.duration / 1e6 - 1.0) < 0.1


@needs_gstreamer
@pytest.mark.skipif(hardware_encoder() is not None, reason="this machine has the Jetson encoder")
def test_a_pipeline_that_does_not_start_says_what_is_missing(tmp_path, monkeypatch):
    gstreamer_opencv(monkeypatch.setattr)
    with pytest.raises(OutputError, match="lacks nvv4l2h264enc, nvvidconv; fix: .*nvidia-l4t-gstreamer|did not start"):
        GstWriter(str(tmp_path / "rec.mp4"), FPS, SIZE, 10 ** 6)
