"""Benchmark: how a fixed-shape engine should take a batch of k frames from several sources, on ONNX Runtime.

Three ways, same model, same inputs: (1) k calls of the batch-1 graph; (2) the graph built for --max-batch frames,
padded (what the pipeline does for ONNX Runtime, TensorRT and --cuda-graph); (3) one graph with a dynamic batch
axis. Prints ms per call and per frame for k = 1..max-batch. Not a test: speed is measured, never asserted.

    python bench/batch_shapes.py --model nanodet --max-batch 4 --runs 20
"""

import argparse
import inspect
import os
import tempfile
import time
import warnings

import torch

from common import machine, write_json  # also puts the repository on sys.path

from jetcam_app.config import load_config  # noqa: E402
from jetcam_app.inference.adapters.base import build_core, create_adapter  # noqa: E402
from jetcam_app.inference.stages import batch_example  # noqa: E402
from jetcam_app.inference.engines.torch_engine import cpu_threads  # noqa: E402


def session(path: str, threads: int):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(path, sess_options=options, providers=["CPUExecutionProvider"])


def export(network, example, path, dynamic: bool) -> str:
    kwargs = dict(opset_version=17, do_constant_folding=True, input_names=["input"])
    if dynamic:
        kwargs["dynamic_axes"] = {"input": {0: "batch"}}
    if "dynamo" in inspect.signature(torch.onnx.export).parameters:
        kwargs["dynamo"] = False
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(network, (example,), path, **kwargs)
    return path


def ms_per_call(sess, x, runs: int) -> float:
    feed = {sess.get_inputs()[0].name: x.numpy()}
    sess.run(None, feed)
    start = time.perf_counter()
    for _ in range(runs):
        sess.run(None, feed)
    return (time.perf_counter() - start) * 1000.0 / runs


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="nanodet")
    p.add_argument("--random-weights", action="store_true")
    p.add_argument("--max-batch", type=int, default=4)
    p.add_argument("--runs", type=int, default=20)
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--json", help="write the figures here")
    args = p.parse_args()
    config = load_config(overrides={"model.name": args.model, "model.random_weights": args.random_weights})
    adapter = create_adapter(config.model)
    network = build_core(adapter).eval()
    threads = cpu_threads(args.threads)
    folder = tempfile.mkdtemp(prefix="batch_shapes_")
    one = session(export(network, batch_example(adapter, 1), os.path.join(folder, "b1.onnx"), False), threads)
    fixed = session(export(network, batch_example(adapter, args.max_batch), os.path.join(folder, "fixed.onnx"), False),
                    threads)
    dynamic = session(export(network, batch_example(adapter, 2), os.path.join(folder, "dyn.onnx"), True), threads)
    x1 = torch.randn(tuple(batch_example(adapter, 1).shape))
    single_ms = ms_per_call(one, x1, args.runs)
    rows = []
    print("%s, %s, ONNX Runtime CPU, %d threads" % (machine(), args.model, threads))
    print("k frames | k x batch-1 ms | padded to %d ms | dynamic ms | per frame: 1x1 / padded / dynamic" % args.max_batch)
    for k in range(1, args.max_batch + 1):
        padded_ms = ms_per_call(fixed, x1.repeat(args.max_batch, 1, 1, 1), args.runs)
        dynamic_ms = ms_per_call(dynamic, x1.repeat(k, 1, 1, 1), args.runs)
        rows.append({"k": k, "sequential_ms": k * single_ms, "padded_ms": padded_ms, "dynamic_ms": dynamic_ms})
        print("%8d | %14.1f | %13.1f | %10.1f | %.1f / %.1f / %.1f" % (
            k, k * single_ms, padded_ms, dynamic_ms, single_ms, padded_ms / k, dynamic_ms / k))
    write_json({"machine": machine(), "model": args.model, "threads": threads, "rows": rows}, args.json)


if __name__ == "__main__":
    main()
