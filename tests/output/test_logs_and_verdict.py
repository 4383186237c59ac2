"""Timing logs, percentiles, rolling HUD numbers and the real-time verdict, on synthetic timings."""

import csv
import json

import numpy as np
import pytest

from jetcam_app.errors import OutputError
from jetcam_app.output.logs import TIMING_COLUMNS, PredictionLog, TimingLog
from jetcam_app.types import Classification, Detections, FrameTiming
from jetcam_app.verdict import RollingStats, build_summary, format_summary, percentiles, realtime_verdict, service_ms

BUDGET_30_MS = 1000.0 / 30


def timing(pre=1.0, infer=10.0, post=2.0, draw=0.5, sink=0.5, wait=0.25, latency=20.0):
    return FrameTiming(queue_wait_ms=wait, pre_ms=pre, infer_ms=infer, post_ms=post, draw_ms=draw, sink_ms=sink,
                       latency_ms=latency)


def test_percentiles_match_numpy():
    values = list(np.random.RandomState(0).exponential(10.0, 1001))
    stats = percentiles(values)
    for key, q in (("p50", 50), ("p90", 90), ("p95", 95), ("p99", 99)):
        assert stats[key] == pytest.approx(float(np.percentile(values, q)), rel=1e-12)
    assert stats["max"] == max(values)
    assert stats["mean"] == pytest.approx(float(np.mean(values)))
    assert stats["count"] == 1001


@pytest.mark.parametrize("values", [[], (), iter([])])
def test_percentiles_empty(values):
    stats = percentiles(values)
    assert stats["count"] == 0
    assert all(stats[k] is None for k in ("p50", "p90", "p95", "p99", "max", "mean"))


def test_percentiles_single_value():
    assert percentiles([7.5]) == {"p50": 7.5, "p90": 7.5, "p95": 7.5, "p99": 7.5, "max": 7.5, "mean": 7.5, "count": 1}


# (service times, wall_s, frames, expected ok, text fragment) -- 30 fps target, budget 33.3 ms
VERDICT_CASES = [
    ([20.0] * 100, 100 / 31.2, 100, True, "yes (p99 20.0 ms < 33.3 ms budget, 31.2 fps sustained)"),
    ([BUDGET_30_MS] * 100, 100 / 30.0, 100, True, "yes (p99 33.3 ms = 33.3 ms budget"),  # exactly the budget fits
    ([20.0] * 98 + [BUDGET_30_MS] * 2, 100 / 30.0, 100, True, "yes"),
    ([20.0] * 98 + [BUDGET_30_MS + 0.01] * 2, 100 / 30.0, 100, False, "2% of frames over"),
    ([48.0] * 12 + [20.0] * 88, 100 / 30.0, 100, False, "no (p99 48.0 ms > 33.3 ms budget; 12% of frames over)"),
    ([20.0] * 100, 100 / (0.95 * 30), 100, True, "yes"),  # sustained exactly 95% of the target
    ([20.0] * 100, 100 / 28.0, 100, False, "28.0 fps sustained < 28.5 fps needed"),
]


@pytest.mark.parametrize("values,wall_s,frames,ok,fragment", VERDICT_CASES)
def test_realtime_verdict(values, wall_s, frames, ok, fragment):
    verdict = realtime_verdict(values, 30.0, wall_s, frames)
    assert verdict.ok is ok
    assert fragment in verdict.text
    assert verdict.text.startswith("real-time at 30 fps: %s" % ("yes" if ok else "no"))
    assert verdict.budget_ms == pytest.approx(BUDGET_30_MS)


def test_verdict_states_both_failing_reasons():
    verdict = realtime_verdict([50.0] * 10, 30.0, 1.0, 10)
    assert not verdict.ok
    assert "p99 50.0 ms > 33.3 ms budget; 100% of frames over" in verdict.text
    assert "10.0 fps sustained < 28.5 fps needed" in verdict.text
    assert verdict.share_over_budget == 1.0


def test_verdict_without_frames_or_target():
    empty = realtime_verdict([], 30.0, 1.0, 0)
    assert not empty.ok and empty.text == "real-time at 30 fps: no (no frames were processed)"
    no_target = realtime_verdict([10.0], 0.0, 1.0, 1)
    assert not no_target.ok and "--target-fps" in no_target.text
    no_wall = realtime_verdict([10.0], 30.0, 0.0, 1)
    assert not no_wall.ok and "no wall time" in no_wall.text


