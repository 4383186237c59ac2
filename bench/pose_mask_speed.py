"""Benchmark: the pose and mask cores (MoveNet Lightning / Thunder, BlazePose, Selfie) on the CPU backends side by side, one
process, the engines called in turn on the same real photo so a busy machine slows them alike. Engine time only
(the network; pre- and postprocessing are `run.py bench`'s). Not a test: speed is measured, never asserted.

    python bench/pose_mask_speed.py --threads 1 --repeats 40 --json out.json
"""

import argparse
import os
import tempfile
import time
from typing import Any, Dict, List

import numpy as np

from common import machine, write_json  # also puts the repository on sys.path

import torch  # noqa: E402

from jetcam_app.config import EngineConfig, load_config  # noqa: E402
from jetcam_app.inference.adapters.base import build_core, create_adapter  # noqa: E402
from jetcam_app.registry import BACKENDS  # noqa: E402

MODELS = ("movenet", "movenet_thunder", "blazepose", "selfie")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default=",".join(MODELS))
    p.add_argument("--backends", default="cpu,onnxruntime")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeats", type=int, default=40)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--json", default=None)
    args = p.parse_args()
    from skimage import data

    photo = np.ascontiguousarray(data.astronaut()[..., ::-1])
    figures = {"machine": machine(), "threads": args.threads, "batch": args.batch, "repeats": args.repeats,
               "load_average_start": os.getloadavg(), "models": {}}  # type: Dict[str, Any]
    cache = tempfile.mkdtemp(prefix="jetcam-bench-")
    for name in args.models.split(","):
        adapter = create_adapter(load_config(overrides={"model.name": name}).model)
        core = build_core(adapter)
        batch = torch.cat([adapter.preprocess(photo, torch.device("cpu"), torch.float32)] * args.batch)
        engines = {}
        for backend in args.backends.split(","):
            engine = BACKENDS.get(backend)(EngineConfig(backend=backend, cache_dir=cache, threads=args.threads))
            engine.load(core, batch, name)
            for _ in range(5):
                engine.infer(batch)
            engines[backend] = engine
        times = {b: [] for b in engines}  # type: Dict[str, List[float]]
        for _ in range(args.repeats):
            for backend, engine in engines.items():  # in turn: a load spike hits every backend
                start = time.perf_counter()
                engine.infer(batch)
                times[backend].append((time.perf_counter() - start) * 1000.0)
        figures["models"][name] = {b: {"p50_ms": float(np.percentile(t, 50)), "p90_ms": float(np.percentile(t, 90)),
                                       "min_ms": float(min(t))} for b, t in times.items()}
        print(name, " ".join("%s p50 %.1f ms (p90 %.1f, min %.1f)" % (b, v["p50_ms"], v["p90_ms"], v["min_ms"])
                             for b, v in figures["models"][name].items()))
    figures["load_average_end"] = os.getloadavg()
    print("load average: %s -> %s" % (figures["load_average_start"], figures["load_average_end"]))
    write_json(figures, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
