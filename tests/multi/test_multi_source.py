"""Several sources in one run: order and loss per source, isolation of a failing source, reconnects, the
scheduler's fairness, and the per-source outputs (logs, summary, recordings, mosaic)."""
import csv
import gc
import json
import os
import time

import cv2
import pytest

from jetcam_app.config import SourceConfig, load_config
from jetcam_app.errors import CaptureTimeout, SourceError
from jetcam_app.pipeline import Pipeline
from jetcam_app.sources.base import Source
from jetcam_app.sources.lanes import Doorbell, Scheduler, SourceLane
from jetcam_app.sources.spec import create_source
from jetcam_app.sources.synthetic import decode_index, draw_pattern
from jetcam_app.types import Frame

from conftest import write_index_video
from index_model import IndexAdapter


def config_for(tmp_path, **overrides):
    base = {"output.out_dir": str(tmp_path / "out"), "output.headless": True, "engine.threads": 1}
    base.update(overrides)
    return load_config(overrides=base)


def run_sources(tmp_path, sources, adapter=None, **overrides):
    """(summary, {name: [(frame, decoded index), ...]} from predictions.jsonl, timing.csv rows)."""
    config = config_for(tmp_path, **overrides)
    pipeline = Pipeline(config, sources=sources, adapter=adapter or IndexAdapter())
    summary = pipeline.run()
    lines = {}
    with open(os.path.join(config.output.out_dir, "predictions.jsonl")) as f:
        for line in f:
            record = json.loads(line)
            lines.setdefault(record["source"], []).append((record["frame"], record["topk"][0]["id"]))
    with open(os.path.join(config.output.out_dir, "timing.csv")) as f:
        rows = list(csv.DictReader(f))
    return summary, lines, rows


def make_source(uri):
    return create_source(SourceConfig(uri=uri))


def test_several_sources_lossless_in_order_with_per_source_outputs(tmp_path):
    video = write_index_video(tmp_path / "clip.mp4", n_frames=25)
    sources = [("a", make_source("test://320x240@30?frames=12")), ("b", make_source("test://320x240@15?frames=31")),
               ("clip", make_source(video))]
    summary, lines, rows = run_sources(tmp_path, sources, **{"pipeline.max_batch": 2})
    expected = {"a": 12, "b": 31, "clip": 25}
    for name, n in expected.items():
        assert lines[name] == [(i, i) for i in range(n)], name  # every frame once, in order, with its own result
        section = summary["sources"][name]
        assert section["frames"] == {"captured": n, "processed": n, "dropped": 0}
        assert section["end_reason"] == "end of stream" and section["error"] is None
        assert section["stages_ms"]["latency_ms"]["count"] == n and "verdict" in section
    assert summary["sources"]["b"]["target_fps"] == 15.0
    assert summary["frames"]["processed"] == sum(expected.values())
    assert summary["stop_reason"] == "every source ended"
    assert list(rows[0].keys())[-1] == "source"
    assert {name: sum(1 for r in rows if r["source"] == name) for name in expected} == expected
    with open(os.path.join(str(tmp_path / "out"), "summary.json")) as f:
        assert set(json.load(f)["sources"]) == set(expected)


class FailingSource(Source):
    """A file-like source that raises after `fail_at` frames (a decoder error mid-run)."""

    def __init__(self, fail_at):
        super().__init__()
        self.fail_at, self.index = fail_at, 0
        self.nominal_fps, self.frame_size = 30.0, (320, 240)

    def open(self):
        pass

    def read(self, timeout_s=1.0):
        if self.index == self.fail_at:
            raise SourceError("decoder gave up on frame %d" % self.index)
        frame = Frame(draw_pattern(self.index, 320, 240), self.index, self.index / 30.0, time.perf_counter())
        self.index += 1
        return frame


def test_a_source_that_raises_leaves_the_others_whole(tmp_path):
    sources = [("ok1", make_source("test://320x240@30?frames=40")), ("bad", FailingSource(fail_at=6)),
               ("ok2", make_source("test://320x240@30?frames=33"))]
    summary, lines, _ = run_sources(tmp_path, sources)
    assert lines["ok1"] == [(i, i) for i in range(40)] and lines["ok2"] == [(i, i) for i in range(33)]
    assert lines["bad"] == [(i, i) for i in range(6)]  # lossless up to the failure
    bad = summary["sources"]["bad"]
    assert "decoder gave up on frame 6" in bad["error"] and bad["end_reason"].startswith("failed")
    assert summary["sources"]["ok1"]["error"] is None


