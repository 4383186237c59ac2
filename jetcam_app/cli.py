"""Command line: argparse -> config overrides -> the pipeline, doctor or bench; JetcamError -> one line, exit 2."""
from __future__ import annotations

import argparse
import logging
import sys
from typing import Dict, List, Optional

from .config import PRECISIONS
from .errors import JetcamError
from .registry import BACKENDS, MODELS
from .signals import on_stop_signals

# flag dest -> config key; only flags the user gave become overrides, so YAML values survive otherwise.
OVERRIDES = {
    "source": "source.uri", "pace": "source.pace", "width": "source.width", "height": "source.height",
    "fps": "source.fps", "flip": "source.flip", "timeout": "source.timeout_s", "capture": "source.capture",
    "gst": "source.gst", "reconnect_attempts": "source.reconnect_attempts",
    "model": "model.name", "weights": "model.weights", "random_weights": "model.random_weights",
    "score_threshold": "model.score_threshold", "iou_threshold": "model.iou_threshold", "topk": "model.topk",
    "backend": "engine.backend", "precision": "engine.precision", "threads": "engine.threads",
    "cuda_graph": "engine.cuda_graph", "trt_workspace_mb": "engine.trt_workspace_mb",
    "cache_dir": "engine.cache_dir",
    "max_frames": "pipeline.max_frames", "queue_size": "pipeline.queue_size", "target_fps": "pipeline.target_fps",
    "out": "output.out_dir", "record": "output.record", "headless": "output.headless",
    "save_input": "output.save_input", "http": "output.http_port", "overlay": "overlay.enabled", "hud": "overlay.hud",
}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="run.py", description="Real-time camera inference with honest numbers. "
        "Subcommands: `run.py doctor` checks cameras and backends, `run.py bench` compares backends.")
    p.add_argument("--config", help="a YAML file overriding the defaults (jetcam_app/configs/default.yaml)")
    p.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")
    s = p.add_argument_group("source")
    s.add_argument("--source", help="csi://0, usb:0, /dev/video0, rtsp://..., a video, an image, a folder, "
                   "test://640x480@30, or 'sample' (default)")
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
    e.add_argument("--cuda-graph", action="store_true", default=None, help="replay the model as a CUDA graph")
    e.add_argument("--trt-workspace-mb", type=int, help="TensorRT builder workspace limit")
    e.add_argument("--cache-dir", help="where built engines are cached")
    r = p.add_argument_group("run and output")
    r.add_argument("--max-frames", type=int, help="stop after N processed frames")
    r.add_argument("--queue-size", type=int)
    r.add_argument("--target-fps", type=float, help="frame rate the real-time verdict is judged against")
    r.add_argument("--out", help="folder for timing.csv, predictions.jsonl, summary.json")
    r.add_argument("--record", help="write the annotated video here (.mp4)")
    r.add_argument("--save-input", help="write the raw captured frames here (.mp4) with a timestamp sidecar")
    r.add_argument("--http", type=int, metavar="PORT", help="stream MJPEG on http://127.0.0.1:PORT/")
    r.add_argument("--headless", dest="headless", action="store_true", default=None, help="no window")
    r.add_argument("--display", dest="headless", action="store_false", help="force a window")
    r.add_argument("--no-overlay", dest="overlay", action="store_false", default=None, help="draw nothing")
    r.add_argument("--no-hud", dest="hud", action="store_false", default=None, help="no HUD text")
    return p


def overrides_from(args: argparse.Namespace) -> Dict[str, object]:
    return {key: getattr(args, dest) for dest, key in OVERRIDES.items() if getattr(args, dest, None) is not None}


def _setup_logging(debug: bool) -> None:
    logging.basicConfig(level=logging.DEBUG if debug else logging.INFO, format="%(levelname)s %(name)s: %(message)s",
                        stream=sys.stderr)


def run_main(argv: List[str]) -> int:
    from .config import load_config
    from .output.paths import check_output_paths
    from .pipeline import Pipeline
    from .verdict import format_summary

    args = build_parser().parse_args(argv)
    _setup_logging(args.debug)
    try:
        config = load_config(args.config, overrides_from(args))
        check_output_paths(config, args.config)
        pipeline = Pipeline(config)
        with on_stop_signals(pipeline.request_stop):  # SIGHUP too: a closed SSH session or terminal
            summary = pipeline.run()
        print(format_summary(summary))
        return 0
    except JetcamError as e:
        if args.debug:
            logging.exception("details")
        print("error: %s" % e, file=sys.stderr)
        return e.exit_code
    except (OSError, ValueError) as e:
        # The last line of defence for user input (a file, a value) that no check caught: one line, exit 2;
        # --debug shows the traceback, since a bug may hide here too.
        if args.debug:
            raise
        print("error: %s: %s (--debug for the traceback)" % (type(e).__name__, str(e).splitlines()[0] if str(e)
                                                              else ""), file=sys.stderr)
        return 2


def main(argv: Optional[List[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = argv[0] if argv and not argv[0].startswith("-") else "run"
    if command == "doctor":
        from .doctor import doctor_main

        return doctor_main(argv[1:])
    if command == "bench":
        from .bench.command import bench_main

        return bench_main(argv[1:])
    if command == "run":
        return run_main(argv[1:] if argv and argv[0] == "run" else argv)
    print("error: unknown command '%s'; use run (default), doctor or bench" % command, file=sys.stderr)
    return 2


def entry_point() -> None:
    raise SystemExit(main())
