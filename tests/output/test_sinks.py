"""Sinks and the raw-input recorder: the mp4s they write decode with the right frames, sizes and sidecars."""

import csv
import os
import shutil
import subprocess
import sys
import threading

import cv2
import numpy as np
import pytest

from jetcam_app.errors import OutputError
from jetcam_app.output.input_recorder import InputRecorder
from jetcam_app.sources.timestamps import read_sidecar, sidecar_path
from jetcam_app.output.sinks.base import FanOutSink, NullSink, Sink, build_sinks
from jetcam_app.output.sinks.video_file import VideoFileSink
from jetcam_app.output.sinks.window import DisplaySink, display_available, display_reason
from jetcam_app.sources.synthetic import decode_index, draw_pattern
from jetcam_app.types import Frame

from conftest import ROOT

SIZE = (320, 240)


def decode_all(path):
    cap = cv2.VideoCapture(str(path))
    assert cap.isOpened(), "%s does not open" % path
    frames = []
    while True:
        ok, image = cap.read()
        if not ok:
            break
        frames.append(image)
    cap.release()
    return frames


def test_video_file_sink_plays_back_every_frame(tmp_path):
    path = tmp_path / "sub" / "out.mp4"  # the folder is created
    sink = VideoFileSink(str(path), 30.0, SIZE, queue_size=2)  # a small queue: write() must wait, never drop
    for i in range(40):
        image = draw_pattern(i, *SIZE)
        assert sink.write(image, i) is True
        image[:] = 0  # the caller reuses its buffer: the queued copy is unaffected
    sink.close()
    sink.close()  # idempotent
    assert not sink.alive and sink.frames_written == 40
    frames = decode_all(path)
    assert len(frames) == 40
    assert frames[0].shape == (SIZE[1], SIZE[0], 3)
    assert [decode_index(f) for f in frames] == list(range(40))
    assert sink.write(draw_pattern(0, *SIZE), 40) is False  # after close: refused, not raised


def test_video_file_sink_resizes_odd_frames(tmp_path):
    path = tmp_path / "mixed.mp4"
    with VideoFileSink(str(path), 10.0, SIZE) as sink:
        sink.write(draw_pattern(0, *SIZE), 0)
        sink.write(draw_pattern(1, 640, 480), 1)  # cv2.VideoWriter would silently drop this one
    frames = decode_all(path)
    assert len(frames) == 2 and frames[1].shape == (SIZE[1], SIZE[0], 3)
    assert sink.frames_resized == 1


def test_video_file_sink_rejects_non_bgr(tmp_path):
    with VideoFileSink(str(tmp_path / "x.mp4"), 10.0, SIZE) as sink:
        with pytest.raises(OutputError, match="uint8 BGR"):
            sink.write(np.zeros((SIZE[1], SIZE[0]), np.uint8), 0)