class FlakyCamera(Source):
    """A live camera that disconnects after `cut` frames, reconnects (the read raises CaptureTimeout meanwhile,
    as GStreamerSource does) and carries on with continuous indices, then gives up at `total` frames."""

    is_live = True

    def __init__(self, cut, total, outage_reads=3):
        super().__init__()
        self.cut, self.total, self.outage = cut, total, outage_reads
        self.index = 0
        self.nominal_fps, self.frame_size = 30.0, (320, 240)

    def open(self):
        pass

    def read(self, timeout_s=1.0):
        if self.index == self.cut and self.outage:
            self.outage -= 1
            if self.outage == 0:
                self.reconnects += 1
            time.sleep(0.01)
            raise CaptureTimeout("camera: reconnecting (attempt 1/3)")
        if self.index >= self.total:
            return None
        time.sleep(0.005)
        frame = Frame(draw_pattern(self.index, 320, 240), self.index, self.index / 30.0, time.perf_counter())
        self.index += 1
        return frame


def test_live_source_reconnects_while_a_file_runs_lossless(tmp_path):
    video = write_index_video(tmp_path / "clip.mp4", n_frames=40)
    camera = FlakyCamera(cut=8, total=20)
    summary, lines, _ = run_sources(tmp_path, [("cam", camera), ("clip", make_source(video))])
    assert lines["clip"] == [(i, i) for i in range(40)]
    got = lines["cam"]
    assert all(frame == index for frame, index in got)  # each result belongs to its frame
    assert [f for f, _ in got] == sorted(set(f for f, _ in got))  # in order, never repeated
    cam = summary["sources"]["cam"]
    assert cam["reconnects"] == 1 and cam["live"] is True
    assert cam["frames"]["captured"] == 20
    assert cam["frames"]["processed"] + cam["frames"]["dropped"] == 20  # every frame processed or counted dropped


def test_max_frames_counts_per_source(tmp_path):
    sources = [("a", make_source("test://320x240@30")), ("b", make_source("test://320x240@30?frames=4"))]
    summary, lines, _ = run_sources(tmp_path, sources, **{"pipeline.max_frames": 9})
    assert lines["a"] == [(i, i) for i in range(9)] and lines["b"] == [(i, i) for i in range(4)]
    assert summary["sources"]["a"]["end_reason"] == "--max-frames 9 reached"


class HeapWatchingAdapter(IndexAdapter):
    """The index model, noting how many objects the garbage collector holds frozen as each frame is decoded."""

    def __init__(self):
        super().__init__()
        self.frozen = []

    def postprocess(self, outputs, image_hw):
        self.frozen.append(gc.get_freeze_count())  # novermin: guarded
        return super().postprocess(outputs, image_hw)


@pytest.mark.skipif(not hasattr(gc, "freeze"), reason="Python 3.6 has no gc.freeze(): the heap is not frozen there")
def test_the_heap_alive_before_the_run_is_frozen_during_it_and_thawed_after(tmp_path):
    sources = [("a", make_source("test://320x240@30?frames=5")), ("b", make_source("test://320x240@30?frames=3"))]
    adapter = HeapWatchingAdapter()
    config = config_for(tmp_path, **{"pipeline.max_batch": 2})
    Pipeline(config, sources=sources, adapter=adapter).run()
    per_frame = adapter.frozen[-8:]  # the calls before them are the warm-up, before the run
    assert len(per_frame) == 8 and min(per_frame) > 10000  # torch alone is tens of thousands of objects
    assert gc.get_freeze_count() == 0  # novermin: guarded


def test_a_source_that_does_not_open_is_left_out(tmp_path):
    sources = [("gone", make_source(str(tmp_path / "missing.mp4"))), ("a", make_source("test://320x240@30?frames=5"))]
    summary, lines, _ = run_sources(tmp_path, sources)
    assert lines["a"] == [(i, i) for i in range(5)] and "gone" not in lines
    assert summary["sources"]["gone"]["opened"] is False and "not found" in summary["sources"]["gone"]["error"]
    with pytest.raises(SourceError, match="not found"):
        run_sources(tmp_path, [("gone", make_source(str(tmp_path / "missing.mp4")))])


def test_scheduler_is_round_robin_with_one_frame_per_source_a_round():
    bell = Doorbell()
    lanes = [SourceLane(name, make_source("test://320x240@30?frames=6"), bell, queue_size=6, target_fps=30.0)
             for name in "abc"]
    for lane in lanes:
        lane.source.open()
        lane.capture.start()
    try:
        deadline = time.time() + 60
        while any(lane.captured() < 6 for lane in lanes) and time.time() < deadline:
            time.sleep(0.01)
        scheduler = Scheduler(lanes, bell, max_batch=2)
        rounds = []
        while not scheduler.finished:
            batch = scheduler.gather(0.5)
            if batch:
                rounds.append(["%s%d" % (lane.name, decode_index(frame.image)) for lane, frame in batch])
    finally:
        for lane in lanes:
            lane.stop.set()
            lane.capture.join(5)
    assert rounds[:4] == [["a0", "b0"], ["c0", "a1"], ["b1", "c1"], ["a2", "b2"]]
    assert sum(len(r) for r in rounds) == 18


