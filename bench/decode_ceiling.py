"""Benchmark: how fast N OpenCV decoders of one video run, as N threads of one process and as N processes.

    python bench/decode_ceiling.py VIDEO [--n 8] [--frames 600] [--decode-threads 0,1,2] [--modes threads,processes]

Every decoder opens the video (FFmpeg limited to D threads; 0 = OpenCV's choice), waits at a barrier, then reads
`frames` frames into one reused buffer. The aggregate is all frames over the time from the barrier to the last
decoder's end (perf_counter is the system's monotonic clock, so processes share it). Nothing but decoding: the
rate is what the app's capture threads could reach with no Python after the read. Nothing is asserted.
"""

import argparse
import multiprocessing as mp
import os
import threading
import time
from typing import Any, Dict, List

from common import machine, write_json  # also puts the repository on sys.path


def decode(path: str, threads: int, frames: int, barrier: Any, results: Any, slot: int) -> None:
    import cv2

    if threads:
        cap = cv2.VideoCapture(path, cv2.CAP_FFMPEG, [cv2.CAP_PROP_N_THREADS, threads])
    else:
        cap = cv2.VideoCapture(path)
    ok, buffer = cap.read()
    if not ok:
        raise SystemExit("cannot decode %s" % path)
    barrier.wait()
    start = time.perf_counter()
    done = 0
    while done < frames:
        ok, image = cap.read(buffer)
        if not ok:  # looped: the file is shorter than `frames`
            cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
            continue
        done += 1
    results[slot] = (start, time.perf_counter(), done)


def run(mode: str, path: str, n: int, threads: int, frames: int) -> Dict[str, Any]:
    if mode == "threads":
        barrier, results = threading.Barrier(n), [None] * n  # type: Any, Any
        workers = [threading.Thread(target=decode, args=(path, threads, frames, barrier, results, i))
                   for i in range(n)]  # type: List[Any]
    else:
        ctx = mp.get_context("spawn")
        barrier, results = ctx.Barrier(n), ctx.Manager().list([None] * n)
        workers = [ctx.Process(target=decode, args=(path, threads, frames, barrier, results, i)) for i in range(n)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    rows = list(results)
    start, end = min(r[0] for r in rows), max(r[1] for r in rows)
    total = sum(r[2] for r in rows)
    return {"mode": mode, "n": n, "decode_threads": threads, "frames": total, "seconds": end - start,
            "aggregate_fps": total / (end - start), "each_fps": [r[2] / (r[1] - r[0]) for r in rows]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("video")
    p.add_argument("--n", type=int, default=8)
    p.add_argument("--frames", type=int, default=600, help="frames each decoder reads")
    p.add_argument("--decode-threads", default="0,1,2", help="FFmpeg threads per decoder, comma-separated")
    p.add_argument("--modes", default="threads,processes")
    p.add_argument("--json")
    args = p.parse_args()
    print("%s; %d decoders of %s, %d frames each" % (machine(), args.n, args.video, args.frames))
    print("mode      | decode threads | aggregate fps | slowest decoder fps")
    rows = []
    for threads in [int(v) for v in args.decode_threads.split(",")]:
        for mode in args.modes.split(","):
            row = run(mode, args.video, args.n, threads, args.frames)
            rows.append(row)
            print("%-9s | %14d | %13.1f | %.1f" % (mode, threads, row["aggregate_fps"], min(row["each_fps"])))
    write_json({"machine": machine(), "args": vars(args), "rows": rows}, args.json)


if __name__ == "__main__":
    main()
