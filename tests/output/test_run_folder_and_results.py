"""Run folders (runs/<name>, <name>2, ...), per-image results under their own names, sources named in
predictions.jsonl, output paths with the wrong extension, and the progress line."""

import io
import json
import logging
import os
import time

import cv2
import pytest

from jetcam_app.cli import main
from jetcam_app.config import OutputConfig
from jetcam_app.errors import OutputError
from jetcam_app.output.live_status import LiveStatus, SourceStatus
from jetcam_app.output.overlay import HudInfo
from jetcam_app.output.progress import ProgressReporter
from jetcam_app.output.run_folder import check_extension, resolve_run_folder
from jetcam_app.sources.synthetic import draw_pattern

from conftest import write_index_video

MODEL = ["--model", "mobilenet_v2", "--random-weights", "--headless"]


def test_run_folders_are_numbered_unless_exist_ok_or_out(tmp_path):
    runs = str(tmp_path / "runs")
    assert resolve_run_folder(OutputConfig(), runs) == os.path.join(runs, "run")
    assert resolve_run_folder(OutputConfig(), runs) == os.path.join(runs, "run2")
    assert resolve_run_folder(OutputConfig(name="predict"), runs) == os.path.join(runs, "predict")
    assert resolve_run_folder(OutputConfig(), runs) == os.path.join(runs, "run3")
    assert resolve_run_folder(OutputConfig(exist_ok=True), runs) == os.path.join(runs, "run")
    given = str(tmp_path / "given")
    assert resolve_run_folder(OutputConfig(out_dir=given), runs) == given
    assert resolve_run_folder(OutputConfig(out_dir=given), runs) == given  # --out is reused as given


def test_wrong_extension_names_the_right_one():
    check_extension("clip.mp4", "--record")
    check_extension("CLIP.MP4", "--record")
    check_extension(None, "--record")
    with pytest.raises(OutputError, match=r"must end in \.mp4; use --record out\.mp4"):
        check_extension("out.jpg", "--record")


def test_cli_run_folder_printed_at_start_and_end(tmp_path, monkeypatch, capsys, caplog):
    monkeypatch.chdir(tmp_path)
    with caplog.at_level(logging.INFO):
        for expected in ("runs/run", "runs/run2"):
            assert main(MODEL + ["--source", "test://320x240@30?frames=2"]) == 0
            assert "results: %s" % expected in capsys.readouterr().out
            assert "results go to %s" % expected in caplog.text
    assert sorted(os.listdir("runs")) == ["run", "run2"]
    assert main(MODEL + ["--source", "test://320x240@30?frames=2", "--name", "x", "--exist-ok"]) == 0
    assert main(MODEL + ["--source", "test://320x240@30?frames=2", "--name", "x", "--exist-ok"]) == 0
    assert sorted(os.listdir("runs")) == ["run", "run2", "x"]


def test_images_are_saved_under_their_own_names_at_their_own_sizes(tmp_path, capsys):
    photos = tmp_path / "photos"
    photos.mkdir()
    sizes = {"a.jpg": (320, 240), "b.png": (260, 300), "c.jpg": (640, 360)}
    for name, (w, h) in sizes.items():
        cv2.imwrite(str(photos / name), draw_pattern(1, w, h))
    out = tmp_path / "out"
    assert main(MODEL + ["--source", str(photos), "--out", str(out)]) == 0, capsys.readouterr().err
    for name, (w, h) in sizes.items():
        saved = cv2.imread(str(out / name))
        assert saved is not None and saved.shape == (h, w, 3), name
    lines = [json.loads(line) for line in open(str(out / "predictions.jsonl"))]
    assert [(r["frame"], r["source"]) for r in lines] == [(0, "a.jpg"), (1, "b.png"), (2, "c.jpg")]
    assert list(lines[0]) == sorted(lines[0])
    no_save = tmp_path / "no-save"
    assert main(MODEL + ["--source", str(photos), "--out", str(no_save), "--no-save"]) == 0
    assert sorted(os.listdir(str(no_save))) == ["predictions.jsonl", "summary.json", "timing.csv"]


def test_videos_name_their_source_and_save_only_when_asked(tmp_path, capsys):
    video = write_index_video(tmp_path / "in.mp4", n_frames=3)
    out = tmp_path / "out"
    assert main(MODEL + ["--source", video, "--out", str(out)]) == 0, capsys.readouterr().err
    assert not (out / "annotated.mp4").exists()
    records = [json.loads(line) for line in open(str(out / "predictions.jsonl"))]
    assert {r["source"] for r in records} == {video} and [r["frame"] for r in records] == [0, 1, 2]
    assert main(MODEL + ["--source", video, "--out", str(tmp_path / "saved"), "--save"]) == 0
    assert cv2.VideoCapture(str(tmp_path / "saved" / "annotated.mp4")).get(cv2.CAP_PROP_FRAME_COUNT) == 3


def publish(status, processed):
    status.publish(0, HudInfo(fps=25.0, stage_ms={"infer": 30.0}, realtime_ok=False, dropped=1), processed,
                   processed - 1, processed)


def test_progress_logs_a_line_every_few_seconds_off_a_terminal(caplog):
    status = LiveStatus(sources=[SourceStatus("cam", total_frames=100)])
    publish(status, 40)
    with caplog.at_level(logging.INFO, logger="jetcam_app.progress"):
        reporter = ProgressReporter(status, stream=io.StringIO(), tty=False, log_every_s=0.05).start()
        deadline = time.monotonic() + 10
        while "frame 40/100" not in caplog.text and time.monotonic() < deadline:
            time.sleep(0.05)
        reporter.close()
        reporter.close()
    assert "frame 40/100, 25.0 fps, 1 dropped, NOT real-time so far, about 2 s left" in caplog.text


def test_progress_bar_on_a_terminal():
    stream = io.StringIO()
    status = LiveStatus(sources=[SourceStatus("cam", total_frames=100)])
    reporter = ProgressReporter(status, stream=stream, tty=True).start()
    publish(status, 60)
    reporter.close()
    text = stream.getvalue()
    assert "60/100" in text and "25.0 fps, 1 dropped, NOT real-time so far" in text
