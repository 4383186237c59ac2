"""Command line: argparse -> config overrides -> the pipeline, doctor or bench; JetcamError -> one line, exit 2."""
from __future__ import annotations

import argparse
import logging
import signal
import sys
from typing import Any, Dict, List, Optional

from .config import PRECISIONS
from .errors import JetcamError
from .registry import BACKENDS, MODELS

# flag dest -> config key; only flags the user gave become overrides, so YAML values survive otherwise.
OVERRIDES = {
    "source": "source.uri", "pace": "source.pace", "width": "source.width", "height": "source.height",
    "fps": "source.fps", "flip": "source.flip", "timeout": "source.timeout_s", "capture": "source.capture",
    "gst": "source.gst", "reconnect_attempts": "source.reconnect_attempts",
    "model": "model.name", "weights": "model.weights", "random_weights": "model.random_weights",
    "score_threshold": "model.score_threshold", "iou_threshold": "model.iou_threshold", "topk": "model.topk",
    "backend": "engine.backend", "precision": "engine.precision", "threads": "engine.threads",
    "cuda_graph": "pipeline.cuda_graph", "trt_workspace_mb": "engine.trt_workspace_mb",
    "cache_dir": "engine.cache_dir", "triton_url": "engine.triton_url", "triton_model": "engine.triton_model",
    "triton_timeout": "engine.triton_timeout_s",
    "max_frames": "pipeline.max_frames", "queue_size": "pipeline.queue_size", "target_fps": "pipeline.target_fps",
    "out": "output.out_dir", "record": "output.record", "headless": "output.headless",
    "save_input": "output.save_input", "http": "output.http_port", "overlay": "overlay.enabled", "hud": "overlay.hud",
    "mosaic": "output.mosaic", "max_batch": "pipeline.max_batch",
}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="run.py", description="Real-time camera inference with honest numbers. "
        "Subcommands: `run.py doctor` checks cameras and backends, `run.py bench` compares backends.")
    p.add_argument("--config", help="a YAML file overriding the defaults (jetcam_app/configs/default.yaml)")
    p.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")
    s = p.add_argument_group("source")
    s.add_argument("--source", action="append", help="csi://0, usb:0, /dev/video0, rtsp://..., a video, an image, "
                   "a folder, test://640x480@30, or 'sample' (default); give it several times for several sources")
    s.add_argument("--pace", action="store_true", default=None, help="replay a file at its frame rate, like a camera")
    s.add_argument("--width", type=int)
    s.add_argument("--height", type=int)
    s.add_argument("--fps", type=float, help="camera / test:// frame rate")
    s.add_argument("--flip", type=int, help="CSI flip-method 0-7")
    s.add_argument("--timeout", type=float, help="seconds to wait for a live source's first frame")
    s.add_argument("--reconnect-attempts", type=int)
    s.add_argument("--capture", choices=["auto", "opencv", "gobject"], help="how GStreamer pipelines run")
    s.add_argument("--gst", help="a GStreamer pipeline of your own, ending in an appsink")
    m = p.add_argument_group("model")
    m.add_argument("--model", help="one of: %s" % ", ".join(MODELS.choices()))
    m.add_argument("--weights", help="weights file (also looked up in models/)")
    m.add_argument("--random-weights", action="store_true", default=None, help="random weights: timing only")
    m.add_argument("--score-threshold", type=float)
    m.add_argument("--iou-threshold", type=float)
    m.add_argument("--topk", type=int)
    e = p.add_argument_group("engine")
    e.add_argument("--backend", help="one of: %s" % ", ".join(BACKENDS.choices()))
    e.add_argument("--precision", help="one of: %s" % ", ".join(PRECISIONS))
    e.add_argument("--threads", type=int, help="CPU threads (0 = one per core)")
    e.add_argument("--cuda-graph", dest="cuda_graph", action="store_true", default=None,
                   help="--backend cuda: run the whole frame (resize, network, box decoding, NMS) as one captured "
                   "CUDA graph, a recording of the GPU work replayed per frame; on by default where the model allows it")
    e.add_argument("--no-cuda-graph", dest="cuda_graph", action="store_false",
                   help="run the stages eagerly, one GPU call per operation (slower; for comparison)")
    e.add_argument("--trt-workspace-mb", type=int, help="TensorRT builder workspace limit")
    e.add_argument("--cache-dir", help="where built engines are cached")
    e.add_argument("--triton-url", help="--backend triton: grpc://host:8001 (default grpc://127.0.0.1:8001) or http://host:8000")
    e.add_argument("--triton-model", help="--backend triton: the model's name on the server (default: export-triton's)")
    e.add_argument("--triton-timeout", type=float, help="--backend triton: seconds per request before the frame is dropped")
    r = p.add_argument_group("run and output")
    r.add_argument("--max-frames", type=int, help="stop after N processed frames")
    r.add_argument("--queue-size", type=int)
    r.add_argument("--max-batch", type=int, help="several sources: most frames run as one batch (0 = one per source)")
    r.add_argument("--target-fps", type=float, help="frame rate the real-time verdict is judged against")
    r.add_argument("--out", help="folder for timing.csv, predictions.jsonl, summary.json")
    r.add_argument("--record", help="write the annotated video here (.mp4)")
    r.add_argument("--mosaic", action="store_true", default=None,
                   help="several sources: --record writes one mosaic video, not one file per source")
    r.add_argument("--save-input", help="write the raw captured frames here (.mp4) with a timestamp sidecar")
    r.add_argument("--http", type=int, metavar="PORT", help="stream MJPEG on http://127.0.0.1:PORT/")
    r.add_argument("--headless", dest="headless", action="store_true", default=None, help="no window")
    r.add_argument("--display", dest="headless", action="store_false", help="force a window")
    r.add_argument("--no-overlay", dest="overlay", action="store_false", default=None, help="draw nothing")
    r.add_argument("--no-hud", dest="hud", action="store_false", default=None, help="no HUD text")
    return p


