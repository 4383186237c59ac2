"""The live page of a multi-source run: each source's figures and the aggregate in /stats.json (real HTTP against a
real run), each source's own stream and snapshot, the rows in a real headless browser, and the aggregate's rules.
JETCAM_WEB_MULTI_SCREENSHOT=path.png saves what the browser showed (docs/screenshots/web-multi.png comes from it)."""

import io
import json
import logging
import os
import threading
import time
import urllib.error
import urllib.request

import cv2
import numpy as np
import pytest

from jetcam_app.config import load_config
from jetcam_app.output.live_status import LiveStatus, SourceStatus
from jetcam_app.output.overlay import HudInfo
from jetcam_app.output.progress import ProgressReporter, describe
from jetcam_app.pipeline import Pipeline

from test_web_browser import _serving, browser, free_port, wait_for

SOURCES = [{"uri": "test://320x240@20?live=1", "name": "front"}, {"uri": "test://256x144@10?live=1", "name": "back"}]


def get(url, timeout=10):
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return response.status, response.headers["Content-Type"], response.read()


def stats(port):
    return json.loads(get("http://127.0.0.1:%d/stats.json?token=t0k" % port)[2])


@pytest.fixture(scope="module")
def live_run(tmp_path_factory):
    """One multi-source run with the page on a free port, shared by this module's tests, stopped at the end."""
    port = free_port()
    config = load_config(None, {"sources": SOURCES, "model.name": "mobilenet_v2", "model.random_weights": True,
                                "engine.threads": 1, "output.out_dir": str(tmp_path_factory.mktemp("out")),
                                "output.headless": True, "output.http_port": port, "output.http_token": "t0k"})
    pipeline = Pipeline(config)
    runner = threading.Thread(target=pipeline.run)
    runner.start()
    try:
        assert wait_for(lambda: _serving(port), 120), "the web server did not start"
        assert wait_for(lambda: all(s["processed"] > 0 and s["fps"] for s in stats(port)["sources"]), 120), stats(port)
        yield port, pipeline
    finally:
        pipeline.request_stop("test stop")
        runner.join(60)
    assert not runner.is_alive()
    assert set(pipeline.summary["sources"]) == {"front", "back"}


def test_stats_json_has_each_source_and_the_aggregate(live_run):
    port, _ = live_run
    snapshot = stats(port)
    assert snapshot["source"] == "front, back" and snapshot["model"] == "mobilenet_v2"
    sections = snapshot["sources"]
    assert [s["name"] for s in sections] == ["front", "back"]
    for section, target_fps in zip(sections, (20, 10)):
        assert section["processed"] > 0 and section["captured"] >= section["processed"]
        assert section["fps"] is not None and 0 <= section["fps"] < 1000  # 0 when its last second saw one frame
        assert section["budget_ms"] == pytest.approx(1000.0 / target_fps)
        assert section["state"] == "running" and section["reconnects"] == 0 and section["dropped"] >= 0
        assert section["realtime"] in (True, False, None) and "infer" in section["stage_ms"]
        assert "rss_mb" not in section  # process-wide figures are the aggregate's only
    # the aggregate: counts summed (each section read in the same snapshot), verdict every source's
    for key in ("processed", "captured", "dropped"):
        assert snapshot[key] == sum(s[key] for s in sections)
    assert snapshot["fps"] == pytest.approx(sum(s["fps"] for s in sections), abs=0.01)
    assert snapshot["realtime_sources"] == sum(1 for s in sections if s["realtime"])
    assert snapshot["rss_mb"] > 0
    later = stats(port)
    assert all(b["processed"] >= a["processed"] for a, b in zip(sections, later["sources"]))
    assert wait_for(lambda: stats(port)["processed"] > snapshot["processed"], 60), "the counts did not advance"


def test_each_source_has_its_own_stream_and_snapshot(live_run):
    port, _ = live_run
    base = "http://127.0.0.1:%d/" % port
    for name, size in (("front", (240, 320)), ("back", (144, 256))):
        _, kind, body = get(base + "sources/%s/snapshot.jpg?token=t0k" % name)
        assert kind == "image/jpeg"
        assert cv2.imdecode(np.frombuffer(body, np.uint8), cv2.IMREAD_COLOR).shape[:2] == size
    with urllib.request.urlopen(base + "sources/back/stream.mjpg?token=t0k", timeout=10) as response:
        assert response.headers["Content-Type"].startswith("multipart/x-mixed-replace")
        assert response.readline().startswith(b"--")
        assert stats(port)["viewers"] >= 1
    mosaic = get(base + "snapshot.jpg?token=t0k")[2]
    assert cv2.imdecode(np.frombuffer(mosaic, np.uint8), cv2.IMREAD_COLOR).shape[1] > 320  # the grid of both
    for path in ("sources/nobody/snapshot.jpg", "sources/front/other"):
        with pytest.raises(urllib.error.HTTPError) as e:
            get(base + path + "?token=t0k")
        assert e.value.code == 404
    with pytest.raises(urllib.error.HTTPError) as e:
        get(base + "sources/front/snapshot.jpg")
    assert e.value.code == 401


