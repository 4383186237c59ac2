"""The page's WebRTC view (WHEP-style POST of an SDP offer to whep): a Python aiortc viewer decodes the H.264 frames
and measures how long a frame takes from the pipeline's offer to decoded; a real headless Chromium plays it (the
codec read from its own stats); three viewers share one encoder, one vanishing stops none of the others; the token
is required; without aiortc whep answers 501 and the page plays MSE. Skips with the reason without aiortc (no
release for Python 3.6), PyAV, or chromium and selenium for the browser tests."""

import asyncio
import json
import os
import threading
import time
import urllib.error
import urllib.request

import numpy as np
import pytest

av = pytest.importorskip("av")
aiortc = pytest.importorskip("aiortc", reason="WebRTC needs aiortc (pip install aiortc; none for Python 3.6)")

from jetcam_app.config import load_config  # noqa: E402
from jetcam_app.output.sinks.web import WebSink  # noqa: E402
from jetcam_app.output.video import live, webrtc  # noqa: E402
from jetcam_app.pipeline import Pipeline  # noqa: E402
from test_web_browser import _serving, browser, free_port, wait_for  # noqa: E402


def post(url, body, content_type="application/sdp"):
    """(status, text) of a POST."""
    request = urllib.request.Request(url, data=body.encode("utf-8"), method="POST",
                                     headers={"Content-Type": content_type})
    try:
        with urllib.request.urlopen(request, timeout=20) as response:
            return response.status, response.read().decode("utf-8"), response.headers["Content-Type"]
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode("utf-8", "replace"), e.headers["Content-Type"]


class Viewer:
    """A WebRTC viewer in Python (aiortc, recvonly) on an event loop of its own: (time received, pts, width, height)
    of every decoded frame in `frames`."""

    def __init__(self, url):
        self.url, self.frames, self.answer = url, [], None
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.status = self._call(self._connect(), 30)

    def _call(self, coroutine, timeout_s=10):
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout_s)

    async def _connect(self):
        self.pc = aiortc.RTCPeerConnection(aiortc.RTCConfiguration(iceServers=[]))
        self.pc.addTransceiver("video", direction="recvonly")
        self.pc.on("track", lambda track: asyncio.ensure_future(self._read(track)))
        await self.pc.setLocalDescription(await self.pc.createOffer())
        status, self.answer, content_type = await self.loop.run_in_executor(
            None, post, self.url, self.pc.localDescription.sdp)
        if status == 201:
            assert content_type == "application/sdp"
            await self.pc.setRemoteDescription(aiortc.RTCSessionDescription(sdp=self.answer, type="answer"))
        return status

    async def _read(self, track):
        while True:
            try:
                frame = await track.recv()
            except aiortc.mediastreams.MediaStreamError:
                return
            self.frames.append((time.monotonic(), frame.pts, frame.width, frame.height))

    def close(self):
        self._call(self.pc.close())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)

    def vanish(self):
        """Gone without a word (a closed laptop, a pulled cable): the loop stops, nothing answers the server."""
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


def feed(web, done):
    """320x240 frames at 30 fps into a WebSink until `done`: a moving bar, so P-frames carry something."""
    index = 0
    while not done.is_set():
        image = np.zeros((240, 320, 3), np.uint8)
        image[:, (index * 4) % 320:(index * 4) % 320 + 16] = (0, 200, 255)
        web.write(image, index)
        index += 1
        time.sleep(1 / 30.0)


@pytest.fixture
def sink():
    """A WebSink standing alone (its own encoder) with a token, fed by a thread: no model to load."""
    web = WebSink(port=free_port(), token="t0k")
    done = threading.Event()
    feeder = threading.Thread(target=feed, args=(web, done), daemon=True)
    feeder.start()
    yield web
    done.set()
    feeder.join(5)
    web.close()


