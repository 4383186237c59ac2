"""What telling other systems costs, measured against a real broker (mosquitto on a loopback port):

    python bench/notify_cost.py [--messages 20000] [--frames 3000] [--rounds 2]

1. Delivery: event-sized messages per second through MqttOutput (the bounded outbox, one paho client) at QoS 0
   and 1, from the first put to the broker's last receipt.
3. The whole pipeline (run.py on the sample video, NanoDet on this machine's default backend, a line and a zone):
   its frames per second with --mqtt and --webhook off and on, side by side, the order swapped each round.
2. The emitter's frames per second, unpaced, with MQTT (and a webhook to a local HTTP server) off and on, side by
   side, the order swapped each round: a tracked scene of people crossing a line and a zone, about one event a
   frame (30 events per second at 30 fps). The emitter's thread is where the notifier's per-frame work runs.
Measured, never asserted.
"""

import argparse
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from jetcam_app.analytics.wiring import source_analytics  # noqa: E402
from jetcam_app.bench.environment import cpu_name  # noqa: E402
from jetcam_app.config import SourceConfig, load_config  # noqa: E402
from jetcam_app.inference.stages import Processed  # noqa: E402
from jetcam_app.output.emitter import FrameEmitter  # noqa: E402
from jetcam_app.output.events_log import EventLog  # noqa: E402
from jetcam_app.output.notify.hub import build_notifier  # noqa: E402
from jetcam_app.sources.lanes import Doorbell, SourceLane  # noqa: E402
from jetcam_app.sources.spec import create_source  # noqa: E402
from jetcam_app.stats import StatsPoller  # noqa: E402
from jetcam_app.types import Detections, Frame, FrameTiming  # noqa: E402


