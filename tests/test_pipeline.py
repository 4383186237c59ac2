"""Shutdown on every path: an engine that fails, a source that stalls, SIGINT and SIGTERM in a real process."""
import csv
import gc
import json
import os
import signal
import subprocess
import sys
import threading
import time

import cv2
import pytest

from jetcam_app.config import load_config
from jetcam_app.errors import CaptureTimeout
from jetcam_app.inference.engines.torch_engine import TorchCpuEngine
from jetcam_app.pipeline import Pipeline
from jetcam_app.sources.spec import SourceSpec
from jetcam_app.sources.synthetic import SyntheticSource

from conftest import ROOT, write_index_video

MODEL = {"model.name": "mobilenet_v2", "model.random_weights": True}


def count_video_frames(path):
    cap = cv2.VideoCapture(path)
    n = 0
    while cap.read()[0]:
        n += 1
    cap.release()
    return n


def rows(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def outputs_agree(out_dir, processed, recording=None):
    assert len(rows(os.path.join(out_dir, "timing.csv"))) == processed
    with open(os.path.join(out_dir, "predictions.jsonl")) as f:
        assert len(f.read().splitlines()) == processed
    with open(os.path.join(out_dir, "summary.json")) as f:
        summary = json.load(f)
    assert summary["frames"]["processed"] == processed
    if recording:
        assert count_video_frames(recording) == processed


def config_for(tmp_path, **extra):
    overrides = dict(MODEL, **{"output.out_dir": str(tmp_path / "out"), "output.headless": True,
                               "output.record": str(tmp_path / "rec.mp4")})
    overrides.update(extra)
    return load_config(None, overrides)


class FailingEngine(TorchCpuEngine):
    """A real CPU engine that raises on its fifth frame."""

    def __init__(self, config):
        super().__init__(config)
        self.calls = 0

    def infer(self, batch):
        self.calls += 1
        if self.calls == 5:
            raise RuntimeError("engine failed on frame 5")
        return super().infer(batch)


class StallingSource(SyntheticSource):
    """Three frames, then a camera that stops delivering: every read times out."""

    def read(self, timeout_s=1.0):
        if self._index >= 3:
            time.sleep(timeout_s)
            raise CaptureTimeout("no frame")
        return super().read(timeout_s)


class HeapWatchingEngine(TorchCpuEngine):
    """A real CPU engine that notes how many objects the garbage collector holds frozen at each call."""

    def __init__(self, config):
        super().__init__(config)
        self.frozen = []

    def infer(self, batch):
        self.frozen.append(gc.get_freeze_count())  # novermin: guarded
        return super().infer(batch)


def other_threads(before):
    return [t for t in threading.enumerate() if t not in before and t.is_alive()]


def test_engine_error_is_reraised_after_cleanup(tmp_path):
    before = set(threading.enumerate())
    config = config_for(tmp_path, **{"source.uri": write_index_video(tmp_path / "in.mp4", n_frames=20)})
    pipeline = Pipeline(config, engine=FailingEngine(config.engine))
    with pytest.raises(RuntimeError, match="frame 5"):
        pipeline.run()
    assert other_threads(before) == []
    assert getattr(gc, "get_freeze_count", lambda: 0)() == 0  # the heap frozen for the run is thawed on the error path too
    outputs_agree(str(tmp_path / "out"), 4, str(tmp_path / "rec.mp4"))
    assert pipeline.summary["stop_reason"].startswith("error: engine failed on frame 5")


@pytest.mark.skipif(not hasattr(gc, "freeze"), reason="Python 3.6 has no gc.freeze(): the heap is not frozen there")
def test_the_heap_alive_before_the_run_is_frozen_during_it_and_thawed_after(tmp_path):
    """torch and the model stay out of the collector's full collections while frames run (each would stop every
    thread for tens of ms); afterwards the collector sees everything again."""
    config = config_for(tmp_path, **{"source.uri": write_index_video(tmp_path / "in.mp4", n_frames=6)})
    engine = HeapWatchingEngine(config.engine)
    Pipeline(config, engine=engine).run()
    per_frame = engine.frozen[-6:]  # the calls before them are the engine's warm-up, before the run
    assert len(per_frame) == 6 and min(per_frame) > 10000  # torch alone is tens of thousands of objects
    assert gc.get_freeze_count() == 0  # novermin: guarded


def test_stalled_source_stops_on_request(tmp_path):
    before = set(threading.enumerate())
    config = config_for(tmp_path, **{"source.uri": "test://320x240@30"})
    source = StallingSource(SourceSpec("test", "", {"width": "320", "height": "240"}), config.source)
    pipeline = Pipeline(config, source=source)
    timing_csv = tmp_path / "out" / "timing.csv"

    def stop_once_three_rows_are_logged():
        deadline = time.time() + 120
        while time.time() < deadline and not (timing_csv.exists() and len(rows(str(timing_csv))) >= 3):
            time.sleep(0.1)
        time.sleep(1.0)  # the source is stalled now: nothing more may arrive
        pipeline.request_stop("test stop")

    stopper = threading.Thread(target=stop_once_three_rows_are_logged)
    stopper.start()
    summary = pipeline.run()
    stopper.join()
    assert summary["stop_reason"] == "test stop"
    assert other_threads(before) == []
    outputs_agree(str(tmp_path / "out"), 3, str(tmp_path / "rec.mp4"))


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
def test_signal_stops_cleanly(tmp_path, signum):
    out = tmp_path / "out"
    cmd = [sys.executable, os.path.join(ROOT, "run.py"), "--source", "test://320x240@30?live=1", "--model",
           "mobilenet_v2", "--random-weights", "--headless", "--out", str(out), "--record", str(tmp_path / "rec.mp4")]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.time() + 120
        while time.time() < deadline:
            if (out / "timing.csv").exists() and len(rows(str(out / "timing.csv"))) >= 5:
                break
            assert proc.poll() is None, proc.stdout.read().decode()
            time.sleep(0.2)
        proc.send_signal(signum)
        output = proc.communicate(timeout=60)[0].decode()
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, output
    summary = json.load(open(str(out / "summary.json")))
    assert summary["stop_reason"] == signal.Signals(signum).name
    outputs_agree(str(out), summary["frames"]["processed"], str(tmp_path / "rec.mp4"))


def test_http_stream_serves_annotated_frames(tmp_path):
    import socket
    import urllib.request

    import numpy as np

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = config_for(tmp_path, **{"source.uri": "test://320x240@30?live=1", "output.http_port": port,
                                     "output.record": None})
    pipeline = Pipeline(config)
    runner = threading.Thread(target=pipeline.run)
    runner.start()
    image = None
    try:
        deadline = time.time() + 120
        while image is None and time.time() < deadline and runner.is_alive():
            try:
                with urllib.request.urlopen("http://127.0.0.1:%d/snapshot.jpg" % port, timeout=5) as response:
                    data = np.frombuffer(response.read(), np.uint8)
                image = cv2.imdecode(data, cv2.IMREAD_COLOR)
            except OSError:
                time.sleep(0.3)
    finally:
        pipeline.request_stop("test stop")
        runner.join(60)
    assert not runner.is_alive()
    assert image is not None and image.shape == (240, 320, 3)


def test_each_timing_row_says_when_it_was_written_and_the_summary_when_the_clock_started(tmp_path):
    """t_s counts from the clock's start, in order, within the run's wall time; started_unix lines runs up."""
    before = time.time()
    summary = Pipeline(config_for(tmp_path, **{"source.uri": "test://320x240@30?frames=12",
                                               "output.record": None})).run()
    times = [float(r["t_s"]) for r in rows(str(tmp_path / "out" / "timing.csv"))]
    assert len(times) == 12 and times == sorted(times)
    assert 0.0 < times[0] < times[-1] < summary["wall_s"] + 5.0  # the last rows may follow the clock's stop
    assert before <= summary["started_unix"] <= before + summary["wall_s"] + 60.0
