"""What the bench scripts share: the repository on sys.path, the model and engine arguments, the app's config
overrides from them, the machine's description, and the figures written as JSON."""

import argparse
import json
import os
import sys
import threading
import time
from typing import Any, Callable, Dict, Optional

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def add_app_arguments(p: argparse.ArgumentParser, model: Optional[str] = None) -> None:
    """--model, --backend, --precision, --cuda-graph, --random-weights and --draw-threads, defaulting to the app's
    own defaults (configs/default.yaml) unless a script names its model."""
    from jetcam_app.config import EngineConfig, ModelConfig, PipelineConfig

    model_defaults, engine, pipeline = ModelConfig(), EngineConfig(), PipelineConfig()
    p.add_argument("--model", default=model or model_defaults.name, help="default: %(default)s")
    p.add_argument("--backend", default=engine.backend, help="default: %(default)s")
    p.add_argument("--precision", default=engine.precision, help="default: %(default)s")
    p.add_argument("--cuda-graph", dest="cuda_graph", action="store_true", default=pipeline.cuda_graph,
                   help="pipeline.cuda_graph: the fused CUDA graph where the backend allows it (default: %(default)s)")
    p.add_argument("--no-cuda-graph", dest="cuda_graph", action="store_false", help="the eager stages")
    p.add_argument("--random-weights", action="store_true", default=model_defaults.random_weights)
    p.add_argument("--draw-threads", type=int, default=pipeline.draw_threads,
                   help="pipeline.draw_threads (-1 = automatic; default: %(default)s)")


def app_overrides(args: argparse.Namespace, source: str, **extra: Any) -> Dict[str, Any]:
    """Config overrides for the app from add_app_arguments' arguments, the source and any `extra` keys."""
    overrides = {"source.uri": source, "model.name": args.model, "engine.backend": args.backend,
                 "engine.precision": args.precision, "pipeline.cuda_graph": args.cuda_graph,
                 "model.random_weights": args.random_weights, "pipeline.draw_threads": args.draw_threads}
    overrides.update(extra)
    return overrides


def write_json(figures: Dict[str, Any], path: Optional[str]) -> None:
    if path:
        with open(path, "w") as f:
            json.dump(figures, f, indent=2)


def machine() -> str:
    import torch

    from jetcam_app.bench.environment import cpu_name

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return "%s, %d CPU cores, %s, torch %s" % (cpu_name(), os.cpu_count() or 0, gpu, torch.__version__)


def timed(call: Callable, totals: Dict[str, float], key: str, thread_id: Optional[int] = None) -> Callable:
    """`call`, adding the seconds each call takes to totals[key] (only calls made by thread_id, if given)."""
    def wrapper(*args, **kwargs):
        if thread_id is not None and threading.get_ident() != thread_id:
            return call(*args, **kwargs)
        start = time.perf_counter()
        try:
            return call(*args, **kwargs)
        finally:
            totals[key] += time.perf_counter() - start
    return wrapper
