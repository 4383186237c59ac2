"""The web page's cost to the pipeline: fps of the same run with 0 and with N viewers on /stream.mjpg, alternated:

    python bench/http_viewers.py --model nanodet --source media/bikes.mp4 --viewers 5 --rounds 2

Each round runs the app on the same source (lossless, headless, --http on), first with no viewer, then with N
viewers reading the MJPEG stream as fast as it comes (as browsers do), so the two figures share the machine's
state. Not a test: it prints the figures (and writes them with --json); docs/performance.md records them.
"""

import argparse
import json
import socket
import tempfile
import threading
import time
from typing import Any, Dict, List

from common import add_app_arguments, app_overrides, machine, write_json  # also puts the repository on sys.path

from jetcam_app.config import load_config  # noqa: E402
from jetcam_app.pipeline import Pipeline  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def viewer(port: int, stop: threading.Event, received: List[int], slot: int) -> None:
    """Connect to /stream.mjpg as soon as the server listens and read until the run ends."""
    while not stop.is_set():
        try:
            conn = socket.create_connection(("127.0.0.1", port), timeout=1.0)
        except OSError:
            time.sleep(0.05)
            continue
        with conn:
            conn.sendall(b"GET /stream.mjpg HTTP/1.0\r\n\r\n")
            while not stop.is_set():
                try:
                    data = conn.recv(1 << 16)
                except socket.timeout:
                    continue
                except OSError:
                    break
                if not data:
                    break
                received[slot] += data.count(b"--jetcamframe")
        return


def one_run(args: argparse.Namespace, viewers: int) -> Dict[str, Any]:
    port = free_port()
    stop = threading.Event()
    received = [0] * viewers
    threads = [threading.Thread(target=viewer, args=(port, stop, received, i), daemon=True) for i in range(viewers)]
    for thread in threads:
        thread.start()
    with tempfile.TemporaryDirectory() as out:
        config = load_config(None, app_overrides(args, args.source, **{
            "pipeline.max_frames": args.frames, "output.out_dir": out, "output.headless": True,
            "output.http_port": port}))
        try:
            summary = Pipeline(config).run()
        finally:
            stop.set()
            for thread in threads:
                thread.join(5)
    return {"viewers": viewers, "fps": summary["fps"], "frames": summary["frames"]["processed"],
            "stream_frames_per_viewer": received}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_app_arguments(p)
    p.add_argument("--source", default="media/bikes.mp4")
    p.add_argument("--frames", type=int, default=250, help="frames a run processes (0 = the whole source)")
    p.add_argument("--viewers", type=int, default=5)
    p.add_argument("--rounds", type=int, default=2, help="pairs of runs (0 viewers, then --viewers)")
    p.add_argument("--json")
    args = p.parse_args()
    print("machine: %s" % machine())
    runs = []
    for _ in range(args.rounds):
        for count in (0, args.viewers):
            run = one_run(args, count)
            runs.append(run)
            print("  %d viewers: %.1f fps over %d frames; stream frames per viewer: %s"
                  % (run["viewers"], run["fps"] or 0.0, run["frames"], run["stream_frames_per_viewer"]))
    # each pair shares the machine's state best: the ratio of each pair, then their median
    ratios = [runs[i + 1]["fps"] / runs[i]["fps"] for i in range(0, len(runs), 2) if runs[i]["fps"]]
    figures = {"machine": machine(), "model": args.model, "backend": args.backend, "precision": args.precision,
               "source": args.source, "runs": runs, "pair_ratios": ratios,
               "median_ratio": sorted(ratios)[len(ratios) // 2] if ratios else None}
    print("fps with %d viewers / fps without, per pair: %s; median %s" % (
        args.viewers, ", ".join("%.3f" % r for r in ratios), "%.3f" % figures["median_ratio"] if ratios else "-"))
    write_json(figures, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
