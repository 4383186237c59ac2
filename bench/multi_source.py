"""Benchmark: N sources of one video in one app process, against the single-source app and N separate processes.

(a) paced: N copies of the video paced like cameras at --pace-fps (the video re-timed to that rate): per-source
fps, drops and p99 capture-to-result latency, and the largest N at which every source stays real-time (p99
latency within the 1000/pace-fps budget and under 0.1% of frames dropped). (b) unpaced: the same N replayed
lossless for --frames each: aggregate fps and peak GPU memory of the one process, of the single-source app and
of N separate app processes run side by side (their rate while all of them were running: give them enough
--frames that their runs overlap well). Every run is `run.py` in a subprocess (its own GPU context and
memory). Not a test: speed is measured, never asserted.

    python bench/multi_source.py --n 1,2,4 --pace-fps 5 --model nanodet --backend onnxruntime --parts paced
    python bench/multi_source.py --n 1,2,4,8,16,32 --pace-fps 30 --backend cuda --precision fp16 \\
        --source media/bigbuckbunny.mp4 --frames 300
    (add --no-cuda-graph for the eager batch path, to compare it with the fused batch graph)
"""

import argparse
import csv
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any, Dict, List, Optional, Sequence

import cv2

from common import machine, write_json  # also puts the repository on sys.path

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def retimed_copy(source: str, fps: float, frames: int, path: str) -> str:
    """`frames` frames of `source` (looped if shorter) written at `fps`, so a paced replay behaves like that camera."""
    cap = cv2.VideoCapture(source)
    ok, image = cap.read()
    if not ok:
        raise SystemExit("cannot read %s" % source)
    writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"mp4v"), fps, (image.shape[1], image.shape[0]))
    for _ in range(frames):
        writer.write(image)
        ok, image = cap.read()
        if not ok:
            cap.release()
            cap = cv2.VideoCapture(source)
            ok, image = cap.read()
    writer.release()
    cap.release()
    return path


class GpuMemory:
    """Peak of the GPU memory nvidia-smi reports for the given processes, summed, sampled every 0.2 s."""

    def __init__(self):
        self.available = shutil.which("nvidia-smi") is not None
        self.peak_mb = 0.0
        self.pids = set()  # type: set
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.2):
            try:
                out = subprocess.run(["nvidia-smi", "--query-compute-apps=pid,used_memory", "--format=csv,noheader,nounits"],
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, universal_newlines=True,
                                     timeout=5).stdout
            except (OSError, subprocess.TimeoutExpired):
                continue
            total = 0.0
            for line in out.splitlines():
                parts = [p.strip() for p in line.split(",")]
                if len(parts) == 2 and parts[0].isdigit() and int(parts[0]) in self.pids:
                    try:
                        total += float(parts[1])
                    except ValueError:
                        pass
            self.peak_mb = max(self.peak_mb, total)

    def __enter__(self) -> "GpuMemory":
        if self.available:
            self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        if self.available:
            self._thread.join()


def app_command(args: argparse.Namespace, sources: Sequence[str], out: str, extra: Sequence[str] = ()) -> List[str]:
    cmd = [sys.executable, os.path.join(ROOT, "run.py"), "--headless", "--out", out, "--model", args.model,
           "--backend", args.backend, "--precision", args.precision, "--no-hud"]
    for source in sources:
        cmd += ["--source", source]
    if args.cuda_graph is not None:  # None: the app's default (pipeline.cuda_graph)
        cmd.append("--cuda-graph" if args.cuda_graph else "--no-cuda-graph")
    if args.random_weights:
        cmd.append("--random-weights")
    if args.decode_threads is not None:
        cmd += ["--decode-threads", str(args.decode_threads)]
    if getattr(args, "decoder", None):  # one of --decode's values: this run's
        cmd += ["--decode", args.decoder]
    for arg in args.app_arg or ():  # e.g. tracking with lines and zones, to measure what it costs
        cmd += arg.split()
    return cmd + list(extra)


