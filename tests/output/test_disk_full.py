"""Disk full (a file-size limit in a subprocess, no root needed): one line naming the file and the disk, exit 2,
a playable recording, logs that end at the last whole frame, a summary, no temporary files left."""
import json
import os
import resource
import subprocess
import sys

import cv2
import numpy as np
import pytest

from jetcam_app.output.diskspace import LineFile

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def run_limited(args, limit_bytes, cwd):
    def limit():
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit_bytes, limit_bytes))

    env = dict(os.environ, PYTHONPATH=ROOT)
    return subprocess.run([sys.executable, os.path.join(ROOT, "run.py")] + args, cwd=str(cwd), env=env,
                          preexec_fn=limit, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True, timeout=300)


def check_logs_whole(out):
    lines = open(str(out / "predictions.jsonl"), "rb").read().split(b"\n")
    assert lines[-1] == b""  # ends at a line end
    frames = [json.loads(line)["frame"] for line in lines[:-1]]
    timing = open(str(out / "timing.csv"), "rb").read()
    assert timing.endswith(b"\r\n")
    rows = timing.split(b"\r\n")[1:-1]
    assert [int(r.split(b",")[0]) for r in rows] == frames
    summary = json.load(open(str(out / "summary.json")))
    assert summary["frames"]["processed"] == len(frames)
    assert summary["stop_reason"].startswith("error: cannot write")
    leftovers = [n for n in os.listdir(str(out)) if n.endswith(".tmp") or n.endswith(".reserve")]
    assert leftovers == []
    return frames, summary


def test_recording_stops_with_one_line_while_the_mp4_still_plays(tmp_path):
    out = tmp_path / "run"
    noise = str(tmp_path / "noise.avi")  # frames that do not compress fill the limit in a few frames
    writer = cv2.VideoWriter(noise, cv2.VideoWriter_fourcc(*"MJPG"), 30, (320, 240))
    rng = np.random.default_rng(0)
    for _ in range(40):
        writer.write(rng.integers(0, 256, (240, 320, 3), dtype=np.uint8))
    writer.release()
    limit = 1700 * 1024
    proc = run_limited(["--source", noise, "--model", "mobilenet_v2", "--random-weights",
                        "--headless", "--out", str(out), "--record", str(tmp_path / "rec.mp4")], limit, tmp_path)
    assert proc.returncode == 2, proc.stderr[-2000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: cannot write the recording %s" % (tmp_path / "rec.mp4")), last
    assert "the disk at /" in last and "free space there" in last and "Traceback" not in proc.stderr
    frames, summary = check_logs_whole(out)
    cap = cv2.VideoCapture(str(tmp_path / "rec.mp4"))
    assert cap.isOpened()
    decoded = 0
    while cap.read()[0]:
        decoded += 1
    assert decoded >= 1 and decoded >= len(frames) - 33  # frames still queued for the encoder at the stop may be cut
    assert os.path.getsize(str(tmp_path / "rec.mp4")) < limit


def test_log_line_that_does_not_fit_is_cut_back_to_the_last_whole_line(tmp_path):
    """A line straddling the limit: the partial line is removed and the error names the file and the disk."""
    code = ("import resource, sys\n"
            "resource.setrlimit(resource.RLIMIT_FSIZE, (1000, 1000))\n"
            "from jetcam_app.output.diskspace import LineFile\n"
            "from jetcam_app.errors import OutputError\n"
            "f = LineFile(sys.argv[1], 'prediction log')\n"
            "try:\n"
            "    for i in range(100):\n"
            "        f.append(('{\"frame\":%d,\"pad\":\"' % i + 'x' * 40 + '\"}\\n').encode())\n"
            "except OutputError as e:\n"
            "    print(e)\n")
    path = tmp_path / "predictions.jsonl"
    proc = subprocess.run([sys.executable, "-c", code, str(path)], env=dict(os.environ, PYTHONPATH=ROOT),
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True, timeout=60)
    assert proc.stdout.startswith("cannot write prediction log %s (File too large): the disk at /" % path), proc
    data = open(str(path), "rb").read()
    assert 0 < len(data) <= 1000 and data.endswith(b"\n")
    assert [json.loads(line)["frame"] for line in data.splitlines()] == list(range(len(data.splitlines())))


def test_line_file_refuses_writes_after_close(tmp_path):
    f = LineFile(str(tmp_path / "a.csv"), "timing log")
    f.append(b"a\n")
    f.close()
    with pytest.raises(Exception, match="after close"):
        f.append(b"b\n")