def test_timing_log_rows_flushed_and_complete(tmp_path):
    path = tmp_path / "out" / "timing.csv"
    log = TimingLog(str(path))
    for i in range(5):
        log.write(i * 2, i / 30.0, timing(infer=10.0 + i), dropped_so_far=i, rss_mb=100.25, gpu_mb=None if i else 12.0)
        # flushed: a reader sees every row while the log is still open
        rows = list(csv.DictReader(open(path)))
        assert len(rows) == i + 1
    log.close()
    log.close()  # idempotent
    rows = list(csv.DictReader(open(path)))
    assert tuple(rows[0].keys()) == TIMING_COLUMNS
    assert [int(r["frame_index"]) for r in rows] == [0, 2, 4, 6, 8]
    assert float(rows[3]["infer_ms"]) == 13.0
    assert float(rows[3]["service_ms"]) == pytest.approx(1.0 + 13.0 + 2.0 + 0.5 + 0.5)
    assert rows[0]["gpu_mb"] == "12.0" and rows[1]["gpu_mb"] == ""
    assert float(rows[4]["source_ts_s"]) == pytest.approx(4 / 30.0, abs=1e-6)
    assert len(log.accumulated) == 5
    with pytest.raises(OutputError):
        log.write(10, 0.0, timing(), 0, None, None)


