"""`run.py doctor`: the exit code follows what the given source and backend need; Jetson-only parts show as absent."""

import os

import pytest

from jetcam_app.doctor import doctor_main, run_doctor
from jetcam_app.inference.engines.base import available_backends
from jetcam_app.sources.gst_runner import gobject_reason, is_jetson

off_jetson = pytest.mark.skipif(is_jetson(), reason="checks what a non-Jetson machine reports")


def doctor(tmp_path, source=None, backend=None, cache_dir=None):
    lines = []
    code = run_doctor(source, backend, out=lines.append, cache_dir=cache_dir or str(tmp_path / "cache"))
    return code, "\n".join(lines)


def row(text, name):
    """The table row of one check and the fix line under it, if any."""
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if line.split()[2:3] == [name] or ("  %s  " % name) in line:
            fix = lines[i + 1] if i + 1 < len(lines) and lines[i + 1].strip().startswith("fix:") else ""
            return line, fix
    raise AssertionError("no row %r in:\n%s" % (name, text))


@off_jetson
def test_synthetic_source_needs_nothing_jetson_parts_absent_with_hints(tmp_path):
    code, text = doctor(tmp_path, "test://")
    assert code == 0, text
    for name in ("nvargus-daemon", "nvpmodel", "jetson_clocks", "jtop service"):
        line, fix = row(text, name)
        assert line.startswith("absent") and "Jetson only" in line
        assert fix, "no hint for %s" % name
    assert "result: everything" in text


@off_jetson
def test_csi_source_off_a_jetson_is_missing_pieces(tmp_path):
    code, text = doctor(tmp_path, "csi://0")
    assert code == 1
    line, fix = row(text, "plugin nvarguscamerasrc")
    assert "yes" in line.split()[:2] and "nvidia-l4t-gstreamer" in fix
    assert "nvargus-daemon" in text.splitlines()[-1]


def test_absent_usb_device_fails_and_lists_devices(tmp_path):
    code, text = doctor(tmp_path, "/dev/video9")
    assert code == 1
    line, _ = row(text, "/dev/video9")
    assert line.startswith("MISSING") and "video devices here" in line


def test_bad_source_uri_fails(tmp_path):
    code, text = doctor(tmp_path, "csi://front")
    assert code == 1 and "bad CSI sensor id" in text


def test_backend_exit_code_follows_check_available(tmp_path):
    available = available_backends()
    for backend in ("cpu", "cuda", "trt"):
        code, text = doctor(tmp_path, "test://", backend)
        assert code == (0 if backend in available else 1), text
        line, fix = row(text, "backend %s" % backend)
        assert line.startswith("ok" if backend in available else "MISSING")
        if backend not in available:
            assert fix


def test_unwritable_models_cache_fails(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    code, text = doctor(tmp_path, "test://", cache_dir=str(blocker / "cache"))
    assert code == 1
    line, fix = row(text, "models cache")
    assert line.startswith("MISSING") and "--cache-dir" in fix


@pytest.mark.skipif(gobject_reason() is not None, reason="needs PyGObject + GStreamer: %s" % gobject_reason())
def test_custom_pipeline_is_parsed(tmp_path):
    good = "gst://videotestsrc ! videoconvert ! appsink"
    assert doctor(tmp_path, good)[0] == 0
    code, text = doctor(tmp_path, "gst://videotestsrc ! nosuchelement ! appsink")
    assert code == 1 and "nosuchelement" in text


def test_doctor_main_and_the_cli(tmp_path, capsys):
    from jetcam_app.cli import main

    cache = str(tmp_path / "cache")
    assert doctor_main(["--source", "test://", "--cache-dir", cache]) == 0
    assert main(["doctor", "--source", "/dev/video9", "--cache-dir", cache]) == 1
    out = capsys.readouterr().out
    assert "status" in out and "/dev/video9" in out
    assert os.path.isdir(cache)


@pytest.mark.parametrize("kind, listed, needed", [
    ("csi", ("nvarguscamerasrc", "nvvidconv", "videoconvert", "appsink"), True),
    ("rtsp", ("rtspsrc", "decodebin", "videoconvert", "appsink", "nvv4l2decoder" if is_jetson() else "avdec_h264"),
     True),
    ("test", ("videotestsrc", "v4l2src", "nvarguscamerasrc", "nvvidconv"), False),  # test:// runs in Python
    ("gst", ("videotestsrc", "v4l2src", "nvarguscamerasrc", "nvvidconv"), False),  # its own pipeline is parsed
])
def test_plugins_listed_and_needed_come_from_the_source_kind(kind, listed, needed):
    from jetcam_app.doctor import capture_checks
    from jetcam_app.sources.kinds import source_kind

    plugins = [c for c in capture_checks(source_kind(kind), is_jetson()) if c.name.startswith("plugin ")]
    assert tuple(c.name[len("plugin "):] for c in plugins) == listed
    assert all(c.needed is needed for c in plugins)
    runner = [c for c in capture_checks(source_kind(kind), is_jetson()) if c.name == "pipeline runner"][0]
    assert runner.needed is (kind in ("csi", "rtsp", "gst"))


def test_usb_needs_v4l2src_but_not_jpegdec():
    from jetcam_app.doctor import capture_checks
    from jetcam_app.sources.gst_runner import opencv_has_gstreamer
    from jetcam_app.sources.kinds import source_kind

    checks = {c.name: c for c in capture_checks(source_kind("usb"), is_jetson())}
    has_runner = opencv_has_gstreamer() or gobject_reason() is None
    assert checks["plugin v4l2src"].needed is has_runner  # OpenCV's V4L2 backend needs no plugin
    assert checks["plugin jpegdec"].needed is False


@off_jetson
def test_doctor_says_whether_a_jetson_s_camera_frames_go_to_cuda(tmp_path, monkeypatch):
    import torch

    from jetcam_app import doctor as doctor_module

    code, text = doctor(tmp_path, "test://")
    line, _ = row(text, "camera frames to CUDA (NVMM)")
    assert line.startswith("info") and "not a Jetson" in line
    check = doctor_module.nvmm_frames_check(True, "No module named 'gi'")
    assert check.status == doctor_module.WARN and "no PyGObject's Gst" in check.detail and "python3-gi" in check.fix
    monkeypatch.setattr(doctor_module.gst_runner, "has_element", lambda name: True)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    check = doctor_module.nvmm_frames_check(True, None)
    assert check.status == doctor_module.OK and "no videoconvert" in check.detail
    monkeypatch.setattr(doctor_module.gst_runner, "has_element", lambda name: name != "nvvidconv")
    assert "no nvvidconv" in doctor_module.nvmm_frames_check(True, None).detail