def test_video_file_sink_unwritable_path(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(OutputError, match="cannot write the video"):
        VideoFileSink(str(blocker / "out.mp4"), 30.0, SIZE)
    assert threading.active_count() == 1 or all(t.name != "video-writer" for t in threading.enumerate())


def test_video_file_sink_writer_error_reaches_the_caller(tmp_path):
    sink = VideoFileSink(str(tmp_path / "e.mp4"), 10.0, SIZE, copy=False)
    sink.write(np.zeros((SIZE[1], SIZE[0], 4), np.uint8)[..., :3], 0)  # fine: a 3-channel view
    bad = np.zeros((0, 0, 3), np.uint8)  # cv2.resize raises on an empty image, in the writer thread
    sink.write(bad, 1)
    with pytest.raises(OutputError, match="writing .* failed"):
        for i in range(200):
            sink.write(draw_pattern(i, *SIZE), i + 2)
        sink.close()
    sink.close()  # reported once; a second close is quiet
    assert not sink.alive
    assert len(decode_all(tmp_path / "e.mp4")) >= 1  # what was written before the error still plays


def test_fan_out_and_null_sinks(tmp_path):
    class Recording(Sink):
        def __init__(self, stop=False):
            self.indices, self.closed, self.stop = [], 0, stop

        def write(self, image_bgr, frame_index):
            self.indices.append(frame_index)

        def close(self):
            self.closed += 1

        @property
        def stop_requested(self):
            return self.stop

    a, b = Recording(), Recording()
    video = VideoFileSink(str(tmp_path / "f.mp4"), 10.0, SIZE)
    fan = build_sinks([a, video, b])
    assert isinstance(fan, FanOutSink) and not fan.stop_requested
    for i in range(3):
        fan.write(draw_pattern(i, *SIZE), i)
    fan.close()
    assert a.indices == b.indices == [0, 1, 2] and a.closed == b.closed == 1
    assert len(decode_all(tmp_path / "f.mp4")) == 3
    assert FanOutSink([Recording(), Recording(stop=True)]).stop_requested
    assert isinstance(build_sinks([]), NullSink)
    assert build_sinks([a]) is a


def test_display_sink_without_display(monkeypatch):
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    assert not display_available()
    assert "--headless" in display_reason()
    with pytest.raises(OutputError, match="--headless"):
        DisplaySink("jetcam")


def test_input_recorder_sidecar_matches_frames(tmp_path):
    path = tmp_path / "raw.mp4"
    recorder = InputRecorder(str(path), 30.0, SIZE)
    written = [0, 1, 2, 5, 6, 9]  # gaps: frames the recorder never got
    for i in written:
        image = draw_pattern(i, *SIZE)
        assert recorder.write(Frame(image=image, index=i, timestamp_s=i / 30.0, capture_time=0.0))
        cv2.rectangle(image, (0, 0), (SIZE[0], SIZE[1]), (0, 0, 255), -1)  # drawing after the write: not recorded
    recorder.close()
    recorder.close()
    assert not recorder.write(Frame(draw_pattern(10, *SIZE), 10, 1.0, 0.0))
    frames = decode_all(path)
    assert [decode_index(f) for f in frames] == written
    with open(sidecar_path(str(path)), newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["frame_index", "timestamp_s"]
    assert [int(r[0]) for r in rows[1:]] == written
    assert rows[2][1] == "%.6f" % (1 / 30.0)
    assert read_sidecar(str(path)) == [(i, round(i / 30.0, 6)) for i in written]


def test_read_sidecar_absent_and_broken(tmp_path):
    from jetcam_app.errors import SourceError

    video = str(tmp_path / "v.mp4")
    assert read_sidecar(video) == []
    with open(sidecar_path(video), "w") as f:
        f.write("frame_index,timestamp_s\n0,0.0\nbroken\n")
    with pytest.raises(SourceError, match="line 3"):
        read_sidecar(video)


def test_input_recorder_unwritable(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(OutputError, match="--save-input"):
        InputRecorder(str(blocker / "raw.mp4"), 30.0, SIZE)
    assert os.listdir(tmp_path) == ["file"]


DISPLAY_SCRIPT = r"""
import sys, subprocess
import numpy as np
from jetcam_app.output.sinks.window import DisplaySink, display_available
assert display_available()
sink = DisplaySink("jetcam-sink-test")
image = np.full((240, 320, 3), 100, np.uint8)
for i in range(10):
    sink.write(image, i)
assert not sink.stop_requested
window = subprocess.run(["xdotool", "search", "--name", "jetcam-sink-test"], stdout=subprocess.PIPE,
                        universal_newlines=True, check=True).stdout.split()[-1]
subprocess.run(["xdotool", "key", "--window", window, "q"], check=True)
for i in range(200):
    sink.write(image, i)
    if sink.stop_requested:
        break
sink.close()
sink.close()
print("stop_requested", sink.stop_requested)
"""


@pytest.mark.skipif(not (shutil.which("Xvfb") and shutil.which("xdotool")), reason="needs Xvfb and xdotool (apt)")
def test_display_sink_window_and_q_key(tmp_path):
    """A real window on a virtual X display; pressing q requests a stop (run in a child: Qt binds one display)."""
    read_fd, write_fd = os.pipe()
    xvfb = subprocess.Popen(["Xvfb", "-displayfd", str(write_fd), "-screen", "0", "800x600x24", "-nolisten", "tcp"],
                            pass_fds=(write_fd,), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.close(write_fd)
    try:
        with os.fdopen(read_fd) as f:
            display = ":" + f.readline().strip()
        env = dict(os.environ, DISPLAY=display, QT_QPA_PLATFORM="xcb")
        env.pop("WAYLAND_DISPLAY", None)
        child = subprocess.run([sys.executable, "-c", DISPLAY_SCRIPT], env=env, cwd=ROOT, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, universal_newlines=True, timeout=120)
        assert child.returncode == 0, child.stderr[-2000:]
        assert "stop_requested True" in child.stdout
    finally:
        xvfb.terminate()
        xvfb.wait(10)