def test_timing_log_unwritable_folder(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(OutputError, match="--out"):
        TimingLog(str(blocker / "timing.csv"))


def test_prediction_log_is_deterministic(tmp_path):
    names = ["__background__", "person", "bicycle"]
    det = Detections(np.array([[1.234567, 2.0, 30.5, 40.25]], np.float32), np.array([0.912345], np.float32),
                     np.array([1], np.int64), names)
    cls = Classification(np.array([2, 0]), np.array([0.7, 0.2], np.float32), names)
    texts = []
    for run in range(2):
        path = tmp_path / ("p%d.jsonl" % run)
        with PredictionLog(str(path)) as log:
            log.write(0, det)
            log.write(1, Detections.empty(names))
            log.write(3, cls)
            assert len(open(path).read().splitlines()) == 3  # flushed per line
        texts.append(path.read_text())
    assert texts[0] == texts[1]
    lines = [json.loads(line) for line in texts[0].splitlines()]
    assert [line["frame"] for line in lines] == [0, 1, 3]
    assert lines[0]["boxes"] == [[1.23, 2.0, 30.5, 40.25]] and lines[0]["names"] == ["person"]
    assert lines[2]["topk"][0] == {"id": 2, "name": "bicycle", "score": 0.7}
    # compact, sorted keys; detections' numbers with fixed decimals (boxes 2, scores 4)
    assert texts[0].splitlines()[0] == ('{"boxes":[[1.23,2.00,30.50,40.25]],"frame":0,"labels":[1],"names":["person"],'
                                        '"scores":[0.9123]}')


def test_rolling_stats_fps_and_p95():
    stats = RollingStats(window_s=1.0, min_samples=5, max_samples=100)
    assert stats.fps() == 0.0 and stats.p95_ms() is None
    for i in range(100):  # 100 frames at 25 fps, 4 s
        stats.add(i * 0.04, 10.0 if i % 10 else 30.0)
    assert stats.fps() == pytest.approx(25.0)
    assert stats.fps(t_now=99 * 0.04 + 5.0) == 0.0  # a stalled stream decays to zero
    assert len(stats._samples) <= 26  # old samples are dropped: memory stays bounded
    assert stats.p95_ms() == pytest.approx(float(np.percentile([s[1] for s in stats._samples], 95)))


def test_rolling_stats_keeps_min_samples_on_slow_streams():
    stats = RollingStats(window_s=1.0, min_samples=10)
    for i in range(50):  # 2 fps: the window holds only ~2 frames
        stats.add(i * 0.5, float(i))
    assert stats.fps() == pytest.approx(2.0)
    assert len(stats._samples) == 10
    assert stats.p95_ms() == pytest.approx(float(np.percentile(range(40, 50), 95)))


def test_service_ms_sums_the_main_thread_stages():
    assert service_ms(timing(pre=1, infer=2, post=3, draw=4, sink=5, wait=100, latency=200)) == 15


def test_build_and_format_summary(tmp_path):
    log = TimingLog(str(tmp_path / "timing.csv"))
    for i in range(30):
        log.write(i, i / 30.0, timing(infer=20.0 if i < 27 else 40.0, latency=25.0 + i), 0, 100.0, None)
    log.close()
    summary = build_summary(32, 30, 2, 1.0, log.accumulated, 30.0, extra={"model": "resnet18"})
    assert summary["frames"] == {"captured": 32, "processed": 30, "dropped": 2}
    assert summary["fps"] == 30.0 and summary["budget_ms"] == pytest.approx(33.333, abs=1e-3)
    assert summary["share_over_budget"] == 0.1
    assert summary["stages_ms"]["infer_ms"]["max"] == 40.0
    assert summary["stages_ms"]["latency_ms"]["p50"] == pytest.approx(39.5)
    assert summary["model"] == "resnet18"
    assert not summary["realtime"]["ok"] and summary["verdict"].startswith("real-time at 30 fps: no (p99")
    json.dumps(summary)  # serialisable as is
    # a list of FrameTiming gives the same numbers
    same = build_summary(32, 30, 2, 1.0, [timing(infer=20.0 if i < 27 else 40.0, latency=25.0 + i) for i in range(30)],
                         30.0, extra={"model": "resnet18"})
    assert same == summary
    text = format_summary(summary)
    assert "32 captured, 30 processed, 2 dropped" in text and summary["verdict"] in text
    assert len(text.splitlines()) <= 6


def test_summary_of_an_empty_run():
    summary = build_summary(0, 0, 0, 0.0, [], 30.0)
    assert summary["fps"] is None and summary["stages_ms"]["infer_ms"]["count"] == 0
    assert "no frames were processed" in summary["verdict"]
    assert "0 processed" in format_summary(summary)


def test_rolling_p95_is_sorted_again_only_after_refresh_s():
    stats = RollingStats(window_s=1.0, min_samples=5, refresh_s=0.1)
    for i in range(50):
        stats.add(i * 0.01, 10.0)
    assert stats.p95_ms() == 10.0
    stats.add(0.55, 500.0)  # 0.06 s after the last sort: the cached figure stands
    assert stats.p95_ms() == 10.0
    for i in range(10):
        stats.add(0.6 + i * 0.001, 500.0)  # 0.109 s after the last sort: sorted again
    assert stats.p95_ms() == pytest.approx(float(np.percentile([s[1] for s in stats._samples], 95)))
    assert stats.p95_ms() > 10.0


@pytest.mark.parametrize("boxes, scores", [
    ([[40.0, 60.5, 200.125, 220.0], [-3.004, 0.0, 1919.999, 1080.0]], [0.91, 0.123456]),
    ([[1e-9, 12.345, 99.995, 7.0]], [1.0]),
    (np.zeros((0, 4)), []),
])
def test_detections_json_line_holds_json_dumps_values(boxes, scores):
    """predictions.jsonl's fast encoder: the values json.dumps writes for the same record, keys in the same order."""
    import json

    from jetcam_app.types import Detections

    det = Detections(np.asarray(boxes, np.float32).reshape(-1, 4), np.asarray(scores, np.float32),
                     np.arange(1, len(scores) + 1), ["__background__", "person", 'a "quoted" class'])
    line = det.json_line(7)
    expected = json.dumps(dict(det.to_json(), frame=7), sort_keys=True, separators=(",", ":"))
    assert json.loads(line) == json.loads(expected)
    assert list(json.loads(line)) == list(json.loads(expected))


def test_detections_json_line_names_every_label_as_name_of_does():
    """Names come from a per-class-list table: empty names and ids outside the list read "class N", as name_of."""
    from jetcam_app.types import Detections

    rng = np.random.default_rng(3)
    labels = np.array([0, 1, 2, 3, 9, -1] + rng.integers(0, 4, 94).tolist())
    det = Detections(rng.uniform(-5, 1300, (100, 4)).astype(np.float32), rng.uniform(0, 1, 100).astype(np.float32),
                     labels, ["__background__", "", "person", 'a "quoted" class'])
    record = json.loads(det.json_line(3))
    assert record["names"][:6] == ["__background__", "class 1", "person", 'a "quoted" class', "class 9", "class -1"]
    assert record == json.loads(json.dumps(dict(det.to_json(), frame=3)))


def test_detections_json_line_falls_back_for_non_finite_numbers():
    from jetcam_app.types import Detections

    det = Detections(np.array([[np.nan, 0, 1, np.inf]], np.float32), np.array([0.5], np.float32), np.array([1]), [])
    assert det.json_line(0) == json.dumps(dict(det.to_json(), frame=0), sort_keys=True, separators=(",", ":"))
