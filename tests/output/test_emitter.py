"""The emitter on its worker thread: order kept, nothing dropped, a sink's error reaches the main thread."""
import threading
import time

import numpy as np
import pytest

from jetcam_app.config import SourceConfig, load_config
from jetcam_app.inference.stages import Processed
from jetcam_app.output.emitter import FrameEmitter
from jetcam_app.output.sinks.base import Sink
from jetcam_app.sources.lanes import Doorbell, SourceLane
from jetcam_app.sources.spec import create_source
from jetcam_app.stats import StatsPoller
from jetcam_app.types import Classification, Frame, FrameTiming


class RecordingSink(Sink):
    def __init__(self, fail_at=None):
        self.indices = []
        self.fail_at = fail_at

    def write(self, image_bgr, frame_index):
        if frame_index == self.fail_at:
            raise OSError("disk full at frame %d" % frame_index)
        time.sleep(0.002)
        self.indices.append(frame_index)


class FakeAdapter:
    random_weights = False


def processed(i):
    frame = Frame(np.zeros((48, 64, 3), np.uint8), i, i / 30.0, time.perf_counter())
    result = Classification(np.array([1, 2]), np.array([0.6, 0.3], np.float32), ["a", "b", "c"])
    return Processed(frame, result, FrameTiming())


@pytest.fixture
def stats():
    poller = StatsPoller(1.0, "cpu").start()
    yield poller
    poller.stop()


def lane_for(sink, live=False):
    """One source's lane (a synthetic source, not started) whose frames go to `sink`."""
    source = create_source(SourceConfig(uri="test://64x48@30%s" % ("?live=1" if live else "")))
    return SourceLane("cam", source, Doorbell(), 8, 30.0, sink=sink)


def make(tmp_path, sink, stats, cls=FrameEmitter, live=False, **kw):
    lane = lane_for(sink, live)
    emitter = cls(load_config(), str(tmp_path), FakeAdapter(), stats, [lane], **kw)
    emitter.emit_one = lambda done: emitter.emit([(lane, done)])
    return emitter, lane


def test_threaded_emitter_keeps_order_and_every_frame(tmp_path, stats):
    sink = RecordingSink()
    emitter, _ = make(tmp_path, sink, stats, threaded=True)
    for i in range(50):
        emitter.emit_one(processed(i))
    emitter.close()
    assert sink.indices == list(range(50)) and emitter.processed == 50
    assert len(open(str(tmp_path / "timing.csv")).read().splitlines()) == 51
    assert not [t for t in threading.enumerate() if t.name == "emitter"]


class SlowOverlayEmitter(FrameEmitter):
    """Drawing takes 5 ms outside the GIL, like OpenCV drawing many boxes; records which threads drew."""

    def _draw(self, lane, done, hud):
        self.drawn_by = getattr(self, "drawn_by", set()) | {threading.current_thread().name}
        time.sleep(0.005 if done.frame.index % 3 else 0.0)  # uneven: later frames may finish drawing first
        return FrameEmitter._draw(self, lane, done, hud)


@pytest.mark.parametrize("pool", [0, 2])
def test_parallel_drawing_keeps_order_and_every_frame(tmp_path, stats, monkeypatch, pool):
    monkeypatch.setattr("jetcam_app.output.emitter.draw_threads", lambda threaded, requested, gpu_outlines: pool if threaded else 0)
    sink = RecordingSink()
    emitter, _ = make(tmp_path, sink, stats, cls=SlowOverlayEmitter, threaded=True)
    for i in range(40):
        emitter.emit_one(processed(i))
    emitter.close()
    assert sink.indices == list(range(40)) and emitter.processed == 40
    rows = open(str(tmp_path / "timing.csv")).read().splitlines()[1:]
    assert [int(r.split(",")[0]) for r in rows] == list(range(40))
    assert all(name.startswith("draw") for name in emitter.drawn_by) == bool(pool)
    assert len(emitter.drawn_by) == (pool or 1)


def test_threaded_emitter_error_reaches_the_caller_once(tmp_path, stats):
    reasons = []
    emitter, _ = make(tmp_path, RecordingSink(fail_at=3), stats, threaded=True, on_error=reasons.append)
    with pytest.raises(OSError, match="disk full at frame 3"):
        for i in range(200):
            emitter.emit_one(processed(i))
    emitter.close()  # reported already: does not raise twice
    assert reasons == ["error: disk full at frame 3"]
    assert emitter.processed == 3
    assert len(open(str(tmp_path / "timing.csv")).read().splitlines()) == 4


def test_close_raises_an_error_emit_did_not_see(tmp_path, stats):
    emitter, _ = make(tmp_path, RecordingSink(fail_at=0), stats, threaded=True)
    emitter.emit_one(processed(0))
    with pytest.raises(OSError):
        emitter.close()


@pytest.mark.parametrize("cores, expected", [(1, 0), (2, 0), (3, 0), (4, 2), (16, 2)])
def test_automatic_drawing_threads_follow_the_cores(monkeypatch, cores, expected):
    from jetcam_app.output.emitter import draw_threads

    monkeypatch.setattr("jetcam_app.output.emitter.usable_cores", lambda: cores)
    assert draw_threads(True) == expected
    assert draw_threads(True, 1) == 1 and draw_threads(False) == 0
    # outlines drawn on the GPU: labels and HUD are drawn on the emitter thread unless a count is asked for
    assert draw_threads(True, gpu_outlines=True) == 0 and draw_threads(True, 2, gpu_outlines=True) == 2


class QuitSink(RecordingSink):
    """A window whose q key was pressed after the third frame."""

    @property
    def stop_requested(self):
        return len(self.indices) >= 3


def test_drops_and_stop_requests_come_through_what_the_emitter_was_built_with(tmp_path, stats):
    drops = [0]
    sink = QuitSink()
    emitter, lane = make(tmp_path, sink, stats, live=True)
    assert lane.live and not emitter.stop_requested
    for i in range(4):
        lane.channel.dropped = drops[0] = i * 2  # what the live source's slot counts as overwritten
        emitter.emit_one(processed(i))
    emitter.close()
    assert emitter.stop_requested
    rows = open(str(tmp_path / "timing.csv")).read().splitlines()
    header = rows[0].split(",")
    assert [int(row.split(",")[header.index("dropped_so_far")]) for row in rows[1:]] == [0, 2, 4, 6]
