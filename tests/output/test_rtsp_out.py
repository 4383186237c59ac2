"""RTSP out and push with the real app on loopback: FFmpeg's RTSP client (PyAV) decodes /live; two clients share
one encoder, and one killed mid-stream (kill -9, no TEARDOWN) leaves the other playing; several sources get a
mount each; --rtsp-push reaches a RECORD server (gst-rtsp-server) started after the run, whose H.264 decodes; a
port in use is a one-line error, exit 2. Also printed, not asserted: the offer-to-client latency."""

import socket
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

av = pytest.importorskip("av")

from jetcam_app.config import load_config  # noqa: E402
from jetcam_app.errors import OutputError  # noqa: E402
from jetcam_app.output import wiring  # noqa: E402
from jetcam_app.pipeline import Pipeline  # noqa: E402
from test_web_browser import _serving, free_port, wait_for  # noqa: E402

try:
    from jetcam_app.output.video.rtsp_out import load_gst

    GLib, Gst, GstRtspServer = load_gst(("appsrc", "h264parse", "rtph264pay", "rtph264depay", "rtspclientsink"))
except OutputError as e:
    pytestmark = pytest.mark.skip(reason=str(e))

SOURCE = "test://320x240@15?live=1"
# FFmpeg probes a live stream for 5 s by default, and the app runs a few frames a second on a small CI machine
CLIENT = {"rtsp_transport": "tcp", "analyzeduration": "500000"}
# a client that only decodes and says how far it got: killed -9 by the test, so it vanishes without a TEARDOWN
KILLED_CLIENT = ("import av, sys\n"
                 "options = {'rtsp_transport': 'tcp', 'analyzeduration': '500000'}\n"
                 "with av.open(sys.argv[1], options=options, timeout=20) as c:\n"
                 "    for n, f in enumerate(c.decode(video=0)):\n"
                 "        print(n + 1, flush=True)\n")


def start(tmp_path, monkeypatch, **output):
    """The app running in a thread, and the LiveVideo it built (its encoders and RTSP outputs)."""
    built = []
    real = wiring.live_video
    monkeypatch.setattr(wiring, "live_video", lambda *a: built.append(real(*a)) or built[-1])
    overrides = {"source.uri": SOURCE, "model.name": "mobilenet_v2", "model.random_weights": True,
                 "output.out_dir": str(tmp_path / "out"), "output.headless": True}
    overrides.update(("output." + key, value) for key, value in output.items() if key != "sources")
    if "sources" in output:
        overrides["sources"] = output["sources"]
    pipeline = Pipeline(load_config(None, overrides))
    runner = threading.Thread(target=pipeline.run)
    runner.start()
    port = output.get("rtsp_out")
    ready = lambda: built and (not port or _serving(port))  # noqa: E731
    assert wait_for(ready, 120), "the run did not start its RTSP outputs"
    return pipeline, runner, built[0]


def stop(pipeline, runner):
    pipeline.request_stop("test stop")
    runner.join(60)
    assert not runner.is_alive()


def decode(url, frames, seen=None, until=None, timeout_s=30.0):
    """(frames decoded, their sizes, seconds to the first): `frames` of them, or as many as come before `until`
    (an Event) is set; `seen` (a list) grows as they come."""
    seen = [] if seen is None else seen
    started, first = time.monotonic(), None
    with av.open(url, options=CLIENT, timeout=timeout_s) as container:
        for frame in container.decode(video=0):
            first = time.monotonic() - started if first is None else first
            seen.append((frame.width, frame.height))
            if len(seen) >= frames or (until is not None and until.is_set()):
                break
    return len(seen), set(seen), first


def test_a_client_decodes_the_live_mount(tmp_path, monkeypatch):
    port = free_port()
    pipeline, runner, live = start(tmp_path, monkeypatch, rtsp_out=port)
    try:
        count, sizes, first = decode("rtsp://127.0.0.1:%d/live" % port, 20)
        assert count >= 20 and sizes == {(320, 240)}, (count, sizes)
        print("RTSP out: first frame %.2f s after connecting" % first)
        # nobody watches any more: the feed ends and the encoder stops
        assert wait_for(lambda: live.encoders["main"].viewers == 0, 10)
    finally:
        stop(pipeline, runner)