def run_processes(commands: Sequence[List[str]], outs: Sequence[str]) -> Dict[str, Any]:
    """Start every command at once; wait; their summaries and the peak GPU memory of them all."""
    with GpuMemory() as memory:
        procs = []
        for cmd in commands:
            procs.append(subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True))
            memory.pids.add(procs[-1].pid)
        logs = [p.communicate()[0] for p in procs]
    summaries = []
    for proc, out, log in zip(procs, outs, logs):
        if proc.returncode != 0:
            raise SystemExit("app run failed (exit %d):\n%s" % (proc.returncode, log[-3000:]))
        with open(os.path.join(out, "summary.json")) as f:
            summaries.append(json.load(f))
    return {"summaries": summaries, "gpu_peak_mb": memory.peak_mb if memory.available else None}


def union_window_fps(summaries: Sequence[Dict[str, Any]], outs: Sequence[str]) -> Optional[float]:
    """All processes' frames over the time from the first one's start to the last one's end: a lower bound of their
    aggregate (the sum of their own rates is the upper one). Each run ends when its summary.json is written
    (its modification time) and started wall_s before that."""
    ends = [os.path.getmtime(os.path.join(out, "summary.json")) for out in outs]
    starts = [end - s["wall_s"] for end, s in zip(ends, summaries)]
    window = max(ends) - min(starts)
    return sum(s["frames"]["processed"] for s in summaries) / window if window > 0 else None


def together_fps(outs: Sequence[str]) -> Optional[float]:
    """The runs' frames while every one of them was running, over that window: their rate together. Each timing.csv
    row's t_s counts from its run's clock start, and summary.json's started_unix lines the runs up."""
    starts, times = [], []
    for out in outs:
        with open(os.path.join(out, "summary.json")) as f:
            start = json.load(f).get("started_unix")
        with open(os.path.join(out, "timing.csv")) as f:
            rows = [start + float(r["t_s"]) for r in csv.DictReader(f) if start is not None and r.get("t_s")]
        if not rows:
            return None  # an app without t_s (an older tree)
        starts.append(start)
        times.append(rows)
    begin, end = max(starts), min(rows[-1] for rows in times)
    if end <= begin:
        return None
    return sum(1 for rows in times for t in rows if begin <= t <= end) / (end - begin)


def peak_rss_mb(out: str) -> Optional[float]:
    """The process's largest resident memory over the run (timing.csv's rss_mb column)."""
    with open(os.path.join(out, "timing.csv")) as f:
        values = [float(r["rss_mb"]) for r in csv.DictReader(f) if r.get("rss_mb")]
    return max(values) if values else None


def source_video(args: argparse.Namespace, fps: float, frames: int, path: str) -> str:
    """The video every source plays: a copy re-timed to `fps` (MPEG-4 part 2, OpenCV's writer), or with --no-retime
    the source as it is (say an H.264 file at that rate: both decoders then read the codec cameras send)."""
    return args.source if args.no_retime else retimed_copy(args.source, fps, frames, path)


def per_source(summary: Dict[str, Any]) -> Dict[str, Dict[str, Any]]:
    """{name: section}: the multi-source sections, or the single-source summary as one section."""
    return summary.get("sources") or {"source": summary}


def paced_row(n: int, summary: Dict[str, Any], pace_fps: float) -> Dict[str, Any]:
    budget_ms = 1000.0 / pace_fps
    sections = [s for s in per_source(summary).values() if "frames" in s]
    fps = [s["fps"] or 0.0 for s in sections]
    p99 = [s["stages_ms"]["latency_ms"]["p99"] or float("inf") for s in sections]
    captured = sum(s["frames"]["captured"] for s in sections)
    dropped = sum(s["frames"]["dropped"] for s in sections)
    ok = [lat <= budget_ms and s["frames"]["dropped"] <= 0.001 * max(1, s["frames"]["captured"])
          for lat, s in zip(p99, sections)]
    return {"n": n, "min_fps": min(fps), "mean_fps": sum(fps) / len(fps), "p99_latency_ms_worst": max(p99),
            "dropped": dropped, "drop_share": dropped / float(max(1, captured)),
            "aggregate_fps": summary["frames"]["processed"] / summary["wall_s"] if summary["wall_s"] else None,
            "all_realtime": all(ok) and len(sections) == n, "budget_ms": budget_ms}


