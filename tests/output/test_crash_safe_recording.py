"""Recordings that survive the way Jetson runs really end: `kill -9` mid-recording leaves a fragmented MP4 of which at
least 90 % of the frames written decode, where OpenCV's plain MP4 leaves 0 (so the test can fail); a truncated file
decodes up to the cut; segments; --save-input the same; the fallback without PyAV says what it costs."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

av = pytest.importorskip("av")

from jetcam_app.output.sinks.video_file import VideoFileSink  # noqa: E402
from jetcam_app.output.video.fmp4 import VideoSettings  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SIZE = (160, 120)


def decodable_frames(path) -> int:
    """Frames that decode, reading on to the first damaged byte (a killed or cut file's tail)."""
    count = 0
    try:
        with av.open(str(path)) as container:
            for _ in container.decode(video=0):
                count += 1
    except (av.error.FFmpegError if hasattr(av.error, "FFmpegError") else Exception, ValueError):
        pass
    return count


def frame(i):
    image = np.zeros((SIZE[1], SIZE[0], 3), np.uint8)
    image[:, : (i * 3) % SIZE[0]] = (40, 120, 200)
    return image


KILLED_WRITER = """
import os, sys, time
import numpy as np
sys.path.insert(0, %(root)r)
from jetcam_app.output.sinks.video_file import VideoFileSink
from jetcam_app.output.video.fmp4 import VideoSettings
sink = VideoFileSink(%(path)r, 30.0, (160, 120), video=VideoSettings(fragmented=%(fragmented)r))
for i in range(%(frames)d):
    image = np.zeros((120, 160, 3), np.uint8)
    image[:, : (i * 3) %% 160] = (40, 120, 200)
    sink.write(image, i)
while sink._queue.qsize():  # every frame handed to the encoder thread
    time.sleep(0.01)
time.sleep(0.3)
os.kill(os.getpid(), 9)
"""


@pytest.mark.parametrize("fragmented, frames", [(True, 60), (False, 60)])
def test_kill_9_mid_recording_keeps_the_fragmented_file_and_loses_the_plain_one(tmp_path, fragmented, frames):
    path = str(tmp_path / "rec.mp4")
    code = subprocess.call([sys.executable, "-c", KILLED_WRITER % dict(root=ROOT, path=path, fragmented=fragmented,
                                                                         frames=frames)])
    assert code == -signal.SIGKILL
    kept = decodable_frames(path)
    if fragmented:
        assert kept >= 0.9 * frames, "only %d of %d frames survived the kill" % (kept, frames)
    else:
        assert kept == 0  # OpenCV's mp4v writes its index at release(): the control that shows the test can fail


def test_kill_9_of_the_app_leaves_a_recording_that_plays(tmp_path):
    out, rec = tmp_path / "run", tmp_path / "rec.mp4"
    proc = subprocess.Popen([sys.executable, os.path.join(ROOT, "run.py"), "--source", "test://320x240@30",
                             "--model", "mobilenet_v2", "--random-weights", "--threads", "1", "--headless",
                             "--out", str(out), "--record", str(rec), "--save-input", str(tmp_path / "in.mp4")],
                            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 120
        rows = 0
        while time.time() < deadline and rows < 75:
            time.sleep(0.2)
            if (out / "predictions.jsonl").exists():
                with open(str(out / "predictions.jsonl")) as f:
                    rows = sum(1 for _ in f)
        assert rows >= 75, "the app processed only %d frames" % rows
        time.sleep(1.0)  # the encoder thread catches up with what was drawn
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
    with open(str(out / "predictions.jsonl")) as f:
        processed = sum(1 for line in f if line.strip() and json.loads(line))
    assert decodable_frames(rec) >= 0.9 * processed, (decodable_frames(rec), processed)
    assert decodable_frames(tmp_path / "in.mp4") >= 0.9 * processed


def test_a_truncated_recording_decodes_up_to_the_cut(tmp_path):
    path = str(tmp_path / "rec.mp4")
    with VideoFileSink(path, 30.0, SIZE) as sink:
        for i in range(90):
            sink.write(frame(i), i)
    data = open(path, "rb").read()
    assert decodable_frames(path) == 90
    kept = []
    for fraction in (0.25, 0.5, 0.9, 0.99):
        cut = str(tmp_path / ("cut%d.mp4" % int(fraction * 100)))
        with open(cut, "wb") as f:
            f.write(data[:int(len(data) * fraction)])
        kept.append(decodable_frames(cut))
    assert kept == sorted(kept) and kept[0] > 0 and kept[-1] >= 85
    for fraction, n in zip((0.25, 0.5, 0.9, 0.99), kept):  # about in proportion: every frame is its own fragment
        assert n >= 90 * fraction - 8


def test_segments_each_open_on_a_keyframe_and_hold_their_share(tmp_path):
    path = str(tmp_path / "rec.mp4")
    with VideoFileSink(path, 30.0, SIZE, video=VideoSettings(segment_s=1.0)) as sink:
        for i in range(75):
            sink.write(frame(i), i)
    names = sorted(os.listdir(str(tmp_path)))
    assert names == ["rec_0001.mp4", "rec_0002.mp4", "rec_0003.mp4"]
    assert [decodable_frames(tmp_path / n) for n in names] == [30, 30, 15]
    for name in names:
        with av.open(str(tmp_path / name)) as container:
            first = next(container.demux(video=0))
            assert first.is_keyframe


def test_h264_at_the_bitrate_asked_for_and_odd_sizes_padded(tmp_path):
    path = str(tmp_path / "odd.mp4")
    with VideoFileSink(path, 30.0, (161, 121), video=VideoSettings(bitrate=200000)) as sink:
        for i in range(30):
            sink.write(np.full((121, 161, 3), i * 8, np.uint8), i)
    with av.open(path) as container:
        stream = container.streams.video[0]
        assert (stream.codec_context.name, stream.width, stream.height) == ("h264", 162, 122)
    assert decodable_frames(path) == 30
    assert os.path.getsize(path) < 200000 / 8 * 1.0 * 2  # about a second at 200 kbit/s, not megabytes


def test_without_pyav_the_recording_is_opencvs_and_says_what_that_costs(tmp_path, monkeypatch, caplog):
    import jetcam_app.output.sinks.video_file as video_file

    monkeypatch.setattr(video_file, "av_module", lambda: None)
    path = str(tmp_path / "plain.mp4")
    with caplog.at_level("WARNING"):
        with VideoFileSink(path, 30.0, SIZE) as sink:
            sink.write(frame(0), 0)
    assert not sink.fragmented and "a crash or kill leaves unplayable" in caplog.text and "pip install av" in caplog.text
    assert decodable_frames(path) == 1


def test_a_bad_bitrate_is_one_line_exit_2(tmp_path, capsys):
    from jetcam_app.cli import main

    code = main(["--source", "test://160x120@30?frames=2", "--bitrate", "fast", "--headless", "--out",
                 str(tmp_path / "o")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "output.bitrate must be like 4M" in err[0]


def test_a_jetson_encoder_that_does_not_start_falls_back_to_pyav(tmp_path, monkeypatch, caplog):
    """Where GStreamer lists nvv4l2h264enc but the writer cannot start (an Orin Nano has no encoder engine; here
    OpenCV has no GStreamer), the recording is PyAV's, with a warning saying why."""
    import jetcam_app.output.sinks.video_file as video_file

    monkeypatch.setattr(video_file, "hardware_encoder", lambda: "nvv4l2h264enc")
    path = str(tmp_path / "rec.mp4")
    with caplog.at_level("WARNING"):
        with VideoFileSink(path, 30.0, SIZE) as sink:
            for i in range(10):
                sink.write(frame(i), i)
    assert "cannot record" in caplog.text and "recording with PyAV instead" in caplog.text
    assert sink.fragmented and decodable_frames(path) == 10