class _Adapter:
    random_weights = False


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_broker(folder: str):
    mosquitto = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    port = _port()
    conf = os.path.join(folder, "mosquitto.conf")
    with open(conf, "w") as f:
        f.write("listener %d 127.0.0.1\nallow_anonymous true\npersistence false\n" % port)
    proc = subprocess.Popen([mosquitto, "-c", conf], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return proc, port
        except OSError:
            time.sleep(0.05)
    raise SystemExit("mosquitto did not start")


_RECEIVER = """
import http.server, sys
class Quiet(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.send_response(204)
        self.send_header("Content-Length", "0")
        self.end_headers()
    def log_message(self, *args):
        pass
import socketserver
class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
Server(("127.0.0.1", int(sys.argv[1])), Quiet).serve_forever()
"""


def start_http():
    """The webhook's receiver in a process of its own: its work is not the app's."""
    port = _port()
    proc = subprocess.Popen([sys.executable, "-c", _RECEIVER, str(port)])
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            break
        except OSError:
            time.sleep(0.05)
    return proc, "http://127.0.0.1:%d/hook" % port


def delivery_rate(port: int, messages: int, qos: int) -> float:
    spec = load_config(None, {"output.mqtt": {"url": "mqtt://127.0.0.1:%d/bench" % port, "qos": qos,
                                              "queue_size": messages + 10}}).output.mqtt
    notifier = build_notifier(spec, (), [("cam", [], [])])
    mqtt = notifier.mqtt
    while not mqtt._connected.is_set():
        time.sleep(0.01)
    payload = {"event": "line_crossed", "line": "door", "direction": "in", "track_id": 1, "label": "person",
               "frame": 1, "t_s": 0.1, "in_total": 1, "out_total": 0, "source": "cam"}
    start = time.perf_counter()
    for i in range(messages):
        mqtt.publish("bench/cam/test", dict(payload, frame=i))
    while mqtt.counts()["published"] < messages:
        time.sleep(0.001)
    rate = messages / (time.perf_counter() - start)
    notifier.close()
    return rate


def scene(frames: int, n: int = 12):
    """n people walking across a 640x480 frame, each across the line and through the zone (and out of the frame,
    ending its track): 12 give about 0.8 events a frame, 16 about one."""
    out = []
    for i in range(frames):
        boxes = []
        for k in range(n):
            x = (i * 9 + k * 53) % 700 - 30
            y = 40 + (34 if n <= 12 else 400 // n) * k
            boxes.append([x - 12, y - 16, x + 12, y + 16])
        boxes = np.array(boxes, np.float32)
        keep = (boxes[:, 0] > 0) & (boxes[:, 2] < 640)
        out.append(Detections(boxes[keep], np.full(int(keep.sum()), 0.9, np.float32),
                              np.zeros(int(keep.sum()), np.int64), ["person"]))
    return out


def emitter_fps(folder: str, frames, mqtt_url, hook_url, pace_fps: float = 0.0) -> tuple:
    """(frames/s until the last frame is emitted, events, the outputs' summary): the drain at close is left out,
    it is not the frames' time."""
    overrides = {"source.lines": ["door:320,0,320,480"], "source.zones": ["bay:100,20,300,20,300,460,100,460"]}
    if mqtt_url:
        overrides["output.mqtt"] = {"url": mqtt_url}
    if hook_url:
        overrides["output.webhooks"] = [hook_url]
    config = load_config(None, overrides)
    os.makedirs(folder, exist_ok=True)
    notifier = build_notifier(config.output.mqtt, config.output.webhooks, [("cam", ["door"], ["bay"])])
    events = EventLog(os.path.join(folder, "events.jsonl"))

    def on_event(event):
        events.write(event)
        if notifier is not None:
            notifier.event(event)
    lane = SourceLane("cam", create_source(SourceConfig(uri="test://640x480@30")), Doorbell(), 8, 30.0)
    lane.analytics = source_analytics(config, config.source, "cam", 30.0, on_event)
    stats = StatsPoller(1.0, "cpu").start()
    emitter = FrameEmitter(config, folder, _Adapter(), stats, [lane], threaded=True, events=events, notifier=notifier)
    image = np.zeros((480, 640, 3), np.uint8)
    start = time.perf_counter()
    cpu0 = time.process_time()
    for i, det in enumerate(frames):
        if pace_fps:  # a camera's rate: the frame is due at i / fps
            time.sleep(max(0.0, start + i / pace_fps - time.perf_counter()))
        emitter.emit([(lane, Processed(Frame(image, i, i / 30.0, time.perf_counter()), det, FrameTiming()))])
    while lane.processed < len(frames):
        time.sleep(0.0005)
    wall = time.perf_counter() - start
    cpu = time.process_time() - cpu0  # every thread of this process: the emitter, the outboxes, paho
    emitter.close()
    if pace_fps:
        return len(frames) / wall, events.rows, notifier.summary() if notifier is not None else {}, cpu / wall
    stats.stop()
    published = notifier.summary() if notifier is not None else {}
    return len(frames) / wall, events.rows, published


def pipeline_fps(folder: str, frames: int, mqtt_url, hook_url) -> tuple:
    import json

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    cmd = [sys.executable, os.path.join(root, "run.py"), "--source", "sample", "--headless", "--max-frames",
           str(frames), "--out", folder, "--line", "door:0.5,0,0.5,1",
           "--zone", "mid:0.25,0.25,0.75,0.25,0.75,0.75,0.25,0.75"]
    if mqtt_url:
        cmd += ["--mqtt", mqtt_url, "--webhook", hook_url]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    summary = json.load(open(os.path.join(folder, "summary.json")))
    with open(os.path.join(folder, "events.jsonl")) as f:
        events = sum(1 for _ in f)
    return summary["fps"], events / summary["wall_s"], summary.get("outputs", {})


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--messages", type=int, default=20000)
    p.add_argument("--frames", type=int, default=3000)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--pipeline-frames", type=int, default=250, help="frames of each whole-pipeline run; 0 = skip")
    args = p.parse_args()
    import paho.mqtt  # noqa: F401 - fail early with the import error

    print("machine: %s, %d CPU cores; Python %s, paho-mqtt %s" % (cpu_name(), os.cpu_count() or 0,
                                                                 platform.python_version(), paho.mqtt.__version__))
    folder = tempfile.mkdtemp(prefix="notify_cost_")
    broker, port = start_broker(folder)
    server, hook = start_http()
    try:
        for qos in (0, 1):
            print("delivery, QoS %d: %.0f messages/s (%d event-sized messages, loopback broker)"
                  % (qos, delivery_rate(port, args.messages, qos), args.messages))
        frames = scene(args.frames)
        print("emitter, unpaced, %d frames of a tracked scene (1 line, 1 zone, 12 people walking through):"
              % args.frames)
        mqtt_url = "mqtt://127.0.0.1:%d/bench" % port
        variants = (("off", None, None), ("MQTT", mqtt_url, None), ("MQTT + webhook", mqtt_url, hook))
        for r in range(args.rounds):
            for name, url, hook_url in (variants if r % 2 == 0 else variants[::-1]):
                fps, rows, out = emitter_fps(os.path.join(folder, "%s%d" % (name[:4], r)), frames, url, hook_url)
                extra = ""
                if "mqtt" in out:
                    extra += "; MQTT %(published)d published, %(dropped)d dropped" % out["mqtt"]
                if "webhooks" in out:
                    extra += "; webhook %(published)d posted, %(dropped)d dropped" % out["webhooks"][0]
                print("  round %d, %-14s: %7.1f frames/s (%.3f ms a frame), %d events (%.2f a frame, %.0f a second "
                      "at 30 fps)%s" % (r + 1, name, fps, 1e3 / fps, rows, rows / len(frames),
                                        30 * rows / len(frames), extra))
        paced = scene(600, 16)
        print("emitter paced at 30 fps, 600 frames (20 s) of 16 people walking through; the process's CPU time:")
        for r in range(args.rounds):
            for name in (("off", "on") if r % 2 == 0 else ("on", "off")):
                url = mqtt_url if name == "on" else None
                fps, rows, out, cpu = emitter_fps(os.path.join(folder, "paced_%s%d" % (name, r)), paced, url,
                                                  hook if url else None, pace_fps=30.0)
                extra = ""
                if out:
                    extra = "; MQTT %d published, %d dropped; webhook %d posted, %d dropped" % (
                        out["mqtt"]["published"], out["mqtt"]["dropped"], out["webhooks"][0]["published"],
                        out["webhooks"][0]["dropped"])
                print("  round %d, MQTT + webhook %-3s: %5.2f fps, %.1f events a second, CPU %.1f %% of a core%s"
                      % (r + 1, name, fps, rows * fps / len(paced), 100 * cpu, extra))
        if args.pipeline_frames:
            print("pipeline (run.py, sample video, NanoDet, %d frames, a line and a zone):" % args.pipeline_frames)
            for r in range(args.rounds):
                for name in (("off", "on") if r % 2 == 0 else ("on", "off")):
                    url = mqtt_url if name == "on" else None
                    fps, rate, out = pipeline_fps(os.path.join(folder, "run_%s%d" % (name, r)), args.pipeline_frames,
                                                  url, hook)
                    extra = ""
                    if out:
                        extra = "; MQTT %d published, %d dropped; webhook %d posted" % (
                            out["mqtt"]["published"], out["mqtt"]["dropped"], out["webhooks"][0]["published"])
                    print("  round %d, MQTT + webhook %-3s: %6.2f fps, %.1f events a second%s"
                          % (r + 1, name, fps, rate, extra))
    finally:
        broker.kill()
        server.kill()
        shutil.rmtree(folder, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