def test_two_clients_share_one_encoder_and_one_killed_leaves_the_other_playing(tmp_path, monkeypatch):
    port = free_port()
    pipeline, runner, live = start(tmp_path, monkeypatch, rtsp_out=port)
    url = "rtsp://127.0.0.1:%d/live" % port
    encoder = live.encoders["main"]
    seen = []
    result = {}
    enough = threading.Event()
    kept = threading.Thread(target=lambda: result.update(kept=decode(url, 10 ** 6, seen, until=enough)))
    kept.start()
    killed = None
    try:
        assert wait_for(lambda: len(seen) >= 3, 60), "the first client decoded nothing"
        killed = subprocess.Popen([sys.executable, "-c", KILLED_CLIENT, url], stdout=subprocess.PIPE,
                                  universal_newlines=True)
        lines = [killed.stdout.readline() for _ in range(5)]
        assert lines[-1].strip() == "5", lines  # the second client decodes too
        assert encoder.viewers == 1, "two clients of one mount must share one subscription"
        killed.kill()  # vanishes: no TEARDOWN, the TCP connection just ends
        killed.wait(10)
        at_kill = len(seen)
        assert wait_for(lambda: len(seen) >= at_kill + 10, 60), "the client left playing stopped at %d" % len(seen)
        enough.set()
        kept.join(30)
        count, sizes, _ = result["kept"]
        assert count >= at_kill + 10 and sizes == {(320, 240)}
        assert wait_for(lambda: encoder.viewers == 0, 10), "the encoder is still watched with no client left"
    finally:
        enough.set()
        if killed is not None and killed.poll() is None:
            killed.kill()
        stop(pipeline, runner)
        kept.join(30)


def test_several_sources_get_a_mount_each_and_the_mosaic_live(tmp_path, monkeypatch):
    port = free_port()
    sources = [{"uri": SOURCE, "name": "front"}, {"uri": "test://256x144@10?live=1", "name": "back"}]
    pipeline, runner, _ = start(tmp_path, monkeypatch, rtsp_out=port, sources=sources)
    try:
        for path, size in (("front", (320, 240)), ("back", (256, 144))):
            count, sizes, _ = decode("rtsp://127.0.0.1:%d/%s" % (port, path), 5)
            assert count == 5 and sizes == {size}, (path, count, sizes)
        count, sizes, _ = decode("rtsp://127.0.0.1:%d/live" % port, 5)
        assert count == 5 and len(sizes) == 1, sizes  # the mosaic's own size
    finally:
        stop(pipeline, runner)


class RecordServer:
    """An RTSP server taking RECORD (what MediaMTX does for a publisher): the pushed H.264 access units."""

    def __init__(self, port):
        self.units = []
        self.server = GstRtspServer.RTSPServer.new()
        self.server.set_address("127.0.0.1")
        self.server.set_service(str(port))
        factory = GstRtspServer.RTSPMediaFactory.new()
        factory.set_launch("( rtph264depay name=depay0 ! h264parse ! video/x-h264,stream-format=byte-stream,"
                           "alignment=au ! fakesink name=sink signal-handoffs=true sync=false )")
        factory.set_transport_mode(GstRtspServer.RTSPTransportMode.RECORD)
        factory.connect("media-configure", self._configure)
        self.server.get_mount_points().add_factory("/in", factory)
        self.context = GLib.MainContext.new()
        self.loop = GLib.MainLoop.new(self.context, False)
        self.source = self.server.create_source(None)
        self.source.attach(self.context)
        self.thread = threading.Thread(target=self.loop.run, daemon=True)
        self.thread.start()

    def _configure(self, factory, media):
        media.get_element().get_by_name("sink").connect("handoff", self._handoff)

    def _handoff(self, sink, buffer, pad):
        ok, info = buffer.map(Gst.MapFlags.READ)
        self.units.append(bytes(info.data))
        buffer.unmap(info)

    def close(self):
        self.server.client_filter(lambda *a: GstRtspServer.RTSPFilterResult.REMOVE)
        self.loop.quit()
        self.thread.join(5)
        self.source.destroy()