def overrides_from(args: argparse.Namespace) -> Dict[str, object]:
    overrides = {key: getattr(args, dest) for dest, key in OVERRIDES.items() if getattr(args, dest, None) is not None}
    uris = overrides.pop("source.uri", None)  # a list: --source may be given several times
    if uris is not None and len(uris) == 1:
        overrides["source.uri"] = uris[0]
    elif uris is not None:
        overrides["sources"] = list(uris)
    return overrides


def _setup_logging(debug: bool) -> None:
    logging.basicConfig(level=logging.DEBUG if debug else logging.INFO, format="%(levelname)s %(name)s: %(message)s",
                        stream=sys.stderr)


def run_main(argv: List[str]) -> int:
    from .config import load_config
    from .pipeline import Pipeline
    from .verdict import format_summary

    args = build_parser().parse_args(argv)
    _setup_logging(args.debug)
    try:
        config = load_config(args.config, overrides_from(args))
        if len(config.sources) > 1:
            from .multi_source import MultiSourcePipeline  # several sources: their own wiring, one engine

            pipeline = MultiSourcePipeline(config)  # type: Any
        else:
            pipeline = Pipeline(config)
        previous = {}
        for signum, name in ((signal.SIGINT, "SIGINT"), (signal.SIGTERM, "SIGTERM")):
            previous[signum] = signal.signal(signum, lambda *_, n=name: pipeline.request_stop(n))
        try:
            summary = pipeline.run()
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
        print(format_summary(summary))
        return 0
    except JetcamError as e:
        if args.debug:
            logging.exception("details")
        print("error: %s" % e, file=sys.stderr)
        return e.exit_code


def main(argv: Optional[List[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = argv[0] if argv and not argv[0].startswith("-") else "run"
    if command == "doctor":
        from .doctor import doctor_main

        return doctor_main(argv[1:])
    if command == "bench":
        from .bench.command import bench_main

        return bench_main(argv[1:])
    if command == "export-triton":
        from .triton.export import export_main

        return export_main(argv[1:])
    if command == "run":
        return run_main(argv[1:] if argv and argv[0] == "run" else argv)
    print("error: unknown command '%s'; use run (default), doctor, bench or export-triton" % command, file=sys.stderr)
    return 2


def entry_point() -> None:
    raise SystemExit(main())
