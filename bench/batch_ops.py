"""Benchmark: torch operations in one fused batch graph's body, each frame's steps run per frame against batched.

    python bench/batch_ops.py [--model nanodet] [--batch 8] [--size 1280x720]

The fused batch graph replays what batch_body() records. Each operation is at least one kernel, and small kernels
cost the GPU a few microseconds each however little they compute, so their number bounds how fast a batch can run.
This counts the top-level aten operations of batch_body() on the CPU (views included, which launch nothing), for a
detector (NanoDet's weights, torchvision's SSDs with random ones) with its steps per frame (adapter.batched_static
off) and batched. Nothing is asserted.
"""

import argparse
import os
import sys

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [ROOT, os.path.join(ROOT, "tests"), os.path.join(ROOT, "tests", "multi")]

from jetcam_app.config import EngineConfig, load_config  # noqa: E402
from jetcam_app.inference.adapters.base import build_core, create_adapter  # noqa: E402
from jetcam_app.inference.stages import batch_example  # noqa: E402
from jetcam_app.inference.engines.base import create_engine  # noqa: E402
from jetcam_app.inference.graph_parts import batch_body  # noqa: E402
from test_batch_stages import nanodet  # noqa: E402


def count_ops(adapter, engine, frames: torch.Tensor) -> int:
    from torch.profiler import ProfilerActivity, profile

    hw = (int(frames.shape[1]), int(frames.shape[2]))
    with torch.inference_mode():
        batch_body(adapter, engine.infer, torch.float32, frames, frames.shape[0], hw)  # warm-up
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            batch_body(adapter, engine.infer, torch.float32, frames, frames.shape[0], hw)
    return sum(1 for e in prof.events() if e.name.startswith("aten::")
               and (e.cpu_parent is None or not e.cpu_parent.name.startswith("aten::")))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="nanodet", help="nanodet, ssd300_vgg16 or ssdlite320_mobilenet_v3_large")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--size", default="1280x720", help="frame size WxH")
    args = p.parse_args()
    width, height = (int(v) for v in args.size.lower().split("x"))
    if args.model == "nanodet":
        adapter = nanodet()
    else:
        config = load_config(None, {"model.name": args.model, "model.random_weights": True})
        adapter = create_adapter(config.model)
    engine = create_engine(EngineConfig(backend="cpu", threads=1))
    engine.load(build_core(adapter), batch_example(adapter, args.batch), adapter.name)
    frames = torch.randint(0, 255, (args.batch, height, width, 3), dtype=torch.uint8)
    for batched in (False, True):
        adapter.batched_static = batched
        print("%s, batch of %d %s frames, steps %s: %d torch operations" % (
            args.model, args.batch, args.size, "batched" if batched else "per frame", count_ops(adapter, engine, frames)))


if __name__ == "__main__":
    main()