def keep(args: argparse.Namespace, out: str, name: str) -> None:
    """The run's timing.csv and summary.json copied to --keep/name (where each frame's latency went)."""
    if args.keep:
        os.makedirs(os.path.join(args.keep, name), exist_ok=True)
        for f in ("timing.csv", "summary.json"):
            shutil.copy(os.path.join(out, f), os.path.join(args.keep, name, f))


def paced(args: argparse.Namespace, ns: Sequence[int], work: str) -> List[Dict[str, Any]]:
    video = source_video(args, args.pace_fps, args.paced_frames, os.path.join(work, "paced.mp4"))
    rows = []
    print("\n(a) paced at %g fps, %d frames a source; real-time = p99 latency <= %.1f ms and drops < 0.1%%"
          % (args.pace_fps, args.paced_frames, 1000.0 / args.pace_fps))
    print("   N | fps/source min (mean) | p99 latency worst ms | dropped (share) | aggregate fps | all real-time | "
          "GPU MB | RSS MB")
    for n in ns:
        out = os.path.join(work, "paced_%d" % n)
        limit = ["--max-frames", str(args.paced_frames)] if args.no_retime else []
        result = run_processes([app_command(args, [video] * n, out, ["--pace", "--target-fps", str(args.pace_fps)]
                                            + limit)], [out])
        row = dict(paced_row(n, result["summaries"][0], args.pace_fps), gpu_peak_mb=result["gpu_peak_mb"],
                   rss_peak_mb=peak_rss_mb(out), decode=args.decoder)
        keep(args, out, "paced_%d" % n)
        rows.append(row)
        print("%4d | %9.2f (%6.2f) | %20.1f | %6d (%.4f) | %13.1f | %13s | %6s | %6s" % (
            n, row["min_fps"], row["mean_fps"], row["p99_latency_ms_worst"], row["dropped"], row["drop_share"],
            row["aggregate_fps"] or 0.0, "yes" if row["all_realtime"] else "no", row["gpu_peak_mb"],
            row["rss_peak_mb"]))
    ok = [r["n"] for r in rows if r["all_realtime"]]
    print("largest N with every source real-time: %s" % (max(ok) if ok else "none"))
    return rows