def test_page_shows_a_row_per_source_in_a_headless_browser(live_run):
    port, _ = live_run
    driver = browser()
    try:
        driver.set_window_size(1100, 760)
        driver.get("http://127.0.0.1:%d/?token=t0k&view=mjpeg" % port)  # the H.264 view: test_web_h264.py
        rows = lambda: driver.find_elements("css selector", "#source-rows tr")  # noqa: E731
        assert wait_for(lambda: len(rows()) == 2), "no per-source rows"
        assert driver.find_element("id", "sources").is_displayed()
        cells = lambda i: [td.text for td in rows()[i].find_elements("tag name", "td")]  # noqa: E731
        assert [cells(i)[0] for i in range(2)] == ["front", "back"]
        for i in range(2):
            assert wait_for(lambda: cells(i)[3].endswith("fps")), cells(i)
            assert int(cells(i)[2].split()[0]) > 0 and "captured" in cells(i)[2]
            assert cells(i)[1] in ("REAL-TIME", "NOT REAL-TIME", "measuring")
            assert cells(i)[4].endswith(" ms") and cells(i)[7] == "running"
            assert "stream.mjpg" in cells(i)[8]
        first = cells(0)[2]
        assert wait_for(lambda: cells(0)[2] != first), "a source's frame count did not change"
        text = lambda element_id: driver.find_element("id", element_id).text  # noqa: E731
        assert "in all" in text("frames") and "in all" in text("fps")
        assert "sources real-time" in text("verdict")
        video = driver.find_element("id", "video")
        assert wait_for(lambda: driver.execute_script("return arguments[0].naturalWidth", video) > 320)  # mosaic
        rows()[1].find_element("link text", "watch").click()
        assert wait_for(lambda: driver.execute_script("return arguments[0].naturalWidth", video) == 256)
        assert wait_for(lambda: rows()[1].get_attribute("class") == "watched")
        if os.environ.get("JETCAM_WEB_MULTI_SCREENSHOT"):
            driver.find_element("id", "show-mosaic").click()
            wait_for(lambda: driver.execute_script("return arguments[0].naturalWidth", video) > 320)
            time.sleep(1.0)
            driver.save_screenshot(os.environ["JETCAM_WEB_MULTI_SCREENSHOT"])
    finally:
        driver.quit()


def hud(fps, realtime_ok, p95_ms, budget_ms, dropped=0):
    return HudInfo(fps=fps, stage_ms={"infer": 5.0}, realtime_ok=realtime_ok, p95_ms=p95_ms, budget_ms=budget_ms,
                   dropped=dropped, rss_mb=100.0)


def test_aggregate_verdict_is_every_sources_and_progress_reads_it(caplog):
    status = LiveStatus({"source": "a, b"}, [SourceStatus("a", total_frames=50),
                                             SourceStatus("b", lambda: 3, total_frames=30)])
    empty = status.snapshot()
    assert empty["processed"] == 0 and empty["realtime"] is None and empty["total_frames"] == 80
    assert [s["name"] for s in empty["sources"]] == ["a", "b"] and empty["sources"][1]["reconnects"] == 3
    assert describe(empty) == "- fps in all, 0 dropped, 0/2 sources real-time, measuring"
    status.publish(0, hud(30.0, True, 20.0, 33.3), 10, 9, 10)
    assert status.snapshot()["realtime"] is None  # b is still measuring
    status.publish(1, hud(10.0, True, 90.0, 100.0, dropped=2), 5, 4, 7)
    snapshot = status.snapshot()
    assert (snapshot["realtime"], snapshot["realtime_sources"], snapshot["worst_source"]) == (True, 2, "b")
    assert (snapshot["processed"], snapshot["captured"], snapshot["dropped"], snapshot["fps"]) == (15, 17, 2, 40.0)
    assert (snapshot["p95_ms"], snapshot["budget_ms"]) == (90.0, 100.0)
    status.publish(0, hud(20.0, False, 50.0, 33.3), 11, 10, 11)
    status.note(1, "ended")
    snapshot = status.snapshot()
    assert (snapshot["realtime"], snapshot["realtime_sources"], snapshot["worst_source"]) == (False, 1, "a")
    assert snapshot["sources"][1]["state"] == "ended" and snapshot["sources"][1]["processed"] == 5
    with caplog.at_level(logging.INFO, logger="jetcam_app.progress"):
        reporter = ProgressReporter(status, stream=io.StringIO(), tty=False, log_every_s=0.05).start()
        assert wait_for(lambda: "frame 16/80" in caplog.text, 10)
        reporter.close()
    assert "frame 16/80, 30.0 fps in all, 2 dropped, 1/2 sources real-time so far" in caplog.text
