"""`run.py --check` and the presets in configs/: every preset is valid here, a bad file exits 2 with one line,
and a check writes nothing (what the machine lacks is a note, never a failure)."""
import glob
import os
import shutil
import subprocess
import sys

import pytest
import yaml

from jetcam_app.cli import main

from conftest import ROOT

PRESETS = sorted(glob.glob(os.path.join(ROOT, "configs", "*.yaml")))
EXPECTED_PRESETS = ("bench.yaml", "jetson-csi-trt.yaml", "replay.yaml", "rtsp-cameras.yaml", "usb.yaml")


def run_cli(args, capsys):
    code = main(args)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def tree(path):
    return sorted(os.path.relpath(os.path.join(d, n), str(path)) for d, dirs, files in os.walk(str(path))
                  for n in dirs + files)


def preset_sources(path):
    """(name or None, uri) of each source a preset names, read from its YAML."""
    with open(path, encoding="utf-8") as f:
        data = yaml.safe_load(f)
    entries = data.get("sources") or [data.get("source", {})]
    return [(e.get("name"), e.get("uri", "sample")) for e in entries]


def test_the_presets_are_all_there_and_listed_in_their_readme():
    assert tuple(os.path.basename(p) for p in PRESETS) == EXPECTED_PRESETS
    with open(os.path.join(ROOT, "configs", "README.md"), encoding="utf-8") as f:
        readme = f.read()
    for name in EXPECTED_PRESETS:
        assert "`%s`" % name in readme
    assert "--check" in readme


@pytest.mark.parametrize("preset", PRESETS, ids=os.path.basename)
def test_every_preset_passes_check_and_prints_its_sources(tmp_path, monkeypatch, capsys, preset):
    monkeypatch.chdir(tmp_path)
    code, out, err = run_cli(["--config", preset, "--check"], capsys)
    assert code == 0, err
    assert "valid" in out.splitlines()[0]
    sources = preset_sources(preset)
    assert "sources (%d):" % len(sources) in out
    for name, uri in sources:
        line = next(l for l in out.splitlines() if l.startswith("  ") and uri.split("@")[-1] in l)
        assert "kind " in line
        if name:
            assert line.strip().startswith(name + ":")
    for heading in ("model: ", "engine: ", "outputs:", "run folder: "):
        assert heading in out
    assert "password" not in out  # credentials in an RTSP URL are masked
    assert tree(tmp_path) == []


