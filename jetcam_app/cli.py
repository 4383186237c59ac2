"""Command line: argparse -> config overrides -> the pipeline, doctor or bench; JetcamError -> one line, exit 2."""

import argparse
import logging
import os
import sys
from typing import Dict, List, Optional

from .config import PRECISIONS
from .errors import JetcamError, mask_secrets
from .registry import BACKENDS, MODELS

# flag dest -> config key; only flags the user gave become overrides, so YAML values survive otherwise.
OVERRIDES = {
    "source": "source.uri", "pace": "source.pace", "width": "source.width", "height": "source.height",
    "fps": "source.fps", "flip": "source.flip", "timeout": "source.timeout_s", "capture": "source.capture",
    "gst": "source.gst", "reconnect_attempts": "source.reconnect_attempts", "decode_threads": "source.decode_threads",
    "decode": "source.decode",
    "model": "model.name", "weights": "model.weights", "random_weights": "model.random_weights",
    "score_threshold": "model.score_threshold", "iou_threshold": "model.iou_threshold", "topk": "model.topk",
    "backend": "engine.backend", "precision": "engine.precision", "threads": "engine.threads",
    "cuda_graph": "pipeline.cuda_graph", "trt_workspace_mb": "engine.trt_workspace_mb",
    "cache_dir": "engine.cache_dir", "triton_url": "engine.triton_url", "triton_model": "engine.triton_model",
    "triton_timeout": "engine.triton_timeout_s", "triton_shm": "engine.triton_shm",
    "max_frames": "pipeline.max_frames", "queue_size": "pipeline.queue_size", "target_fps": "pipeline.target_fps",
    "out": "output.out_dir", "record": "output.record", "headless": "output.headless",
    "save_input": "output.save_input", "http": "output.http_port", "overlay": "overlay.enabled", "hud": "overlay.hud",
    "mosaic": "output.mosaic", "max_batch": "pipeline.max_batch",
    "name": "output.name", "exist_ok": "output.exist_ok", "save": "output.save", "http_host": "output.http_host",
    "http_token": "output.http_token", "http_token_file": "output.http_token_file",
    "track": "tracker.enabled", "line": "source.lines", "zone": "source.zones", "webhook": "output.webhooks",
    "tracker_workers": "tracker.workers", "imgsz": "model.imgsz", "bitrate": "output.bitrate", "record_segment_s": "output.record_segment_s",
    "rtsp_out": "output.rtsp_out", "rtsp_push": "output.rtsp_push", "decoder": "model.decoder", "labels": "model.labels",
    "save_masks": "output.save_masks",
}


