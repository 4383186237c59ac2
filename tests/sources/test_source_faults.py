"""Damaged input is reported as damage, not as the end: a video damaged in the middle, an unreadable image in a folder."""

import json
import os

import cv2
import numpy as np
import pytest

from jetcam_app.cli import main
from jetcam_app.config import SourceConfig
from jetcam_app.errors import SourceError
from jetcam_app.sources.image_folder import ImageFolderSource
from jetcam_app.sources.spec import SourceSpec
from jetcam_app.sources.synthetic import decode_index, draw_pattern
from jetcam_app.sources.video_file import VideoFileSource

N_FRAMES = 250


def mjpg_avi(path, n=N_FRAMES):
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 30, (320, 240))
    assert writer.isOpened()
    for i in range(n):
        writer.write(draw_pattern(i, 320, 240))
    writer.release()
    return str(path)


def damage(path, start_fraction, length):
    data = bytearray(open(path, "rb").read())
    start = int(len(data) * start_fraction)
    length = min(length, len(data) - start)
    data[start:start + length] = np.random.default_rng(1).integers(0, 256, length, dtype=np.uint8).tobytes()
    open(path, "wb").write(bytes(data))


def read_all(source):
    frames = []
    with source:
        while True:
            frame = source.read()
            if frame is None:
                return frames
            frames.append(frame)


def test_damage_in_the_middle_is_skipped_and_counted_not_taken_for_the_end(tmp_path):
    path = mjpg_avi(tmp_path / "v.avi")
    damage(path, 1 / 3, 20000)
    source = VideoFileSource(SourceSpec("file", path), SourceConfig())
    frames = read_all(source)
    encoded = [decode_index(f.image) for f in frames]
    assert encoded[-1] == N_FRAMES - 1  # read on to the real end
    lost = N_FRAMES - len(frames)
    assert lost >= 1 and source.skipped_frames == lost
    assert "%d of %d frames" % (lost, N_FRAMES) in source.stop_reason


def test_damage_to_the_end_stops_naming_the_frame_and_the_loss(tmp_path):
    path = mjpg_avi(tmp_path / "v.avi")
    damage(path, 0.3, os.path.getsize(path))  # everything after 30 % is noise (the index at the end too)
    source = VideoFileSource(SourceSpec("file", path), SourceConfig())
    frames = read_all(source)
    assert 0 < len(frames) < N_FRAMES and source.skipped_frames == N_FRAMES - len(frames)
    assert source.stop_reason == ("decode error: %d of %d frames lost (a damaged or cut-short file); nothing decodes "
                                  "after frame %d" % (N_FRAMES - len(frames), N_FRAMES, len(frames) - 1))


def test_summary_of_a_damaged_video_run_counts_the_lost_frames(tmp_path, capsys):
    path = mjpg_avi(tmp_path / "v.avi", n=30)
    damage(path, 0.5, 8000)
    out = tmp_path / "out"
    code = main(["--source", path, "--model", "mobilenet_v2", "--random-weights", "--headless", "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    summary = json.load(open(str(out / "summary.json")))
    lost = summary["source_skipped_frames"]
    assert lost >= 1 and summary["frames"]["processed"] == 30 - lost
    assert "%d of 30 frames" % lost in summary["source_stop_reason"]


def test_unreadable_image_in_a_folder_is_skipped_counted_and_the_rest_read(tmp_path):
    for i in range(4):
        cv2.imwrite(str(tmp_path / ("%02d.png" % i)), draw_pattern(i, 320, 240))
    (tmp_path / "02.png").write_bytes(b"not a png at all")
    source = ImageFolderSource(SourceSpec("folder", str(tmp_path)), SourceConfig())
    frames = read_all(source)
    assert [f.index for f in frames] == [0, 1, 3]  # the gap shows where the image was
    assert source.skipped_frames == 1 and "1 unreadable image(s) skipped" in source.stop_reason


def test_a_single_unreadable_image_is_still_an_error(tmp_path):
    (tmp_path / "bad.png").write_bytes(b"nope")
    source = ImageFolderSource(SourceSpec("image", str(tmp_path / "bad.png")), SourceConfig())
    with pytest.raises(SourceError, match="not an image OpenCV can read"):
        read_all(source)


def test_a_fifo_is_refused_instead_of_blocking(tmp_path):
    os.mkfifo(str(tmp_path / "pipe.mp4"))
    with pytest.raises(SourceError, match="not a regular file"):
        VideoFileSource(SourceSpec("file", str(tmp_path / "pipe.mp4")), SourceConfig()).open()


def test_a_run_stopped_early_reports_no_lost_frames(tmp_path):
    """--max-frames or Ctrl-C closes a sound video before its end: nothing was lost, so nothing is reported."""
    source = VideoFileSource(SourceSpec("file", mjpg_avi(tmp_path / "sound.avi", 40)), SourceConfig())
    source.open()
    for _ in range(5):
        assert source.read() is not None
    source.close()
    assert source.skipped_frames == 0 and source.stop_reason is None
