"""What the video outputs cost and how late they show a frame, side by side in one run on this machine.

1. Encoder cost per frame: libx264 (ultrafast, zerolatency, baseline; what --record, the page's H.264 views and RTSP
   share, one per picture) against the JPEG encoding of the MJPEG view, at 640x480, 1280x720 and 1920x1080, on the
   synthetic test pattern.
2. Latency from capture to a decoded frame at the client, and bandwidth per viewer, for each live output: the app
   runs in its own process on `test://WxH@30?live=1` with --no-overlay --no-hud, so every frame still carries its index in a
   bit strip (sources/synthetic.py); a client decodes, reads the index back and compares its clock with the frame's
   capture time (summary.json's started_unix + timing.csv's t_s - latency_ms, the same machine's clock).
3. The pipeline's fps with 0, 1 and 3 MSE viewers (each a run of its own).

    .venv/bin/python bench/video_outputs.py [--size 640x480] [--seconds 8] [--outputs mjpeg,mse,rtsp,webrtc]
"""

import argparse
import csv
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from fractions import Fraction

import cv2
import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from jetcam_app.sources.synthetic import decode_index  # noqa: E402


def sample_frames(frames):
    """The sample clip's frames (real motion and texture: what an encoder meets on a camera)."""
    from jetcam_app.assets import sample_video_path

    capture, images = cv2.VideoCapture(sample_video_path()), []
    while len(images) < frames:
        ok, image = capture.read()
        if not ok:
            capture.set(cv2.CAP_PROP_POS_FRAMES, 0)
            continue
        images.append(image)
    return images


def encoder_cost(sizes, frames=60):
    import av

    rows, clip = [], sample_frames(frames)
    for w, h in sizes:
        images = [cv2.resize(image, (w, h)) for image in clip]
        ctx = av.CodecContext.create("libx264", "w")
        ctx.width, ctx.height, ctx.pix_fmt, ctx.bit_rate, ctx.gop_size = w, h, "yuv420p", 4000000, 30
        ctx.framerate, ctx.time_base = Fraction(30, 1), Fraction(1, 30)  # the rate control needs the frame rate
        ctx.options = {"preset": "ultrafast", "tune": "zerolatency", "profile": "baseline"}
        start, size = time.perf_counter(), 0
        for i, image in enumerate(images):
            frame = av.VideoFrame.from_ndarray(image, format="bgr24")
            frame.pts = i
            size += sum(p.size for p in ctx.encode(frame))
        h264_ms = (time.perf_counter() - start) * 1000 / frames
        start, jpeg = time.perf_counter(), 0
        for image in images:
            jpeg += len(cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 80])[1])
        jpeg_ms = (time.perf_counter() - start) * 1000 / frames
        rows.append((w, h, h264_ms, size * 8 * 30 / frames / 1e6, jpeg_ms, jpeg * 8 * 30 / frames / 1e6))
    return rows


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Client(threading.Thread):
    """Decodes one output's frames for `seconds`: (receive time, index) pairs and the bytes it read."""

    def __init__(self, kind, url, seconds):
        super().__init__(daemon=True)
        self.kind, self.url, self.seconds = kind, url, seconds
        self.seen, self.bytes, self.error = [], 0, None

    def run(self):
        try:
            getattr(self, "_" + self.kind)()
        except Exception as e:  # noqa: B902 - reported in the table
            self.error = "%s: %s" % (type(e).__name__, e)

    def _note(self, image):
        self.seen.append((time.time(), decode_index(image)))

    def _mjpeg(self):
        deadline = time.time() + self.seconds
        with urllib.request.urlopen(self.url, timeout=10) as r:
            buf = b""
            while time.time() < deadline:
                chunk = r.read1(65536)  # what has arrived: read(n) would wait for n bytes and add latency
                self.bytes += len(chunk)
                buf += chunk
                start, end = buf.find(b"\xff\xd8"), buf.find(b"\xff\xd9")
                while start >= 0 and end > start:
                    self._note(cv2.imdecode(np.frombuffer(buf[start:end + 2], np.uint8), cv2.IMREAD_COLOR))
                    buf = buf[end + 2:]
                    start, end = buf.find(b"\xff\xd8"), buf.find(b"\xff\xd9")

    def _decode_av(self, options, fmt=None):
        import av

        deadline = time.time() + self.seconds
        with av.open(self.url, format=fmt, options=options, timeout=10) as container:
            for packet in container.demux(video=0):
                self.bytes += packet.size
                for frame in packet.decode():
                    self._note(frame.to_ndarray(format="bgr24"))
                if time.time() > deadline:
                    return

    def _mse(self):  # what MSE gets: the fragmented MP4 of stream.mp4, decoded as it arrives
        self._decode_av({"fflags": "nobuffer", "probesize": "32", "analyzeduration": "0"})

    def _rtsp(self):
        self._decode_av({"rtsp_transport": "tcp", "fflags": "nobuffer", "analyzeduration": "0"})

    def _webrtc(self):
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        from webrtc_client import receive  # bench/webrtc_client.py: an aiortc viewer

        for t, image, size in receive(self.url, self.seconds):
            self.bytes += size
            self.seen.append((t, decode_index(image)))