def add_defaults_to_help(parser: argparse.ArgumentParser, overrides: Dict[str, str]) -> None:
    """Append "(default: X)" to each flag's help, X read from the packaged defaults (flags default to None so a
    --config file's values survive; the default shown is the one a run without the flag gets)."""
    from .config import load_config, to_dict

    try:
        defaults = to_dict(load_config())
    except JetcamError:  # a broken packaged default.yaml: help still works, without the defaults
        return
    for action in parser._actions:
        key = overrides.get(action.dest)
        if key is None or action.help in (None, argparse.SUPPRESS) or "default:" in action.help:
            continue
        section, _, name = key.partition(".")
        value = defaults[section][name]
        if isinstance(action, argparse._StoreConstAction):  # a switch: on when the default is what it sets
            action.help += " (default: %s)" % ("on" if value == action.const else "off")
            continue
        shown = "none" if value is None or value in ((), []) else value
        action.help += " (default: %s)" % (shown,)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="run.py", description="Real-time camera inference with honest numbers. "
        "Subcommands: `run.py doctor` checks cameras and backends, `run.py bench` compares backends.")
    p.add_argument("--config", help="a YAML file overriding the defaults (jetcam_app/configs/default.yaml; "
                   "default: none)")
    p.add_argument("--debug", action="store_true", help="show tracebacks and debug logs (default: off)")
    p.add_argument("--check", action="store_true",
                   help="validate the configuration (--config and flags) and print what it would run: sources, model, "
                   "backend, outputs, and what this machine lacks for it; opens no camera, loads no model, writes "
                   "nothing; exit 0 = valid, 2 = invalid (default: off)")
    s = p.add_argument_group("source")
    s.add_argument("--source", action="append", help="csi://0, usb:0, /dev/video0, rtsp://..., a video, an image, "
                   "a folder, test://640x480@30, or 'sample' (the bundled video); give it several times for several "
                   "sources")
    s.add_argument("--pace", action="store_true", default=None,
                   help="replay a file at its frame rate, dropping what a slow model misses, like a camera "
                   "(without it, files are replayed losslessly: every frame, in order)")
    s.add_argument("--width", type=int, help="capture width in pixels, for cameras and test://")
    s.add_argument("--height", type=int, help="capture height in pixels, for cameras and test://")
    s.add_argument("--fps", type=float, help="camera / test:// frame rate")
    s.add_argument("--flip", type=int, help="CSI flip-method 0-7 (2 = rotate 180 degrees)")
    s.add_argument("--timeout", type=float, help="seconds to wait for a live source's first frame")
    s.add_argument("--reconnect-attempts", type=int,
                   help="live sources: reconnects after a disconnect before the run stops")
    s.add_argument("--decode-threads", type=int, help="video files: decoder threads per source, 0 = OpenCV's "
                   "choice (one per core); 1-2 when many sources share few cores")
    s.add_argument("--decode", choices=["auto", "gpu", "cpu"], help="video files: decode on the GPU's NVDEC "
                   "(PyNvVideoCodec; frames stay on the device) or the CPU; on a Jetson, NVMM camera frames go to "
                   "CUDA without the CPU's videoconvert; auto = the GPU where it can")
    s.add_argument("--capture", choices=["auto", "opencv", "gobject"], help="how GStreamer pipelines run")
    s.add_argument("--gst", help="a GStreamer pipeline of your own, ending in an appsink")
    m = p.add_argument_group("model")
    m.add_argument("--model", help="one of: %s; or PATH.onnx, your own detector or classifier (YOLOv8 / YOLO11, "
                   "YOLOv5 / YOLOv7, [B, C] classifiers)" % ", ".join(MODELS.choices()))
    m.add_argument("--imgsz", help="PATH.onnx with a dynamic input: the network's input size, 640 or 480,640 (h,w)")
    m.add_argument("--decoder", choices=["auto", "yolov8", "yolov5", "end2end", "classify"],
                   help="PATH.onnx: how its output is read; auto picks from the output shapes")
    m.add_argument("--labels", help="PATH.onnx: class names, one per line (or YAML / JSON with names)")
    m.add_argument("--weights", help="weights file (also looked up in models/); none = the model's default weights")
    m.add_argument("--random-weights", action="store_true", default=None,
                   help="random weights: for timing only, the overlay says so")
    m.add_argument("--score-threshold", type=float, help="detections scoring below this (0-1) are dropped")
    m.add_argument("--iou-threshold", type=float,
                   help="non-maximum suppression: boxes of a class overlapping more than this (0-1) are merged")
    m.add_argument("--topk", type=int, help="classifiers: how many best classes are shown and logged")
    e = p.add_argument_group("engine")
    e.add_argument("--backend", help="one of: %s" % ", ".join(BACKENDS.choices()))
    e.add_argument("--precision", help="one of: %s (fp16 needs a GPU backend)" % ", ".join(PRECISIONS))
    e.add_argument("--threads", type=int, help="CPU threads (0 = one per core)")
    e.add_argument("--cuda-graph", dest="cuda_graph", action="store_true", default=None,
                   help="--backend cuda: run the whole frame (resize, network, box decoding, NMS) as one CUDA graph "
                   "(recorded once, launched per frame in one call: far less CPU overhead); on where the model allows it")
    e.add_argument("--no-cuda-graph", dest="cuda_graph", action="store_false",
                   help="run the stages eagerly, one GPU call per operation (slower; for comparison)")
    e.add_argument("--trt-workspace-mb", type=int,
                   help="TensorRT builder scratch memory limit in MB (keep <= 1024 on a 4 GB Jetson Nano)")
    e.add_argument("--cache-dir", help="where built engines (TensorRT, ONNX) are cached")
    e.add_argument("--triton-url", help="--backend triton: grpc://host:8001 or http://host:8000")
    e.add_argument("--triton-model", help="--backend triton: the model's name on the server (none = export-triton's)")
    e.add_argument("--triton-timeout", type=float, help="--backend triton: seconds per request before the frame is dropped")
    e.add_argument("--triton-shm", choices=("none", "system", "cuda"), help="--backend triton, server on this machine: "
                   "the tensors through system or CUDA shared memory instead of the socket (falls back with a note)")
    r = p.add_argument_group("run and output")
    r.add_argument("--max-frames", type=int, help="stop after N processed frames (0 = the whole source)")
    r.add_argument("--queue-size", type=int,
                   help="frames buffered between capture and inference during lossless replay (a file read "
                   "completely, in order, however slow the model)")
    r.add_argument("--max-batch", type=int, help="several sources: most frames run as one batch (0 = one per source)")
    r.add_argument("--target-fps", type=float,
                   help="frame rate the real-time verdict is judged against (0 = the source's fps)")
    r.add_argument("--out", help="the run folder for timing.csv, predictions.jsonl, summary.json, used as given; "
                   "none = a new runs/NAME, runs/NAME2, ...")
    r.add_argument("--name", help="the run folder's name under runs/ when --out is not given")
    r.add_argument("--exist-ok", action="store_true", default=None,
                   help="reuse runs/NAME instead of numbering a new folder")
    r.add_argument("--save", dest="save", action="store_true", default=None,
                   help="save annotated results in the run folder: images under their own names, a video as "
                   "annotated.mp4 (default: images yes, videos no)")
    r.add_argument("--no-save", dest="save", action="store_false", help="save no annotated images or video")
    r.add_argument("--save-masks", action="store_true", default=None,
                   help="segmentation models: each frame's mask as a PNG in the run folder's masks/")
    r.add_argument("--record", help="write the annotated video to this .mp4 file")
    r.add_argument("--mosaic", action="store_true", default=None,
                   help="several sources: --record writes one mosaic video, not one file per source")
    r.add_argument("--save-input", help="write the raw captured frames to this .mp4 with a timestamp sidecar")
    r.add_argument("--bitrate", help="--record / --save-input: H.264 bits per second, e.g. 4M or 800k (PyAV)")
    r.add_argument("--rtsp-out", type=int, metavar="PORT", help="serve the annotated H.264 video over RTSP: "
                   "rtsp://HOST:PORT/live (one source), /NAME (each of several); HOST follows --http-host")
    r.add_argument("--rtsp-push", metavar="URL", help="push the annotated H.264 video to an RTSP server you run "
                   "(MediaMTX, go2rtc), e.g. rtsp://127.0.0.1:8554/jetcam")
    r.add_argument("--record-segment-s", type=float, help="split recordings into NAME_0001.mp4, ... of this many "
                   "seconds: a damaged tail costs at most one segment")
    r.add_argument("--http", type=int, metavar="PORT",
                   help="serve a live web page on http://HOST:PORT/ (video, fps, stage times, memory, verdict; "
                   "also /stream.mjpg, MJPEG: video as a stream of JPEG images, /snapshot.jpg, /stats.json); 0 = off")
    r.add_argument("--http-host", help="the address the web page listens on (0.0.0.0 = every interface: "
                   "logs a warning)")
    r.add_argument("--http-token", help="require this token on every web request (?token=... in the address); "
                   "prefer $JETCAM_HTTP_TOKEN or --http-token-file: a flag's value shows to every user in ps")
    r.add_argument("--http-token-file", metavar="PATH", help="read the web page's token from the first line of this "
                   "file (preferred over --http-token, which shows in ps; so is $JETCAM_HTTP_TOKEN)")
    r.add_argument("--headless", dest="headless", action="store_true", default=None,
                   help="no window (default: a window only when a display exists)")
    r.add_argument("--display", dest="headless", action="store_false", help="force a window (default: off)")
    r.add_argument("--no-overlay", dest="overlay", action="store_false", default=None,
                   help="draw nothing on the frames (default: boxes, labels and the HUD are drawn)")
    r.add_argument("--no-hud", dest="hud", action="store_false", default=None,
                   help="no HUD (heads-up display: the rate, stage times, memory and real-time verdict drawn in a "
                   "corner of the frame; default: shown)")
    t = p.add_argument_group("tracks, lines and zones (events.jsonl; summary.json's lines and zones)")
    t.add_argument("--track", action="store_true", default=None,
                   help="track objects (ByteTrack; the tracker: section of the config): IDs in the labels and in "
                   "predictions.jsonl's track_ids; --line and --zone turn it on by themselves")
    t.add_argument("--line", action="append", metavar="NAME:X1,Y1,X2,Y2",
                   help="count tracks crossing the segment from (X1,Y1) to (X2,Y2), per class and direction; "
                   "pixels, or fractions of the frame when all four are <= 1; 'in' is A->B turned a quarter turn "
                   "counter-clockwise (a line drawn top to bottom counts left-to-right as in); repeatable; every "
                   "source without lines of its own gets these")
    t.add_argument("--tracker-workers", type=int, metavar="N",
                   help="processes that track the sources (their trackers' Python then holds no GIL of the app's): "
                   "0 = in the app's process, -1 = automatic (from 32 tracked sources on 8+ cores)")
    t.add_argument("--zone", action="append", metavar="NAME:X1,Y1,X2,Y2,X3,Y3[,...]",
                   help="a polygon zone: occupancy, entries, exits and dwell time per class; repeatable")
    n = p.add_argument_group("events to other systems (MQTT, webhooks; docs/events.md)")
    n.add_argument("--mqtt", metavar="mqtt://[user@]host:1883[/prefix]",
                   help="publish events, counts, occupancy and stats to this MQTT broker (mqtts:// for TLS; the "
                   "password from $JETCAM_MQTT_PASSWORD or output.mqtt.password_file, never here; prefix default "
                   "jetcam) (default: off)")
    n.add_argument("--mqtt-snapshots", action="store_true", default=None,
                   help="also publish each source's annotated JPEG of its latest event (retained) (default: off)")
    n.add_argument("--mqtt-discovery", action="store_true", default=None,
                   help="also publish Home Assistant discovery configs (sensors for counts and occupancy, events for "
                   "crossings), again whenever Home Assistant comes online (default: off)")
    n.add_argument("--webhook", action="append", metavar="URL",
                   help="POST each event's JSON to this URL, retried with backoff; repeatable (headers and event "
                   "types: output.webhooks in the config)")
    add_defaults_to_help(p, OVERRIDES)
    return p


