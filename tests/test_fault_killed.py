"""What a process killed with SIGKILL leaves behind: a run's summary is rebuilt from its logs (`run.py summary`), and
what a dead bench left in its work/ folder is removed, and said so, when the next bench starts there."""
import json
import os
import signal
import subprocess
import sys
import time

import cv2
import numpy as np
import pytest
from conftest import ROOT

from jetcam_app.cli import main


@pytest.fixture(scope="module")
def photo_dir(tmp_path_factory):
    """Two real photographs (scikit-image's), as the bench's source."""
    from skimage import data

    folder = tmp_path_factory.mktemp("photos")
    for name in ("astronaut", "coffee"):
        cv2.imwrite(str(folder / ("%s.png" % name)), cv2.cvtColor(getattr(data, name)(), cv2.COLOR_RGB2BGR))
    return str(folder)


def killed_run(out: str) -> None:
    """A real run.py on a paced test pattern, killed with SIGKILL once timing.csv holds 10 rows."""
    cmd = [sys.executable, "run.py", "--source", "test://320x240@30?live=1", "--model", "mobilenet_v2",
           "--random-weights", "--headless", "--out", out]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env=dict(os.environ, JETCAM_OFFLINE="1"))
    timing = os.path.join(out, "timing.csv")
    deadline = time.monotonic() + 180  # a hang guard, not a timing assertion
    try:
        while time.monotonic() < deadline:
            assert proc.poll() is None, "the run ended before it was killed"
            if os.path.exists(timing) and sum(1 for _ in open(timing)) > 10:
                break
            time.sleep(0.2)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    assert not os.path.exists(os.path.join(out, "summary.json"))  # what the kill took away


def test_a_killed_runs_summary_is_rebuilt_from_its_logs(tmp_path, capsys):
    out = str(tmp_path / "run")
    killed_run(out)
    assert os.path.exists(os.path.join(out, ".summary.reserve"))  # the room it kept for a summary it never wrote
    rows = [line for line in open(os.path.join(out, "timing.csv")).read().splitlines()[1:] if line.count(",") >= 13]
    assert main(["summary", out]) == 0
    summary = json.load(open(os.path.join(out, "summary.json")))
    assert summary["rebuilt"] is True and summary["stop_reason"].startswith("unknown")
    assert summary["frames"]["processed"] in (len(rows), len(rows) - 1)  # the last row may have been cut mid-line
    assert summary["target_fps"] == 30.0  # the pattern's own timestamps
    assert summary["stages_ms"]["infer_ms"]["p50"] > 0 and summary["wall_s"] > 0
    assert not os.path.exists(os.path.join(out, ".summary.reserve"))
    assert "summary rebuilt from timing.csv" in capsys.readouterr().out


def test_summary_of_a_folder_without_logs_is_one_line(tmp_path, capsys):
    assert main(["summary", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "timing.csv" in err[0] and "run folder" in err[0]


def test_what_a_dead_bench_left_is_removed_when_the_next_one_starts(tmp_path, photo_dir):
    out = tmp_path / "bench"
    (out / "work" / "cpu_fp32").mkdir(parents=True)
    np.savez(str(out / "work" / "inputs.npz"), image=np.zeros((200, 1000, 3), np.uint8))  # a dead bench's inputs
    np.save(str(out / "work" / "cpu_fp32" / "out_0.npy"), np.zeros(1000, np.float32))
    (out / "work" / "cpu_fp32" / "result.json").write_text("{}")  # a row's small result stays
    cmd = [sys.executable, "run.py", "bench", "--model", "efficientnet_lite0", "--backends", "cpu", "--source",
           photo_dir, "--frames", "2", "--warmup", "0", "--out", str(out)]
    done = subprocess.run(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True,
                          timeout=600)
    assert done.returncode == 0, done.stdout[-2000:]
    assert "removed 0.6 MB that an earlier bench left unfinished" in done.stdout
    assert "inputs.npz, out_0.npy" in done.stdout
    assert not (out / "work" / "inputs.npz").exists()  # this bench's own inputs were cleaned at its end too
    assert (out / "report.html").exists()