def test_check_without_config_checks_the_defaults_plus_flags(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    code, out, _ = run_cli(["--check", "--source", "test://320x240@15", "--model", "mobilenet_v2",
                            "--random-weights", "--name", "trial"], capsys)
    assert code == 0
    assert "the defaults and flags: valid" in out
    assert "test://320x240@15  kind test (320x240@15)" in out
    assert "model: mobilenet_v2 (weights: random" in out
    assert "engine: cpu fp32" in out
    assert "run folder: runs/trial (a new runs/trial, runs/trial2" in out
    assert "notes: none" in out
    assert tree(tmp_path) == []


def test_the_run_folder_shown_is_the_next_free_one(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    os.makedirs("runs/run")
    os.makedirs("runs/run2")
    code, out, _ = run_cli(["--check", "--source", "test://"], capsys)
    assert code == 0 and "run folder: runs/run3 " in out
    assert sorted(os.listdir("runs")) == ["run", "run2"]


def test_check_writes_no_output_given_anywhere(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    out_dir, record, raw = tmp_path / "out" / "deep", tmp_path / "rec" / "a.mp4", tmp_path / "raw" / "in.mp4"
    code, out, err = run_cli(["--check", "--source", "test://", "--out", str(out_dir), "--record", str(record),
                              "--save-input", str(raw), "--backend", "onnxruntime",
                              "--cache-dir", str(tmp_path / "cache"), "--http", "8080", "--http-token", "s3cret"],
                             capsys)
    assert code == 0, err
    assert "run folder: %s (as given)" % out_dir in out
    assert "record: %s" % record in out
    assert "save_input: %s (+ %s.timestamps.csv)" % (raw, raw) in out
    assert "http://127.0.0.1:8080/ (token required)" in out and "s3cret" not in out
    assert tree(tmp_path) == []


def lacking(tmp_path):
    (tmp_path / "file").write_text("x")
    return [
        (["--source", "/dev/video97"], "/dev/video97 does not exist; video devices here"),
        (["--source", str(tmp_path / "gone.mp4")], "gone.mp4 does not exist"),
        (["--weights", "nowhere.pth"], "nowhere.pth not found"),
        (["--out", str(tmp_path / "file" / "sub")], "is a file, not a folder"),
        (["--backend", "torch2trt"], "backend torch2trt"),
    ]


def test_what_the_machine_lacks_is_a_note_and_still_exit_0(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    for flags, note in lacking(tmp_path):
        args = ["--check", "--model", "mobilenet_v2", "--random-weights"] + flags
        if "--weights" in flags:
            args.remove("--random-weights")
        if "--source" not in flags:
            args += ["--source", "test://"]
        code, out, err = run_cli(args, capsys)
        assert code == 0, (flags, err)
        notes = out.split("notes: missing on this machine", 1)
        assert len(notes) == 2 and note in notes[1], (flags, out)
    assert tree(tmp_path) == ["file"]


@pytest.mark.parametrize("yaml_text, message", [
    ("engine:\n  backnd: cpu\n", "unknown key 'engine.backnd'"),
    ("sources:\n  - {uri: test://, colour: red}\n  - {uri: test://}\n", "unknown key 'colour' in sources[0]"),
    ("camera:\n  uri: csi://0\n", "unknown section 'camera'"),
    ("engine:\n  precision: fp8\n", "unknown precision 'fp8'"),
    ("source:\n  fps: fast\n", "source.fps must be float"),
    ("source:\n  uri: csi://front\n", "bad CSI sensor id"),
    ("sources:\n  - {uri: test://, name: a}\n  - {uri: 'usb:x'}\n", "bad V4L2 device"),
    ("output:\n  record: out.avi\n", "the name must end in .mp4"),
    ("model: [nanodet]\n", "section 'model' must be a mapping"),
])
def test_an_invalid_config_exits_2_with_one_line(tmp_path, monkeypatch, capsys, yaml_text, message):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "bad.yaml").write_text(yaml_text)
    code, out, err = run_cli(["--config", "bad.yaml", "--check"], capsys)
    assert code == 2
    assert out == ""
    assert len(err.strip().splitlines()) == 1, err
    assert err.startswith("error: ") and message in err
    assert tree(tmp_path) == ["bad.yaml"]


def test_check_does_not_initialise_gstreamer(tmp_path):
    """PyGObject's Gst in the process can crash TensorRT's ONNX parser later: plugins are asked of gst-inspect."""
    code = ("import sys; sys.path.insert(0, sys.argv[1]); from jetcam_app.cli import main; "
            "rc = main(['--config', sys.argv[2], '--check']); "
            "print('GST' if 'gi.repository.Gst' in sys.modules else 'NO-GST'); sys.exit(rc)")
    result = subprocess.run([sys.executable, "-c", code, ROOT, os.path.join(ROOT, "configs", "rtsp-cameras.yaml")],
                            cwd=str(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            universal_newlines=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "NO-GST"
    assert "plugin" in result.stdout or "notes: none" in result.stdout
    assert tree(tmp_path) == []


@pytest.mark.skipif(not shutil.which("git") or not os.path.exists(os.path.join(ROOT, ".git")),
                    reason="needs git and a git checkout")
def test_models_folder_ignores_weights_but_not_its_readme():
    def ignored(path):
        code = subprocess.call(["git", "check-ignore", "-q", "--no-index", path], cwd=ROOT)
        assert code in (0, 1), "git check-ignore failed on %s" % path
        return code == 0

    assert not ignored("models/README.md")
    for path in ("models/nanodet/nanodet.bin", "models/cache/a.engine", "models/cache/a.json", "models/resnet18.pth",
                 "models/x.pt", "models/x.onnx"):
        assert ignored(path), path
    assert not ignored("configs/usb.yaml")
