"""The live counts of lines and zones in /stats.json: at the top for one source, per source for several, and absent
(the snapshot as before) without tracking; and on the page in a real headless browser (skips where chromium or
selenium is absent, as test_web_browser)."""

import os
import threading

import numpy as np

from jetcam_app.output.live_status import LiveStatus, SourceStatus
from jetcam_app.output.overlay import HudInfo
from jetcam_app.output.sinks.web import WebSink

from test_web_browser import browser, wait_for

COUNTS = {"lines": {"door": {"in": {"person": 3}, "out": {"person": 1}, "in_total": 3, "out_total": 1}},
          "zones": {"bay": {"entries": {"car": 2}, "exits": {"car": 1}, "max_occupancy": {"car": 2},
                            "occupancy": {"car": 1}, "mean_dwell_s": 4.5, "loitering": 0}},
          "tracks": {"confirmed": 5}}


def hud():
    return HudInfo(fps=25.0, stage_ms={"infer": 30.0}, realtime_ok=True)


def serve(status):
    """A page with a moving picture: Chrome ends an MJPEG <img>'s load (and driver.get) only at a frame's end, which
    the next frame's boundary marks, so a feeder keeps writing until the sink closes."""
    web = WebSink(port=0, status=status, max_fps=0, max_clients=4, timeout_s=1.0)
    stop = threading.Event()

    def feed():
        index = 0
        while not stop.wait(0.1):
            web.write(np.full((240, 320, 3), index % 255, np.uint8), index)
            index += 1

    threading.Thread(target=feed, daemon=True).start()
    close = web.close
    web.close = lambda: (stop.set(), close())
    return web


def test_one_source_has_its_counts_at_the_top():
    status = LiveStatus(sources=[SourceStatus("cam")])
    assert "counts" not in status.snapshot()  # before the first frame
    status.publish(0, hud(), 10, 9, 10, counts=COUNTS)
    snap = status.snapshot()
    assert snap["counts"] == COUNTS and snap["processed"] == 10
    status.publish(0, hud(), 11, 10, 11)  # tracking off: the keys of today's stats.json, no "counts"
    assert "counts" not in status.snapshot()


def test_several_sources_have_theirs_in_their_sections():
    status = LiveStatus(sources=[SourceStatus("front"), SourceStatus("back")])
    status.publish(0, hud(), 10, 9, 10, counts=COUNTS)
    status.publish(1, hud(), 4, 3, 4, counts=None)
    snap = status.snapshot()
    front, back = snap["sources"]
    assert front["counts"] == COUNTS and "counts" not in back
    assert "counts" not in snap  # each source counts its own lines; nothing is summed across sources
    assert snap["processed"] == 14


def test_the_page_shows_the_counts_live():
    driver = browser()
    status = LiveStatus({"source": "test://", "model": "nanodet", "backend": "cpu", "precision": "fp32"},
                        [SourceStatus("cam")])
    web = serve(status)
    try:
        status.publish(0, hud(), 10, 9, 10)
        driver.get(web.url)
        text = lambda element_id: driver.find_element("id", element_id).text  # noqa: E731
        assert wait_for(lambda: text("frames").startswith("10"), 30)
        assert not driver.find_element("id", "counts").is_displayed()  # no tracking: no counts section
        status.publish(0, hud(), 11, 10, 11, counts=COUNTS)
        assert wait_for(lambda: "door:" in text("counts"), 30), text("counts")
        shown = text("counts")
        assert "door: in 3 / out 1" in shown and "person in 3 / out 1" in shown
        assert "bay: occupancy now 1 (max 2), entries 2" in shown and "mean dwell 4.5 s" in shown
        assert "5 tracks" in shown
        crossed = dict(COUNTS, lines={"door": dict(COUNTS["lines"]["door"], in_total=4, **{"in": {"person": 4}})})
        status.publish(0, hud(), 12, 11, 12, counts=crossed)
        assert wait_for(lambda: "door: in 4 / out 1" in text("counts"), 30), text("counts")
        if os.environ.get("JETCAM_WEB_SCREENSHOT"):
            driver.save_screenshot(os.environ["JETCAM_WEB_SCREENSHOT"])
    finally:
        driver.quit()
        web.close()


def test_the_page_shows_each_sources_counts():
    driver = browser()
    status = LiveStatus({"source": "front, back"}, [SourceStatus("front"), SourceStatus("back")])
    web = serve(status)
    try:
        loiter = dict(COUNTS, zones={"gate": dict(COUNTS["zones"]["bay"], loitering=1)})
        status.publish(0, hud(), 10, 9, 10, counts=COUNTS)
        status.publish(1, hud(), 4, 3, 4, counts=loiter)
        driver.get(web.url)
        text = lambda element_id: driver.find_element("id", element_id).text  # noqa: E731
        assert wait_for(lambda: "counts: back" in text("counts"), 30), text("counts")
        shown = text("counts")
        assert shown.index("counts: front") < shown.index("door: in 3 / out 1") < shown.index("counts: back")
        assert "gate: occupancy now 1 (max 2), entries 2, loitering 1" in shown
    finally:
        driver.quit()
        web.close()
