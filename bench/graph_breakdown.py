"""GPU time of the fused graph's parts on one frame size: preprocessing, + network, + postprocessing (static NMS).

    python bench/graph_breakdown.py --model ssd300_vgg16 --random-weights --precision fp16

Each part is captured in a CUDA graph of its own and replayed; times are CUDA-event means. Also lists the
heaviest kernels of the whole body (torch.profiler). Not a test: measured, never asserted.
"""

import argparse
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from jetcam_app.inference.adapters.base import build_core, create_adapter  # noqa: E402
from jetcam_app.config import ModelConfig, load_config  # noqa: E402
from jetcam_app.inference.engines.base import create_engine  # noqa: E402


def graph_ms(body, iterations: int = 300) -> float:
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for _ in range(3):
            body()
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        body()
    for _ in range(10):
        graph.replay()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(iterations):
        graph.replay()
    end.record()
    end.synchronize()
    return start.elapsed_time(end) / iterations


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default=ModelConfig().name)
    p.add_argument("--random-weights", action="store_true", default=ModelConfig().random_weights)
    p.add_argument("--precision", default="fp16")
    p.add_argument("--size", default="1280x720")
    args = p.parse_args()
    w, h = (int(v) for v in args.size.split("x"))
    config = load_config(None, {"model.name": args.model, "model.random_weights": args.random_weights,
                                "engine.backend": "cuda", "engine.precision": args.precision})
    adapter = create_adapter(config.model)
    engine = create_engine(config.engine)
    engine.load(build_core(adapter), adapter.example_input(), args.model)
    frame = torch.randint(0, 255, (h, w, 3), dtype=torch.uint8, device="cuda")
    dtype = engine.input_dtype
    with torch.inference_mode():
        batch = adapter.prepare_tensor(frame, dtype)
        outputs = engine.forward(batch)
        parts = {
            "preprocess": lambda: adapter.prepare_tensor(frame, dtype),
            "network": lambda: engine.forward(batch),
            "postprocess": lambda: adapter.static_postprocess(outputs, (h, w)),
            "all": lambda: adapter.static_postprocess(engine.forward(adapter.prepare_tensor(frame, dtype)), (h, w)),
        }
        print("%s %s %s, %s" % (torch.cuda.get_device_name(0), args.model, args.precision, args.size))
        for name, body in parts.items():
            print("  %-12s %.3f ms" % (name, graph_ms(body)))
        from torch.profiler import ProfilerActivity, profile

        with profile(activities=[ProfilerActivity.CUDA]) as prof:
            for _ in range(20):
                parts["postprocess"]()
            torch.cuda.synchronize()
        print(prof.key_averages().table(sort_by="cuda_time_total", row_limit=15, max_name_column_width=60))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
