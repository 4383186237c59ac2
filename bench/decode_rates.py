"""Benchmark: decoding alone, the app's two video sources side by side in one process: OpenCV on the CPU
(VideoFileSource) and NVDEC (NvdecVideoSource, frames as CUDA tensors), each with 1..N sources read in threads.
Frames per second in all, and how far the GPU's frames are from the CPU's (decoders round YUV -> RGB differently).
Not a test: speed is measured, never asserted.

    python bench/decode_rates.py media/bbb720p30.mp4 --threads 1,4,8,16 --json out.json
"""

import argparse
import threading
import time
from typing import Any, Dict, List

import numpy as np

from common import machine, write_json  # also puts the repository on sys.path

from jetcam_app.config import SourceConfig
from jetcam_app.sources.spec import SourceSpec
from jetcam_app.sources.video_file import VideoFileSource


def make(kind: str, path: str, device: Any):
    config = SourceConfig(uri=path, decode=kind, decode_threads=0)
    if kind == "gpu":
        from jetcam_app.sources.nvdec import NvdecVideoSource

        return NvdecVideoSource(SourceSpec("file", path), config, device)
    return VideoFileSource(SourceSpec("file", path), config)


def rate(kind: str, path: str, threads: int, device: Any, max_frames: int) -> Dict[str, Any]:
    """Every source read to its end (or max_frames) in a thread of its own: frames/s over the whole window."""
    sources = [make(kind, path, device) for _ in range(threads)]
    for source in sources:
        source.open()
    counts = [0] * threads

    def read(k: int) -> None:
        while counts[k] < max_frames and sources[k].read() is not None:
            counts[k] += 1

    workers = [threading.Thread(target=read, args=(k,)) for k in range(threads)]
    start = time.perf_counter()
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    wall = time.perf_counter() - start
    decoded_on = sources[0].decoded_on
    for source in sources:
        source.close()
    return {"decoder": kind, "decoded_on": decoded_on, "threads": threads, "frames": sum(counts),
            "fps": round(sum(counts) / wall, 1)}


def difference(path: str, device: Any, frames: int) -> Dict[str, Any]:
    """The GPU's frames against the CPU's, frame by frame: the largest and mean absolute difference per pixel."""
    cpu, gpu = make("cpu", path, device), make("gpu", path, device)
    cpu.open()
    gpu.open()
    worst, means, n, indices = 0, [], 0, []
    while n < frames:
        a, b = cpu.read(), gpu.read()
        if a is None or b is None:
            break
        diff = np.abs(a.image.astype(np.int16) - b.image.astype(np.int16))
        worst, n = max(worst, int(diff.max())), n + 1
        means.append(float(diff.mean()))
        indices.append((a.index, b.index))
    cpu.close()
    gpu.close()
    return {"frames_compared": n, "max_abs": worst, "mean_abs": round(float(np.mean(means)), 3) if means else None,
            "p99_frame_mean_abs": round(float(np.percentile(means, 99)), 3) if means else None,
            "same_indices": all(i == j for i, j in indices), "gpu_decoded_on": gpu.decoded_on}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("video")
    p.add_argument("--threads", default="1,4,8,16")
    p.add_argument("--max-frames", type=int, default=1800, help="per source")
    p.add_argument("--compare-frames", type=int, default=300)
    p.add_argument("--json")
    args = p.parse_args()
    import torch

    device = torch.device("cuda", 0)
    rows = []  # type: List[Dict[str, Any]]
    print("machine: %s" % machine())
    diff = difference(args.video, device, args.compare_frames)
    print("GPU frames vs CPU frames: %s" % diff)
    for threads in [int(t) for t in args.threads.split(",")]:
        for kind in ("cpu", "gpu"):  # side by side at each N
            row = rate(kind, args.video, threads, device, args.max_frames)
            rows.append(row)
            print("%-3s x%-3d %8.1f fps (%d frames)" % (kind, threads, row["fps"], row["frames"]))
    if args.json:
        write_json({"machine": machine(), "video": args.video, "difference": diff, "rates": rows}, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
