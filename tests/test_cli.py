"""The CLI end to end (headless) and every user error: one line naming the fix, exit code 2."""
import json
import os

import pytest

from jetcam_app.cli import main

from conftest import write_index_video


def run_cli(args, capsys):
    code = main(args)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_end_to_end_outputs_and_deterministic_replay(tmp_path, capsys):
    video = write_index_video(tmp_path / "in.mp4", n_frames=12, size=(320, 240))
    outputs = []
    for run in ("a", "b"):
        out = tmp_path / run
        code, stdout, err = run_cli(["--source", video, "--model", "mobilenet_v2", "--random-weights", "--headless",
                                     "--out", str(out), "--record", str(out / "annotated.mp4")], capsys)
        assert code == 0, err
        assert "real-time at" in stdout
        summary = json.load(open(str(out / "summary.json")))
        frames = summary["frames"]
        assert frames["captured"] == frames["processed"] == 12 and frames["dropped"] == 0
        assert len(open(str(out / "timing.csv")).read().splitlines()) == 13
        outputs.append(open(str(out / "predictions.jsonl")).read())
        assert os.path.getsize(str(out / "annotated.mp4")) > 0
    assert outputs[0] == outputs[1]
    assert len(outputs[0].splitlines()) == 12


def not_a_video(tmp_path):
    (tmp_path / "notes.mp4").write_text("hello")
    return ["--source", str(tmp_path / "notes.mp4")]


def empty_folder(tmp_path):
    (tmp_path / "empty").mkdir()
    return ["--source", str(tmp_path / "empty")]


def bad_key(tmp_path):
    (tmp_path / "c.yaml").write_text("engine:\n  backnd: cpu\n")
    return ["--config", str(tmp_path / "c.yaml")]


def unwritable_out(tmp_path):
    (tmp_path / "file").write_text("x")
    return ["--out", str(tmp_path / "file" / "sub")]


@pytest.mark.parametrize("make_args, message", [
    (lambda p: ["--source", str(p / "missing.mp4")], "video file not found"),
    (not_a_video, "is not a video"),
    (empty_folder, "holds no images"),
    (lambda p: ["--model", "yolo"], "unknown model 'yolo'"),
    (lambda p: ["--backend", "tpu"], "unknown backend 'tpu'"),
    (lambda p: ["--precision", "int4"], "unknown precision 'int4'"),
    (lambda p: ["--precision", "fp16"], "fp16 runs on CUDA only"),
    (unwritable_out, "cannot write to the output folder"),
    (bad_key, "unknown key 'engine.backnd'"),
    (lambda p: ["--record", str(p / "out.jpg")], "so the name must end in .mp4; use --record"),
    (lambda p: ["--save-input", str(p / "raw.avi")], "use --save-input"),
    (lambda p: ["--decode-threads", "-1"], "source.decode_threads must be between 0 and 64"),
])
def test_user_errors_exit_2_with_one_line(tmp_path, capsys, make_args, message):
    extra = make_args(tmp_path)
    source = [] if "--source" in extra else ["--source", "test://320x240@30?frames=2"]  # repeated = several sources
    args = ["--model", "mobilenet_v2", "--random-weights", "--headless", "--out", str(tmp_path / "out")] + source + extra
    code, _, err = run_cli(args, capsys)
    assert code == 2
    assert message in err
    assert len(err.strip().splitlines()) == 1, err
    assert "Traceback" not in err


def test_cuda_where_there_is_none(tmp_path, capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    code, _, err = run_cli(["--backend", "cuda", "--model", "mobilenet_v2", "--random-weights", "--headless",
                            "--out", str(tmp_path), "--source", "test://"], capsys)
    assert code == 2
    assert "backend 'cuda' is unavailable" in err and "available here: " in err and "cpu" in err


def test_errors_keep_what_was_written(tmp_path, capsys):
    """A failing second run into the same folder must not wipe the logs of the first."""
    out = tmp_path / "out"
    code, _, err = run_cli(["--model", "mobilenet_v2", "--random-weights", "--headless", "--out", str(out),
                            "--source", "test://320x240@30?frames=3"], capsys)
    assert code == 0, err
    before = open(str(out / "predictions.jsonl")).read()
    code, _, err = run_cli(["--model", "mobilenet_v2", "--random-weights", "--headless", "--out", str(out),
                            "--source", str(tmp_path / "missing.mp4")], capsys)
    assert code == 2
    assert open(str(out / "predictions.jsonl")).read() == before


def test_every_flag_has_help_that_shows_its_default():
    import argparse

    from jetcam_app.bench.command import add_bench_arguments
    from jetcam_app.cli import build_parser

    parser = build_parser()
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction):
            continue
        assert action.help and "default" in action.help, action.option_strings
    text = parser.format_help()
    for word in ("HUD (heads-up display", "MJPEG: video as a stream of JPEG images", "CUDA graph (recorded once",
                 "lossless replay (a file read completely", "(default: nanodet)", "(default: 127.0.0.1)"):
        assert word in " ".join(text.split()), word
    bench = argparse.ArgumentParser()
    add_bench_arguments(bench)
    assert all(a.help for a in bench._actions), [a.option_strings for a in bench._actions if not a.help]