def unpaced(args: argparse.Namespace, ns: Sequence[int], work: str) -> List[Dict[str, Any]]:
    video = source_video(args, 30.0, args.frames, os.path.join(work, "lossless.mp4"))
    print("\n(b) unpaced, %d frames a source, lossless: aggregate fps and peak GPU memory" % args.frames)
    print("   N | one process fps (GPU MB) | N processes fps: all running, lower-upper bound (GPU MB) | single-source fps")
    single_out = os.path.join(work, "single")
    limit = ["--max-frames", str(args.frames)]
    single = run_processes([app_command(args, [video], single_out, limit)], [single_out])["summaries"][0]["fps"]
    rows = []
    for n in ns:
        out = os.path.join(work, "one_%d" % n)
        one = run_processes([app_command(args, [video] * n, out, ["--max-frames", str(args.frames)])], [out])
        keep(args, out, "unpaced_%d" % n)
        outs = [os.path.join(work, "sep_%d_%d" % (n, i)) for i in range(n)]
        sep = run_processes([app_command(args, [video], o, limit) for o in outs], outs)
        for i, o in enumerate(outs):
            keep(args, o, "separate_%d_%d" % (n, i))
        summary = one["summaries"][0]
        one_fps = summary["frames"]["processed"] / summary["wall_s"]
        # Each process's own fps, summed: the processes start at slightly different times, so this is an upper bound;
        # their frames over the union of their run times, a lower one; their frames while all ran, the figure.
        sep_fps = sum(s["fps"] or 0.0 for s in sep["summaries"])
        sep_union = union_window_fps(sep["summaries"], outs)
        sep_together = together_fps(outs)
        rows.append({"n": n, "one_process_fps": one_fps, "one_process_gpu_mb": one["gpu_peak_mb"],
                     "separate_fps": sep_fps, "separate_fps_union_window": sep_union,
                     "separate_fps_together": sep_together,
                     "separate_gpu_mb": sep["gpu_peak_mb"], "single_source_fps": single,
                     "one_process_rss_mb": peak_rss_mb(out), "decode": args.decoder})
        print("%4d | %14.1f (%7s) | %8s, %6.1f-%6.1f (%7s) | %.1f" % (
            n, one_fps, one["gpu_peak_mb"], "%.1f" % sep_together if sep_together else "n/a", sep_union or 0.0, sep_fps,
            sep["gpu_peak_mb"], single or 0.0))
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", default="1,2,4,8,16,32", help="source counts, comma-separated")
    p.add_argument("--pace-fps", type=float, default=30.0)
    p.add_argument("--paced-frames", type=int, default=0, help="frames a paced source plays (0 = 10 s of it)")
    p.add_argument("--frames", type=int, default=300, help="frames a source in the unpaced runs")
    p.add_argument("--source", default=os.path.join(ROOT, "media", "bigbuckbunny.mp4"))
    p.add_argument("--model", default="nanodet")
    p.add_argument("--backend", default="cpu")
    p.add_argument("--precision", default="fp32")
    p.add_argument("--cuda-graph", dest="cuda_graph", action="store_true", default=None,
                   help="the fused CUDA graph (on CUDA: the batches through FusedStages); default: the app's")
    p.add_argument("--no-cuda-graph", dest="cuda_graph", action="store_false",
                   help="the eager batch path (BatchStages), to compare with the fused one")
    p.add_argument("--random-weights", action="store_true")
    p.add_argument("--decode-threads", type=int, help="the app's --decode-threads (default: the app's)")
    p.add_argument("--decode", help="the app's --decode, or several side by side: cpu,gpu (default: the app's)")
    p.add_argument("--no-retime", action="store_true", help="play --source as it is (its own codec and rate) "
                   "instead of an MPEG-4 copy re-timed to --pace-fps")
    p.add_argument("--parts", default="paced,unpaced")
    p.add_argument("--json", help="write the figures here")
    p.add_argument("--app-arg", action="append", help="more arguments for every app run, e.g. "
                   "--app-arg='--line a:0.5,0,0.5,1' (repeatable; split on spaces)")
    p.add_argument("--keep", help="copy each one-process run's timing.csv and summary.json into this folder")
    args = p.parse_args()
    args.paced_frames = args.paced_frames or int(round(10 * args.pace_fps))
    ns = [int(v) for v in args.n.split(",") if v.strip()]
    work = tempfile.mkdtemp(prefix="multi_source_")
    graph = {True: " + CUDA graph", False: ", no CUDA graph"}.get(args.cuda_graph, "")
    print("%s; %s on %s %s%s; source %s" % (machine(), args.model, args.backend, args.precision, graph, args.source))
    figures = {"machine": machine(), "args": vars(args)}  # type: Dict[str, Optional[Any]]
    started = time.perf_counter()
    figures["paced"], figures["unpaced"] = [], []
    for decoder in (args.decode or "").split(",") if args.decode else [None]:
        args.decoder = decoder
        if decoder:
            print("\n== --decode %s" % decoder)
        if "paced" in args.parts.split(","):
            figures["paced"] += paced(args, ns, work)
        if "unpaced" in args.parts.split(","):
            figures["unpaced"] += unpaced(args, ns, work)
    print("\n%.0f s in all; runs in %s" % (time.perf_counter() - started, work))
    write_json(figures, args.json)


if __name__ == "__main__":
    main()