def test_push_reaches_a_server_started_after_the_run_and_decodes(tmp_path, monkeypatch):
    port = free_port()
    pipeline, runner, live = start(tmp_path, monkeypatch, rtsp_push="rtsp://127.0.0.1:%d/in" % port)
    server = None
    try:
        push = live.closers[-1]
        assert wait_for(lambda: not push.connected and push.encoder.viewers == 0, 10)  # the server is down
        time.sleep(1.0)  # a failed attempt or two: warnings and retries, and the run goes on
        server = RecordServer(port)
        assert wait_for(lambda: len(server.units) >= 30, 90), "the server got %d units" % len(server.units)
        assert push.connected and push.connections == 1
        codec = av.CodecContext.create("h264", "r")
        frames = [frame for unit in server.units[:30] for frame in codec.decode(av.Packet(unit))]
        assert len(frames) >= 20 and {(f.width, f.height) for f in frames} == {(320, 240)}, len(frames)
    finally:
        stop(pipeline, runner)
        if server is not None:
            server.close()


def test_a_port_in_use_is_one_line_and_exit_2(tmp_path, capsys):
    from jetcam_app.cli import main

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        code = main(["--source", SOURCE, "--model", "mobilenet_v2", "--random-weights", "--headless",
                     "--max-frames", "5", "--rtsp-out", str(port), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert code == 2 and len(errors) == 1 and "Traceback" not in err, err
    assert "cannot serve RTSP on 127.0.0.1:%d" % port in errors[0] and "--rtsp-out PORT" in errors[0], errors


def offering(offered, done):
    """A LiveEncoder offered 15 frames a second, each showing its index (mod 256) as 8 black or white bars."""
    from jetcam_app.output.video.live import LiveEncoder

    encoder = LiveEncoder("main", 15, 2000000)

    def frames():
        index = 0
        while not done.is_set():
            image = np.zeros((240, 320, 3), np.uint8)
            for bit in range(8):
                image[:, bit * 40:(bit + 1) * 40] = 255 if (index >> bit) & 1 else 0
            offered[index % 256] = time.monotonic()
            encoder.offer(image, index)
            index += 1
            time.sleep(1 / 15.0)

    threading.Thread(target=frames, daemon=True).start()
    return encoder


def test_close_ends_its_clients_and_frees_the_port():
    from jetcam_app.output.video.rtsp_out import RtspOut

    done = threading.Event()
    encoder = offering({}, done)
    port = free_port()
    out = RtspOut(port, "127.0.0.1", {"main": encoder}, False)
    seen = []
    client = threading.Thread(target=lambda: decode("rtsp://127.0.0.1:%d/live" % port, 10 ** 6, seen))
    client.start()
    try:
        assert wait_for(lambda: len(seen) >= 5, 30)
        started = time.monotonic()
        out.close()
        assert time.monotonic() - started < 2.0
        client.join(10)
        assert not client.is_alive(), "the client was not disconnected"
        assert not _serving(port), "the port still listens"
        assert wait_for(lambda: encoder.viewers == 0, 5)
    finally:
        done.set()
        out.close()
        encoder.close()
        client.join(10)


def test_offer_to_client_latency_is_printed():
    """The frame index read back from the decoded picture: the time from offer() to decoded by the client."""
    from jetcam_app.output.video.rtsp_out import RtspOut

    offered = {}
    done = threading.Event()
    encoder = offering(offered, done)
    port = free_port()
    out = RtspOut(port, "127.0.0.1", {"main": encoder}, False)
    latencies = []
    try:
        options = dict(CLIENT, fflags="nobuffer", flags="low_delay")
        with av.open("rtsp://127.0.0.1:%d/live" % port, options=options, timeout=20) as container:
            for frame in container.decode(video=0):
                row = frame.to_ndarray(format="gray")[120]
                index = sum(1 << bit for bit in range(8) if row[bit * 40 + 20] > 128)
                latencies.append(time.monotonic() - offered[index])
                if len(latencies) >= 45:
                    break
    finally:
        done.set()
        out.close()
        encoder.close()
    steady = sorted(latencies[15:])
    print("RTSP out, offer() to decoded by an FFmpeg client on loopback: median %.0f ms, max %.0f ms"
          % (1000 * steady[len(steady) // 2], 1000 * steady[-1]))
    assert len(latencies) == 45
