"""Outputs of several sources against every input and output, the run folder held by one run at a time, and
source names that name files. Each refusal is one line naming both sides, exit code 2, nothing overwritten."""

import os
import signal
import subprocess
import sys
import time

import pytest

from jetcam_app.cli import main
from jetcam_app.config import load_config
from jetcam_app.errors import ConfigError
from jetcam_app.output.paths import check_output_paths
from jetcam_app.output.run_folder import LOCK_FILE

from conftest import ROOT, write_index_video

BASE = ["--model", "mobilenet_v2", "--random-weights", "--headless"]


def one_line_exit_2(code, err):
    assert code == 2, err
    lines = [l for l in err.strip().splitlines() if l.startswith("error: ")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


# -- several sources: every derived output against every input and every other output ------------------------

def mosaic_record_is_the_second_source(p):
    return ["--source", "cam.mp4", "--source", "b.mp4", "--record", "b.mp4", "--mosaic"], \
        ["--record b.mp4 is the source b (b.mp4)"]


def per_source_record_is_the_other_source(p):
    # --record out.mp4 gives source cam out_cam.mp4, which is the second input
    return ["--source", "cam.mp4", "--source", "out_cam.mp4", "--record", "out.mp4"], \
        ["source cam's --record file out_cam.mp4 is the source out_cam (out_cam.mp4)"]


def per_source_record_absolute_against_dot_slash(p):
    return ["--source", "./cam.mp4", "--source", "./out_cam.mp4", "--record", str(p / "out.mp4")], \
        ["source cam's --record file %s is the source out_cam (./out_cam.mp4)" % (p / "out_cam.mp4")]


def per_source_record_through_dotdot(p):
    (p / "sub").mkdir()
    return ["--source", "cam.mp4", "--source", str(p / "out_cam.mp4"), "--record", "sub/../out.mp4"], \
        ["sub/../out_cam.mp4", "is the source out_cam"]


def per_source_record_through_a_symlinked_folder(p):
    os.symlink(str(p), str(p / "alias"))
    return ["--source", "cam.mp4", "--source", "out_cam.mp4", "--record", str(p / "alias" / "out.mp4")], \
        [os.path.join("alias", "out_cam.mp4"), "is the source out_cam (out_cam.mp4)"]


def per_source_save_input_is_a_third_source(p):
    # source b's --save-input raw_b.mp4 is the third source's file
    return ["--source", "cam.mp4", "--source", "b.mp4", "--source", "raw_b.mp4", "--save-input", "raw.mp4"], \
        ["source b's --save-input file raw_b.mp4 is the source raw_b (raw_b.mp4)"]


def mosaic_record_is_a_per_source_save_input(p):
    return ["--source", "cam.mp4", "--source", "b.mp4", "--mosaic", "--record", "rec_b.mp4",
            "--save-input", "rec.mp4"], ["--record rec_b.mp4 and source b's --save-input file rec_b.mp4 are the "
                                         "same file"]


def named_sources_in_the_config(p):
    # sources: from the file (not --source), with given names: rec.mp4 -> rec_left.mp4, the second input
    (p / "two.yaml").write_text("sources:\n  - {uri: cam.mp4, name: left}\n  - {uri: rec_left.mp4, name: right}\n")
    return ["--config", "two.yaml", "--record", "rec.mp4"], \
        ["source left's --record file rec_left.mp4 is the source right (rec_left.mp4)"]


def a_one_entry_sources_list(p):
    # one entry in sources: is the lone source, and `source:` is not what runs
    (p / "one.yaml").write_text("sources:\n  - {uri: cam.mp4}\n")
    return ["--config", "one.yaml", "--record", "./cam.mp4"], ["--record ./cam.mp4 is the source (cam.mp4)"]


COLLISIONS = [mosaic_record_is_the_second_source, per_source_record_is_the_other_source,
              per_source_record_absolute_against_dot_slash, per_source_record_through_dotdot,
              per_source_record_through_a_symlinked_folder, per_source_save_input_is_a_third_source,
              mosaic_record_is_a_per_source_save_input, named_sources_in_the_config, a_one_entry_sources_list]


@pytest.mark.parametrize("collide", COLLISIONS, ids=[f.__name__ for f in COLLISIONS])
def test_several_sources_outputs_never_overwrite_inputs_or_each_other(tmp_path, capsys, monkeypatch, collide):
    monkeypatch.chdir(str(tmp_path))
    inputs = {name: write_index_video(tmp_path / name, n_frames=3, size=(240, 32))
              for name in ("cam.mp4", "b.mp4", "out_cam.mp4", "raw_b.mp4", "rec_left.mp4")}
    before = {name: open(path, "rb").read() for name, path in inputs.items()}
    args, expected = collide(tmp_path)
    code = main(BASE + ["--out", str(tmp_path / "out")] + args)
    line = one_line_exit_2(code, capsys.readouterr().err)
    for text in expected:
        assert text in line
    assert {name: open(path, "rb").read() for name, path in inputs.items()} == before
    assert not (tmp_path / "out").exists()  # refused before any work: not even the run folder


def test_distinct_outputs_of_several_sources_pass(tmp_path, monkeypatch):
    monkeypatch.chdir(str(tmp_path))
    config = load_config(overrides={"sources": ["cam.mp4", "b.mp4"], "output.record": "rec.mp4",
                                    "output.save_input": "raw.mp4", "output.out_dir": "out"})
    check_output_paths(config)


# -- one run per run folder -------------------------------------------------------------------------------------

def start_run(cwd, *extra):
    return subprocess.Popen([sys.executable, os.path.join(ROOT, "run.py")] + BASE + list(extra),
                            cwd=str(cwd), stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True)


def wait_for_lock(path, process, limit_s=120.0):
    """The pid the holder writes into its lock file; a deadline so a broken run fails the test, not hangs it."""
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()
        try:
            with open(path) as f:
                text = f.read().strip()
        except OSError:
            text = ""
        if text == str(process.pid):
            return
        time.sleep(0.1)
    raise AssertionError("the first run never locked %s" % path)


def finish(args, cwd):
    result = subprocess.run([sys.executable, os.path.join(ROOT, "run.py")] + BASE + args, cwd=str(cwd),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True, timeout=300)
    return result.returncode, result.stdout, result.stderr


@pytest.mark.skipif(sys.platform == "win32", reason="no fcntl.flock on Windows: run folders are not locked there")
def test_a_run_folder_is_held_by_one_run_and_free_again_after_sigkill(tmp_path):
    endless = ["--source", "test://320x240@5"]  # live and paced: it runs until killed, at little CPU
    first = start_run(tmp_path, *(endless + ["--exist-ok"]))
    try:
        wait_for_lock(str(tmp_path / "runs" / "run" / LOCK_FILE), first)
        code, out, err = finish(endless + ["--exist-ok", "--max-frames", "2"], tmp_path)
        line = one_line_exit_2(code, err)
        assert line == ("error: %s is in use by another run (pid %d); use --name/--out or wait"
                        % (os.path.join("runs", "run"), first.pid)), line
        assert "results:" not in out
        # --out naming the same folder by another spelling is refused too
        code, out, err = finish(endless + ["--out", "./runs/../runs/run", "--max-frames", "2"], tmp_path)
        assert "is in use by another run (pid %d)" % first.pid in one_line_exit_2(code, err)
        # numbering never takes the held folder
        code, out, err = finish(endless + ["--max-frames", "2"], tmp_path)
        assert code == 0, err
        assert "results: %s" % os.path.join("runs", "run2") in out
        assert first.poll() is None  # the first run was never disturbed
    finally:
        first.send_signal(signal.SIGKILL)
        first.communicate()
    assert first.returncode == -signal.SIGKILL
    # the OS dropped the killed run's lock: the folder is reusable at once, and a clean end leaves no lock file
    code, out, err = finish(endless + ["--exist-ok", "--max-frames", "2"], tmp_path)
    assert code == 0, err
    assert "results: %s" % os.path.join("runs", "run") in out
    assert not (tmp_path / "runs" / "run" / LOCK_FILE).exists()


# -- source names ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", [".", "..", "-", "_.-"])
def test_a_source_name_needs_a_letter_or_digit(tmp_path, capsys, name):
    config = tmp_path / "two.yaml"
    config.write_text("sources:\n  - {uri: 'test://160x120@30?frames=30', name: cam}\n"
                      "  - {uri: 'test://160x120@30?frames=30', name: '%s'}\n" % name)
    with pytest.raises(ConfigError) as e:
        load_config(str(config))
    assert str(e.value).startswith("sources[1].name %r must be" % name)
    line = one_line_exit_2(main(BASE + ["--config", str(config), "--out", str(tmp_path / "out")]),
                           capsys.readouterr().err)
    assert "sources[1].name" in line and "at least one letter or digit" in line
    assert not (tmp_path / "out").exists()


def test_names_with_a_letter_or_digit_and_dots_still_pass(tmp_path):
    config = tmp_path / "two.yaml"
    config.write_text("sources:\n  - {uri: 'test://160x120@30?frames=30', name: cam.left}\n"
                      "  - {uri: 'test://160x120@30?frames=30', name: '..2'}\n")
    assert [s.name for s in load_config(str(config)).sources] == ["cam.left", "..2"]