def test_a_python_viewer_decodes_the_shared_encoders_h264(sink, monkeypatch):
    offered = []  # the units the WebRTC track took from the encoder, in order
    get = live.Subscription.get

    def recording_get(self, timeout_s=1.0):
        unit = get(self, timeout_s)
        if unit is not None:
            offered.append(unit)
        return unit

    monkeypatch.setattr(live.Subscription, "get", recording_get)
    viewer = Viewer(sink.url + "whep?token=t0k")
    try:
        assert viewer.status == 201, viewer.answer
        video = viewer.answer[viewer.answer.index("m=video"):]
        codecs = [line.split()[1] for line in video.splitlines() if line.startswith("a=rtpmap:")]
        assert codecs and all(c.startswith("H264/90000") for c in codecs), codecs
        assert "packetization-mode=1" in video
        assert wait_for(lambda: len(viewer.frames) >= 40, 30), len(viewer.frames)
        assert {(w, h) for _, _, w, h in viewer.frames} == {(320, 240)}
        stats = json.loads(urllib.request.urlopen(sink.url + "stats.json?token=t0k", timeout=10).read())
        assert stats["h264"]["main"]["viewers"] == 1
        # offer to decoded: a frame's pts is 90 kHz from the first unit's offer time
        first_pts, first_offer = viewer.frames[0][1], offered[0].offered_at
        latency_ms = sorted((received - (first_offer + ((pts - first_pts) % 2 ** 32) / 90000.0)) * 1000.0
                            for received, pts, _, _ in viewer.frames[5:])
        median, p95 = latency_ms[len(latency_ms) // 2], latency_ms[int(len(latency_ms) * 0.95)]
        print("\nWebRTC offer-to-decoded latency (aiortc viewer, localhost, 320x240): median %.1f ms, p95 %.1f ms, "
              "%d frames" % (median, p95, len(latency_ms)))
        assert 0 < median < 500, latency_ms
    finally:
        viewer.close()
    assert wait_for(lambda: sink._main.live.viewers == 0, 10), "a viewer that closed stayed subscribed"


def test_whep_wants_the_token_an_sdp_offer_and_its_limit(sink):
    pc = aiortc.RTCPeerConnection()  # only its offer: nothing connects
    loop = asyncio.new_event_loop()
    try:
        pc.addTransceiver("video", direction="recvonly")
        loop.run_until_complete(pc.setLocalDescription(loop.run_until_complete(pc.createOffer())))
        sdp = pc.localDescription.sdp
        assert post(sink.url + "whep", sdp)[0] == 401
        assert post(sink.url + "whep?token=wrong", sdp)[0] == 401
        assert post(sink.url + "whep?token=t0k", sdp, "text/plain")[0] == 415
        assert post(sink.url + "sources/nope/whep?token=t0k", sdp)[0] == 404
        assert post(sink.url + "whep?token=t0k", "v=0 nonsense")[0] == 400
        status, answer, _ = post(sink.url + "whep?token=t0k", sdp)
        assert status == 201 and "H264/90000" in answer

        server = webrtc.WebRtcServer(max_peers=1)
        try:
            assert "H264/90000" in server.answer(sdp, sink._main.live)
            with pytest.raises(webrtc.WebRtcError) as refused:
                server.answer(sdp, sink._main.live)
            assert refused.value.status == 503
        finally:
            server.close()
    finally:
        loop.run_until_complete(pc.close())
        loop.close()


def codec_of(driver):
    """The mimeType of the codec Chromium's inbound video RTP stream reports (its own stats)."""
    return driver.execute_async_script("""
        const done = arguments[arguments.length - 1];
        window.jetcamPc.getStats().then((stats) => {
          let mime = null;
          stats.forEach((r) => { if (r.type === "inbound-rtp" && r.kind === "video" && r.codecId) mime = stats.get(r.codecId).mimeType; });
          done(mime);
        });""")


def decoded(driver):
    return driver.execute_script("return document.getElementById('h264').getVideoPlaybackQuality().totalVideoFrames")


def test_chromium_plays_the_webrtc_view_and_three_viewers_share_one_encoder(tmp_path):
    driver = browser()
    port = free_port()
    config = load_config(None, {"source.uri": "test://320x240@15?live=1", "model.name": "mobilenet_v2",
                                "model.random_weights": True, "output.out_dir": str(tmp_path / "out"),
                                "output.headless": True, "output.http_port": port, "output.http_token": "t0k"})
    pipeline = Pipeline(config)
    runner = threading.Thread(target=pipeline.run)
    runner.start()
    viewers = []
    try:
        assert wait_for(lambda: _serving(port), 120), "the web server did not start"
        base = "http://127.0.0.1:%d/" % port
        assert post(base + "whep", "v=0\r\n")[0] == 401
        driver.get(base + "?token=t0k")  # no ?view: WebRTC first
        assert wait_for(lambda: driver.execute_script("return window.jetcamView.mode") == "webrtc", 60), \
            driver.execute_script("return window.jetcamView")
        first = wait_for(lambda: decoded(driver) > 5 and decoded(driver), 60)
        assert first, "Chromium decoded no frame"
        assert wait_for(lambda: decoded(driver) > first + 10, 60), "the WebRTC view did not advance"
        assert driver.execute_script("return document.getElementById('h264').videoWidth") == 320
        assert wait_for(lambda: codec_of(driver), 20) == "video/H264"
        assert driver.execute_script("return window.jetcamView.codec") == "H264"
        if os.environ.get("JETCAM_WEB_SCREENSHOT"):
            driver.save_screenshot(os.path.join(os.path.dirname(os.environ["JETCAM_WEB_SCREENSHOT"]) or ".",
                                                "web_webrtc.png"))

        viewers = [Viewer(base + "whep?token=t0k"), Viewer(base + "whep?token=t0k")]
        assert [v.status for v in viewers] == [201, 201]
        stats = lambda: json.loads(urllib.request.urlopen(base + "stats.json?token=t0k", timeout=10).read())  # noqa: E731
        samples = []

        def shared():
            samples.append(stats())
            return samples[-1]["h264"]["main"]["viewers"] == 3 and all(len(v.frames) > 20 for v in viewers)

        assert wait_for(shared, 30), (samples[-1]["h264"], [len(v.frames) for v in viewers])
        viewers[0].vanish()
        counts, shown = [len(v.frames) for v in viewers], decoded(driver)
        assert wait_for(lambda: len(viewers[1].frames) > counts[1] + 20 and decoded(driver) > shown + 20, 30), \
            "a viewer that vanished held the others back"
        samples.append(stats())
        assert samples[-1]["processed"] > samples[0]["processed"] + 20
        # one encoder for every viewer: never more frames encoded than the pipeline processed
        assert all(s["h264"]["main"]["frames_encoded"] <= s["processed"] + 1 for s in samples), \
            [(s["h264"]["main"]["frames_encoded"], s["processed"]) for s in samples]
        assert {w for _, _, w, _ in viewers[1].frames} == {320}
        # the vanished viewer is let go once ICE consent fails (RFC 7675: about 30 s), the others stay
        assert wait_for(lambda: stats()["h264"]["main"]["viewers"] == 2, 60), stats()["h264"]
        before = decoded(driver)
        assert wait_for(lambda: decoded(driver) > before + 10, 20)
    finally:
        for viewer in viewers[1:]:
            viewer.close()
        driver.quit()
        pipeline.request_stop("test stop")
        runner.join(60)
    assert not runner.is_alive()


def test_without_aiortc_whep_answers_501_and_the_page_plays_mse(monkeypatch):
    monkeypatch.setattr(webrtc, "aiortc_module", lambda: None)
    web = WebSink(port=free_port())
    done = threading.Event()
    feeder = threading.Thread(target=feed, args=(web, done), daemon=True)
    feeder.start()
    driver = None
    try:
        status, text, _ = post(web.url + "whep", "v=0\r\n")
        assert status == 501 and "aiortc" in text
        driver = browser()
        driver.get(web.url)  # no ?view: WebRTC first, then MSE
        assert wait_for(lambda: driver.execute_script("return window.jetcamView.mode") == "mse", 30), \
            driver.execute_script("return window.jetcamView")
        assert wait_for(lambda: decoded(driver) > 10, 30), "the MSE fallback decoded nothing"
    finally:
        if driver is not None:
            driver.quit()
        done.set()
        feeder.join(5)
        web.close()