def overrides_from(args: argparse.Namespace) -> Dict[str, object]:
    overrides = {key: getattr(args, dest) for dest, key in OVERRIDES.items() if getattr(args, dest, None) is not None}
    uris = overrides.pop("source.uri", None)  # a list: --source may be given several times
    if uris is not None and len(uris) == 1:
        overrides["source.uri"] = uris[0]
    elif uris is not None:
        overrides["sources"] = list(uris)
    mqtt = {k: v for k, v in (("url", getattr(args, "mqtt", None)), ("snapshots", getattr(args, "mqtt_snapshots", None)),
                              ("discovery", getattr(args, "mqtt_discovery", None))) if v is not None}
    if mqtt:  # over the config file's output.mqtt, key by key
        overrides["output.mqtt"] = mqtt
    return overrides


class _MaskingFormatter(logging.Formatter):
    """The last guard on stderr: a URL password or ?token= value that some message still carries is masked."""

    def format(self, record: logging.LogRecord) -> str:
        return mask_secrets(super().format(record))


def _setup_logging(debug: bool) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_MaskingFormatter("%(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=logging.DEBUG if debug else logging.INFO, handlers=[handler])


def run_main(argv: List[str]) -> int:
    from .config import load_config
    from .output.http_server import with_resolved_token
    from .output.paths import check_output_paths
    from .errors import on_stop_signals
    from .pipeline import Pipeline
    from .verdict import format_summary

    args = build_parser().parse_args(argv)
    _setup_logging(args.debug)
    try:
        config = with_resolved_token(load_config(args.config, overrides_from(args)), os.environ)
        check_output_paths(config, args.config)
        if args.check:
            from .doctor.check import check_config

            return check_config(config, args.config)
        pipeline = Pipeline(config)  # one source or several: one lifecycle
        with on_stop_signals(pipeline.request_stop):  # SIGHUP too: a closed SSH session or terminal
            summary = pipeline.run()
        print(format_summary(summary))
        print("results: %s" % pipeline.out_dir)
        return 0
    except JetcamError as e:
        if args.debug:
            logging.exception("details")
        print("error: %s" % mask_secrets(str(e)), file=sys.stderr)
        return e.exit_code
    except (OSError, ValueError) as e:
        # The last line of defence for user input (a file, a value) that no check caught: one line, exit 2;
        # --debug shows the traceback, since a bug may hide here too.
        if args.debug:
            raise
        print("error: %s: %s (--debug for the traceback)" % (type(e).__name__, mask_secrets(
            str(e).splitlines()[0]) if str(e) else ""), file=sys.stderr)
        return 2


def summary_main(argv: List[str]) -> int:
    """`run.py summary RUN_DIR`: summary.json rebuilt from the logs of a run killed before it wrote one."""
    from .output.summary_rebuild import rebuild_summary
    from .verdict import format_summary

    p = argparse.ArgumentParser(prog="run.py summary", description=summary_main.__doc__)
    p.add_argument("run_dir", help="the run folder (it holds timing.csv and predictions.jsonl)")
    p.add_argument("--target-fps", type=float, help="the verdict's frame rate (default: the source's, from its "
                   "timestamps)")
    args = p.parse_args(argv)
    try:
        summary = rebuild_summary(args.run_dir, args.target_fps)
    except JetcamError as e:
        print("error: %s" % e, file=sys.stderr)
        return e.exit_code
    print(format_summary(summary))
    print("summary rebuilt from %s: %s" % (summary["rebuilt_from"], os.path.join(args.run_dir, "summary.json")))
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = argv[0] if argv and not argv[0].startswith("-") else "run"
    if command == "doctor":
        from .doctor import doctor_main

        return doctor_main(argv[1:])
    if command == "bench":
        from .bench.command import bench_main

        return bench_main(argv[1:])
    if command == "summary":
        return summary_main(argv[1:])
    if command == "export-triton":
        from .triton.export import export_main

        return export_main(argv[1:])
    if command == "run":
        return run_main(argv[1:] if argv and argv[0] == "run" else argv)
    print("error: unknown command '%s'; use run (default), doctor, bench, summary or export-triton" % command,
          file=sys.stderr)
    return 2


def entry_point() -> None:
    raise SystemExit(main())
