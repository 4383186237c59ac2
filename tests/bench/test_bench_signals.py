"""`run.py bench` ends on SIGTERM and SIGHUP (sent to the bench alone, as `kill` or a closed SSH session does) as
on Ctrl-C: the worker is stopped, the report written, the bulky work files removed."""

import json
import os
import signal
import subprocess
import sys
import time

import cv2
import pytest

from conftest import ROOT


@pytest.fixture(scope="module")
def photo_dir(tmp_path_factory):
    skimage_data = pytest.importorskip("skimage.data")
    folder = tmp_path_factory.mktemp("photos")
    for name in ("coffee", "chelsea"):
        cv2.imwrite(str(folder / ("%s.jpg" % name)), getattr(skimage_data, name)()[..., ::-1])
    return str(folder)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP])
def test_stop_signal_to_the_bench_alone_writes_the_report_and_cleans_up(tmp_path, photo_dir, signum):
    out = str(tmp_path / "bench")
    env = dict(os.environ, JETCAM_BENCH_CRASH="cpu/fp32:hang", PYTHONPATH=ROOT)
    cmd = [sys.executable, os.path.join(ROOT, "run.py"), "bench", "--model", "efficientnet_lite0", "--backends",
           "cpu", "--source", photo_dir, "--frames", "2", "--warmup", "0", "--out", out]
    proc = subprocess.Popen(cmd, env=env, cwd=ROOT, start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True)
    marker = os.path.join(out, "work", "cpu_fp32", "hanging")
    try:
        deadline = time.monotonic() + 240
        while not os.path.exists(marker) and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert os.path.exists(marker), proc.communicate(timeout=30)[0] if proc.poll() is not None else "never hung"
        proc.send_signal(signum)  # the bench only, not its worker: the bench must pass it on
        output = proc.communicate(timeout=120)[0]
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 130, output
    with open(os.path.join(out, "results.json")) as f:
        results = json.load(f)
    assert results["interrupted"]
    assert [r["status"] for r in results["rows"]] == ["interrupted"]
    assert signal.Signals(signum).name in results["rows"][0]["error"]
    assert os.path.exists(os.path.join(out, "report.md"))
    left = [n for n in os.listdir(os.path.join(out, "work")) if n in ("inputs.npz", "weights.pt")]
    assert left == []
