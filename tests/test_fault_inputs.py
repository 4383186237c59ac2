"""Hostile or unlucky input at the CLI: outputs colliding with inputs, unreadable configs, out-of-range values, odd
files as sources or weights. Each is one line naming the fix, exit code 2, no traceback, nothing overwritten."""

import json
import os

import numpy as np
import pytest

from jetcam_app.cli import main
from jetcam_app.output.logs import PredictionLog
from jetcam_app.types import Classification, Detections

from conftest import write_index_video

BASE = ["--model", "mobilenet_v2", "--random-weights", "--headless"]


def run_cli(args, capsys):
    code = main(args)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def one_line_exit_2(code, err):
    assert code == 2, err
    lines = [l for l in err.strip().splitlines() if l.startswith("error: ")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


# -- outputs colliding with inputs or with each other (by any spelling) ---------------------------------------

def record_is_source(p, video):
    return ["--source", video, "--record", video], "--record"


def record_is_source_via_symlink(p, video):
    os.symlink(video, str(p / "link.mp4"))
    return ["--source", video, "--record", str(p / "link.mp4")], "is the source"


def record_is_source_via_dotdot(p, video):
    (p / "sub").mkdir()
    return ["--source", video, "--record", str(p / "sub" / ".." / "in.mp4")], "is the source"


def record_is_source_relative(p, video):
    return ["--source", os.path.relpath(video), "--record", video], "is the source"


def record_is_save_input(p, video):
    return ["--source", video, "--record", str(p / "a.mp4"), "--save-input", str(p / "sub" / ".." / "a.mp4")], \
        "are the same file"


def record_is_a_log(p, video):
    return ["--source", video, "--out", str(p / "out"), "--record", str(p / "out" / "timing.csv")], \
        "are the same file"


def save_input_is_config(p, video):
    (p / "c.yaml").write_text("pipeline:\n  max_frames: 2\n")
    return ["--source", video, "--config", str(p / "c.yaml"), "--save-input", str(p / "c.yaml")], "is the config"


def out_dir_summary_is_source(p, video):
    os.symlink(video, str(p / "summary.json"))
    return ["--source", video, "--out", str(p)], "is the source"


@pytest.mark.parametrize("collide", [record_is_source, record_is_source_via_symlink, record_is_source_via_dotdot,
                                     record_is_source_relative, record_is_save_input, record_is_a_log,
                                     save_input_is_config, out_dir_summary_is_source])
def test_outputs_never_overwrite_inputs_or_each_other(tmp_path, capsys, monkeypatch, collide):
    monkeypatch.chdir(str(tmp_path))
    video = write_index_video(tmp_path / "in.mp4", n_frames=3)
    before = open(video, "rb").read()
    args, message = collide(tmp_path, video)
    args = BASE + ["--out", str(tmp_path / "out")] + args if "--out" not in args else BASE + args
    line = one_line_exit_2(*run_cli(args, capsys)[::2])
    assert message in line
    assert open(video, "rb").read() == before
    assert not (tmp_path / "out" / "predictions.jsonl").exists()


# -- unreadable configs and values out of range ---------------------------------------------------------------

def config_is_a_folder(p):
    (p / "conf").mkdir()
    return ["--config", str(p / "conf")], "cannot read the config file"


def config_not_utf8(p):
    (p / "c.yaml").write_bytes(b"source:\n  uri: \xff\xfe\n")
    return ["--config", str(p / "c.yaml")], "is not UTF-8"


def config_unreadable(p):
    if os.getuid() == 0:
        pytest.skip("root reads files whatever their mode")
    (p / "c.yaml").write_text("pipeline: {}\n")
    os.chmod(str(p / "c.yaml"), 0)
    return ["--config", str(p / "c.yaml")], "cannot read the config file"


def yaml_bool_as_int(p):
    (p / "c.yaml").write_text("pipeline:\n  max_frames: true\n")
    return ["--config", str(p / "c.yaml")], "pipeline.max_frames must be int, got True"


def garbage_weights(p):
    (p / "w.pth").write_bytes(b"\x80\x02.")  # torch's weights_only unpickler raises IndexError on this
    from jetcam_app.inference.safe_load import HAS_WEIGHTS_ONLY

    # torch < 1.13: the tensors-only unpickler of safe_load.py refuses it (pickle's stack underflow)
    return ["--weights", str(p / "w.pth")], "IndexError" if HAS_WEIGHTS_ONLY else "refused it"


def fifo_source(p):
    os.mkfifo(str(p / "pipe.mp4"))
    return ["--source", str(p / "pipe.mp4")], "not a regular file"


@pytest.mark.parametrize("make_args, message", [
    (config_is_a_folder, None), (config_not_utf8, None), (config_unreadable, None), (yaml_bool_as_int, None),
    (lambda p: ["--iou-threshold", "5"], "model.iou_threshold must be between 0.0 and 1.0"),
    (lambda p: ["--iou-threshold", "nan"], "model.iou_threshold must be between"),
    (lambda p: ["--topk", "-3"], "model.topk must be between 1"),
    (lambda p: ["--http", "70000"], "output.http_port must be between 0 and 65535"),
    (lambda p: ["--http", "-1"], "output.http_port must be between 0 and 65535"),
    (lambda p: ["--queue-size", "100000000"], "pipeline.queue_size must be between 1 and 1024"),
    (lambda p: ["--fps", "0"], "source.fps must be between"),
    (lambda p: ["--source", "test://100000x100000"], "test:// size 100000x100000 is out of range"),
    (lambda p: ["--source", "test://320x240@0"], "test:// fps must be in"),
    (garbage_weights, None), (fifo_source, None),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys, make_args, message):
    made = make_args(tmp_path)
    args, message = made if isinstance(made, tuple) else (made, message)
    weights = [] if "--weights" in args else ["--random-weights"]
    source = [] if "--source" in args else ["--source", "test://320x240@30?frames=2"]  # --source twice = 2 sources
    argv = ["--model", "mobilenet_v2", "--headless", "--out", str(tmp_path / "out")] + source + weights + args
    line = one_line_exit_2(*run_cli(argv, capsys)[::2])
    assert message in line, line


def test_last_line_of_defence_turns_oserror_into_one_line(tmp_path, capsys, monkeypatch):
    """An OSError no check foresaw (here: the source folder vanishing while it is listed) is one line, exit 2."""
    import jetcam_app.sources.image_folder as image_folder

    def vanished(path):
        raise PermissionError(13, "Permission denied", path)

    (tmp_path / "imgs").mkdir()
    monkeypatch.setattr(image_folder.os, "listdir", vanished)
    line = one_line_exit_2(*run_cli(BASE + ["--out", str(tmp_path / "out"), "--source", str(tmp_path / "imgs")],
                                    capsys)[::2])
    assert "PermissionError" in line and "(--debug for the traceback)" in line


# -- a frame too small for the encoder, NaN scores ------------------------------------------------------------

def test_tiny_image_record_error_names_the_encoder_minimum_and_the_summary_says_error(tmp_path, capsys):
    import cv2

    cv2.imwrite(str(tmp_path / "dot.png"), np.zeros((1, 1, 3), np.uint8))
    out = tmp_path / "out"
    line = one_line_exit_2(*run_cli(BASE + ["--source", str(tmp_path / "dot.png"), "--out", str(out),
                                            "--record", str(tmp_path / "rec.mp4")], capsys)[::2])
    assert "below the encoder's minimum of 2x2" in line and ".mp4 path" not in line
    summary = json.load(open(str(out / "summary.json")))
    assert summary["stop_reason"].startswith("error: ") and "end of stream" not in summary["stop_reason"]


@pytest.mark.parametrize("result", [
    Classification(np.array([3, 1]), np.array([np.nan, np.inf], np.float32), ["a", "b", "c", "d"]),
    Detections(np.array([[1, 2, 3, 4], [np.nan, 0, 1, 1]], np.float32), np.array([np.nan, 0.5], np.float32),
               np.array([0, 1]), ["a", "b"]),
])
def test_nan_scores_are_written_as_valid_json_null_with_a_warning(tmp_path, result, caplog):
    path = tmp_path / "predictions.jsonl"
    with PredictionLog(str(path)) as log:
        log.write(0, result)
        log.write(1, result)
    lines = open(str(path)).read().splitlines()
    records = [json.loads(line, parse_constant=lambda c: pytest.fail("non-JSON constant %s" % c)) for line in lines]
    assert [r["frame"] for r in records] == [0, 1]
    assert "null" in lines[0]
    assert sum("NaN or infinite" in r.getMessage() for r in caplog.records) == 1
