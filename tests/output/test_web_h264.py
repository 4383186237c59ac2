"""The page's H.264 view: fragmented MP4 over HTTP (MSE) played by a real headless Chromium (it reports the codec
and its decoded frames back), the same stream decoded by PyAV in order, two viewers sharing one encoder, and a
viewer that stops reading never holding the pipeline back."""

import json
import os
import threading
import time
import urllib.request

import pytest

av = pytest.importorskip("av")

from jetcam_app.config import load_config  # noqa: E402
from jetcam_app.pipeline import Pipeline  # noqa: E402
from test_web_browser import _serving, browser, free_port, wait_for  # noqa: E402


def start(tmp_path, port, source="test://320x240@15?live=1"):
    config = load_config(None, {"source.uri": source, "model.name": "mobilenet_v2", "model.random_weights": True,
                                "output.out_dir": str(tmp_path / "out"), "output.headless": True,
                                "output.http_port": port})
    pipeline = Pipeline(config)
    runner = threading.Thread(target=pipeline.run)
    runner.start()
    assert wait_for(lambda: _serving(port), 120), "the web server did not start"
    return pipeline, runner


def stop(pipeline, runner):
    pipeline.request_stop("test stop")
    runner.join(60)
    assert not runner.is_alive()


def read_stream(url, seconds):
    """The bytes of stream.mp4 for `seconds`."""
    data, deadline = b"", time.monotonic() + seconds
    with urllib.request.urlopen(url, timeout=10) as response:
        assert response.headers["Content-Type"] == "video/mp4"
        codec = response.headers["X-Jetcam-Codec"]
        while time.monotonic() < deadline:
            data += response.read(4096)
    return codec, data


def test_chromium_plays_the_h264_view_through_mse(tmp_path):
    driver = browser()
    port = free_port()
    pipeline, runner = start(tmp_path, port)
    try:
        driver.get("http://127.0.0.1:%d/?view=mse" % port)
        view = wait_for(lambda: driver.execute_script("return window.jetcamView.mode") == "mse", 60)
        assert view, driver.execute_script("return window.jetcamView")
        assert driver.execute_script("return window.jetcamView.codec").startswith("avc1.42")
        decoded = lambda: driver.execute_script(  # noqa: E731
            "return document.getElementById('h264').getVideoPlaybackQuality().totalVideoFrames")
        first = wait_for(lambda: decoded() > 5 and decoded(), 60)
        assert first, "Chromium decoded no frame"
        assert wait_for(lambda: decoded() > first + 10, 60), "the H.264 view did not advance"
        assert driver.execute_script("return document.getElementById('h264').videoWidth") == 320
        if os.environ.get("JETCAM_WEB_SCREENSHOT"):
            driver.save_screenshot(os.environ["JETCAM_WEB_SCREENSHOT"].replace(".png", "_mse.png"))
    finally:
        driver.quit()
        stop(pipeline, runner)


def test_two_viewers_share_one_encoder_and_a_stalled_one_holds_nothing(tmp_path):
    port = free_port()
    pipeline, runner = start(tmp_path, port)
    try:
        url = "http://127.0.0.1:%d/stream.mp4" % port
        stalled = urllib.request.urlopen(url, timeout=30)  # reads its headers, then nothing more
        results = {}
        readers = [threading.Thread(target=lambda k=k: results.__setitem__(k, read_stream(url, 4.0))) for k in (0, 1)]
        for reader in readers:
            reader.start()
        for reader in readers:
            reader.join(30)
        stats_url = "http://127.0.0.1:%d/stats.json" % port
        stats = lambda: json.loads(urllib.request.urlopen(stats_url, timeout=10).read())  # noqa: E731
        before = stats()["processed"]
        # the stalled viewer's socket is full by now: the pipeline must go on regardless (slowly, on a loaded CPU)
        after = wait_for(lambda: (lambda s: s if s["processed"] > before + 5 else None)(stats()), 20)
        stalled.close()
        assert after, "a viewer that stopped reading held the pipeline back"
        assert after["h264"]["main"]["frames_encoded"] > 20
        for codec, data in results.values():
            path = tmp_path / "view.mp4"
            path.write_bytes(data)
            frames = 0
            try:
                with av.open(str(path)) as container:
                    for frame in container.decode(video=0):
                        frames += 1
                        assert (frame.width, frame.height) == (320, 240)
            except av.error.FFmpegError:  # the last fragment is cut where the read stopped
                pass
            assert codec.startswith("avc1.") and frames >= 20, (codec, frames)
        # one encoder for all three viewers: never more frames encoded than the pipeline processed
        final = stats()
        assert final["h264"]["main"]["frames_encoded"] <= final["processed"] + 1
    finally:
        stop(pipeline, runner)