def capture_times(out_dir):
    summary = json.load(open(os.path.join(out_dir, "summary.json")))
    times, latencies = {}, []
    with open(os.path.join(out_dir, "timing.csv")) as f:
        for row in csv.DictReader(f):
            if row["t_s"]:
                latencies.append(float(row["latency_ms"]))
                times[int(row["frame_index"])] = (summary["started_unix"] + float(row["t_s"])
                                                  - float(row["latency_ms"]) / 1000.0)
    summary["pipeline_latency_p50_ms"] = float(np.percentile(latencies, 50)) if latencies else float("nan")
    return summary, times


def run_app(size, seconds, clients, extra):
    out = tempfile.mkdtemp(prefix="video_outputs_")
    http, rtsp = free_port(), free_port()
    cmd = [sys.executable, os.path.join(ROOT, "run.py"), "--source", "test://%s@30?live=1" % size, "--model",
           "mobilenet_v2", "--random-weights", "--no-overlay", "--no-hud", "--headless", "--out", out, "--http", str(http),
           "--rtsp-out", str(rtsp)] + extra
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    # the run ends by Ctrl-C once the clients are done (a clean stop: summary.json is written)
    urls = {"mjpeg": "http://127.0.0.1:%d/stream.mjpg" % http, "mse": "http://127.0.0.1:%d/stream.mp4" % http,
            "rtsp": "rtsp://127.0.0.1:%d/live" % rtsp, "webrtc": "http://127.0.0.1:%d/whep" % http}
    deadline = time.time() + 60
    while time.time() < deadline and not os.path.exists(os.path.join(out, "timing.csv")):
        time.sleep(0.2)
    time.sleep(2.0)
    threads = [Client(kind, urls[kind], seconds) for kind in clients]
    for t in threads:
        t.start()
    for t in threads:
        t.join(seconds + 30)
    if not threads:
        time.sleep(seconds)
    proc.send_signal(signal.SIGINT)
    proc.wait(60)
    summary, times = capture_times(out)
    return summary, times, threads


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--size", default="640x480")
    p.add_argument("--seconds", type=float, default=8.0)
    p.add_argument("--outputs", default="mjpeg,mse,rtsp,webrtc")
    args = p.parse_args()
    print("## Encoder cost per frame (%d cores)\n" % os.cpu_count())
    print("| frame | H.264 ms | H.264 Mbit/s at 30 fps | JPEG q80 ms | MJPEG Mbit/s at 30 fps |\n|---|---|---|---|---|")
    for w, h, h264_ms, h264_mbit, jpeg_ms, jpeg_mbit in encoder_cost([(640, 480), (1280, 720), (1920, 1080)]):
        print("| %dx%d | %.2f | %.2f | %.2f | %.1f |" % (w, h, h264_ms, h264_mbit, jpeg_ms, jpeg_mbit))
    kinds = [k for k in args.outputs.split(",") if k]
    print("\n## Capture to decoded frame at the client, %s, all outputs watched at once\n" % args.size)
    print("| output | frames decoded | in order | latency p50 ms | p90 ms | Mbit/s per viewer | error |\n"
          "|---|---|---|---|---|---|---|")
    summary, times, clients = run_app(args.size, args.seconds, kinds, [])
    print("The pipeline's own capture-to-result latency in this run (timing.csv): p50 %.0f ms; the rest is the "
          "output's encoding, transport and decoding.\n" % summary["pipeline_latency_p50_ms"])
    for c in clients:
        lat = [1000 * (t - times[i]) for t, i in c.seen if i in times]
        order = all(b > a for (_, a), (_, b) in zip(c.seen, c.seen[1:]))
        span = (c.seen[-1][0] - c.seen[0][0]) if len(c.seen) > 1 else 0
        print("| %s | %d | %s | %s | %s | %s | %s |" % (
            c.kind, len(c.seen), order, "%.0f" % np.percentile(lat, 50) if lat else "-",
            "%.0f" % np.percentile(lat, 90) if lat else "-", "%.2f" % (c.bytes * 8 / span / 1e6) if span and c.bytes else "-",
            c.error or ""))
    print("\n## The pipeline's fps with 0, 1 and 3 MSE viewers (%s, 30 fps source; two rounds, the order swapped)\n"
          % args.size)
    print("| viewers | fps | capture-to-result p50 ms |\n|---|---|---|")
    for n in (0, 1, 3, 3, 1, 0):
        summary, _, _ = run_app(args.size, args.seconds, ["mse"] * n, [])
        print("| %d | %.1f | %.0f |" % (n, summary["fps"], summary["pipeline_latency_p50_ms"]))


if __name__ == "__main__":
    main()
