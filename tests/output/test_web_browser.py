"""The live page in a real headless browser (Debian's chromium + chromium-driver, driven by selenium): it loads,
the video advances and the numbers change. Skips with the reason where chromium or selenium is absent.
JETCAM_WEB_SCREENSHOT=path.png saves what the browser showed (docs/screenshots/web_page.png comes from it)."""

import os
import shutil
import socket
import threading
import time

import pytest

from jetcam_app.config import load_config
from jetcam_app.pipeline import Pipeline

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")


def browser():
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (pip install selenium)")
    if not CHROMIUM or not CHROMEDRIVER:
        pytest.skip("needs chromium and chromedriver (apt-get install chromium chromium-driver)")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1100,700"):
        options.add_argument(arg)
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(condition, timeout_s=120.0):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.25)
    return condition()


def test_live_page_in_a_headless_browser(tmp_path):
    driver = browser()
    port = free_port()
    config = load_config(None, {"source.uri": "test://320x240@10?live=1", "model.name": "mobilenet_v2",
                                "model.random_weights": True, "output.out_dir": str(tmp_path / "out"),
                                "output.headless": True, "output.http_port": port, "output.http_token": "t0k"})
    pipeline = Pipeline(config)
    runner = threading.Thread(target=pipeline.run)
    runner.start()
    try:
        page = "http://127.0.0.1:%d/?token=t0k&view=mjpeg" % port  # the H.264 views: test_web_h264.py
        assert wait_for(lambda: _serving(port), 120), "the web server did not start"
        driver.get(page)
        assert driver.title == "jetcam_app live"
        text = lambda element_id: driver.find_element("id", element_id).text  # noqa: E731
        assert wait_for(lambda: text("ident") == "mobilenet_v2 | cpu | fp32")
        first = wait_for(lambda: text("frames") not in ("", "-", "0") and text("frames"))
        assert first, "no frame count on the page"
        assert wait_for(lambda: text("frames") != first), "the frame count did not change"
        assert wait_for(lambda: "fps" in text("fps") or "s/frame" in text("fps")), text("fps")
        assert "infer" in text("stages") and "RSS" in text("memory")
        assert text("verdict") in ("REAL-TIME", "NOT REAL-TIME", "real-time: measuring")
        video = driver.find_element("id", "video")
        assert wait_for(lambda: driver.execute_script("return arguments[0].naturalWidth", video) == 320)
        shot = video.screenshot_as_png
        assert wait_for(lambda: video.screenshot_as_png != shot), "the video did not advance"
        if os.environ.get("JETCAM_WEB_SCREENSHOT"):
            driver.save_screenshot(os.environ["JETCAM_WEB_SCREENSHOT"])
    finally:
        driver.quit()
        pipeline.request_stop("test stop")
        runner.join(60)
    assert not runner.is_alive()


def _serving(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False