def test_record_writes_one_file_per_source_or_a_mosaic(tmp_path):
    sources = [("left", make_source("test://320x240@30?frames=6")),
               ("right", make_source("test://640x360@30?frames=4"))]
    run_sources(tmp_path, sources, **{"output.record": str(tmp_path / "rec.mp4")})
    for name, n, size in (("left", 6, (320, 240)), ("right", 4, (640, 360))):
        video = cv2.VideoCapture(str(tmp_path / ("rec_%s.mp4" % name)))
        assert int(video.get(cv2.CAP_PROP_FRAME_COUNT)) == n
        assert (int(video.get(cv2.CAP_PROP_FRAME_WIDTH)), int(video.get(cv2.CAP_PROP_FRAME_HEIGHT))) == size
        video.release()
    assert not (tmp_path / "rec.mp4").exists()
    sources = [("left", make_source("test://320x240@30?frames=6")),
               ("right", make_source("test://320x240@30?frames=4"))]
    run_sources(tmp_path, sources, **{"output.record": str(tmp_path / "mosaic.mp4"), "output.mosaic": True})
    video = cv2.VideoCapture(str(tmp_path / "mosaic.mp4"))
    ok, image = video.read()
    video.release()
    assert ok and image.shape == (360, 1280, 3)  # two 640x360 tiles side by side
    assert not (tmp_path / "mosaic_left.mp4").exists()


def test_page_locked_buffers_for_every_frame_the_sources_can_hold_are_reserved_before_the_clock(tmp_path):
    """A lossless file holds its queue's frames, a live source its one slot; both one being decoded, one per batch
    in flight, the emitter queue's and one being emitted. Another frame size gets buffers of its own."""
    import numpy as np

    from jetcam_app.inference.host_buffers import HostFramePool
    from jetcam_app.output.emitter import QUEUED_BATCHES
    from jetcam_app.pipeline import reserve_buffers

    class Stages:
        in_flight = 2
        host_buffers = HostFramePool(lambda shape: np.zeros(shape, np.uint8), lambda a: a.view(), 10 ** 9)

    video = write_index_video(str(tmp_path / "a.mp4"), n_frames=5, size=(320, 240))
    sources = [make_source(video), make_source("test://256x144@30?live=1"), make_source(video)]
    for source in sources:
        source.open()
        source.buffers = Stages.host_buffers
    reserve_buffers(Stages, sources, queue_size=8)
    lossless, live = 8 + 1 + 2 + QUEUED_BATCHES + 1, 1 + 1 + 2 + QUEUED_BATCHES + 1
    assert Stages.host_buffers.reserve((240, 320, 3), 0) == 2 * lossless
    assert Stages.host_buffers.reserve((144, 256, 3), 0) == live
    assert Stages.host_buffers.buffers == 2 * lossless + live
    for source in sources:
        source.close()


def test_several_video_files_share_the_cores_between_their_decoders_unless_set():
    from jetcam_app.pipeline import SEVERAL_DECODE_THREADS, several_decoders

    one = [SourceConfig(uri="a.mp4")]
    assert several_decoders(one)[0].decode_threads == 0  # one source: OpenCV's choice, as before
    chosen = several_decoders([SourceConfig(uri="a.mp4"), SourceConfig(uri="b.mp4", decode_threads=5)], cores=2)
    assert [c.decode_threads for c in chosen] == [SEVERAL_DECODE_THREADS, 5]
    assert [c.uri for c in chosen] == ["a.mp4", "b.mp4"]
    # their share of the cores where there are many: 16 cores, 2 files 8 threads each, 4 files 4, 32 files 2
    for n, threads in ((2, 8), (4, 4), (8, 2), (32, SEVERAL_DECODE_THREADS)):
        assert {c.decode_threads for c in several_decoders([SourceConfig(uri="a.mp4")] * n, cores=16)} == {threads}
    assert several_decoders([SourceConfig(uri="a.mp4")] * 2, cores=128)[0].decode_threads == 16
    config = load_config(overrides={"sources": ["a.mp4", {"uri": "b.mp4", "decode_threads": 5}]})
    share = several_decoders([SourceConfig(uri="a.mp4")] * 2)[0].decode_threads
    assert [c.decode_threads for c in Pipeline(config).config.sources] == [share, 5]


def test_timing_rows_of_several_sources_carry_their_time_since_the_clock_started(tmp_path):
    sources = [("a", make_source("test://320x240@30?frames=9")), ("b", make_source("test://320x240@30?frames=7"))]
    summary, _, rows = run_sources(tmp_path, sources)
    assert [r["source"] for r in rows].count("a") == 9 and all(r["t_s"] for r in rows)
    times = [float(r["t_s"]) for r in rows]
    # the emitter thread may write its last rows after the clock stopped (wall_s, rounded): seconds, not more
    assert times == sorted(times) and 0.0 < times[0] < times[-1] < summary["wall_s"] + 5.0
    assert summary["started_unix"] > 0
