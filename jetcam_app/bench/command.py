"""`run.py bench`: the same decoded, preprocessed frames through every (backend, precision) in its own process, then a report."""

import argparse
import dataclasses
import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple

try:  # matplotlib's FreeType must load before a GStreamer source brings the system one: the other order
    from . import plots  # noqa: F401  # segfaults when the plots are drawn (seen with PyGObject here)
except ImportError:  # the report says why its plots are missing
    pass
from ..config import PRECISIONS, ROOT, Config, EngineConfig, ModelConfig, PipelineConfig, SourceConfig, validate
from ..errors import BackendUnavailable, ConfigError, JetcamError, SourceError, on_stop_signals, raise_keyboard_interrupt
from ..registry import BACKENDS, MODELS
from .progress import ProgressBar

REFERENCE = ("cpu", "fp32")
DEFAULT_TARGET_FPS = 30.0


_SOURCE, _MODEL, _ENGINE, _PIPELINE = SourceConfig(), ModelConfig(), EngineConfig(), PipelineConfig()


@dataclass
class BenchOptions:
    """What a bench runs; the app's options default to the app's own (configs/default.yaml), so a bench measures
    what runs. The bench-only options have their one default here."""

    model: str = _MODEL.name
    backends: Sequence[str] = (_ENGINE.backend,)
    precisions: Sequence[str] = (_ENGINE.precision,)
    source: str = _SOURCE.uri
    frames: int = 100
    warmup: int = 10
    target_fps: float = _PIPELINE.target_fps  # 0 = the source's fps (30 when it has none)
    out_dir: str = "runs/bench"
    weights: Optional[str] = _MODEL.weights
    random_weights: bool = _MODEL.random_weights
    score_threshold: float = _MODEL.score_threshold
    iou_threshold: float = _MODEL.iou_threshold
    max_detections: int = _MODEL.max_detections
    topk: int = _MODEL.topk
    imgsz: Optional[str] = _MODEL.imgsz  # a .onnx: its input size where the file leaves it free
    decoder: str = _MODEL.decoder
    labels: Optional[str] = _MODEL.labels
    threads: int = _ENGINE.threads
    cuda_graph: bool = _PIPELINE.cuda_graph  # the fused CUDA graph stages where the backend allows them, as the app
    trt_workspace_mb: int = _ENGINE.trt_workspace_mb
    cache_dir: str = _ENGINE.cache_dir
    triton_url: str = _ENGINE.triton_url  # the triton row's server
    triton_model: Optional[str] = _ENGINE.triton_model  # its model: one exported with --input float --output raw
    worker_timeout_s: float = 3600.0
    keep_work: bool = False  # keep the inputs, the weights and every backend's raw outputs under work/
    sample_frames: int = 3  # annotated frames shown side by side in the report
    env: Dict[str, str] = field(default_factory=dict)  # extra environment for the workers


def row_key(backend: str, precision: str) -> str:
    return "%s_%s" % (backend, precision)


def plan_rows(options: BenchOptions) -> List[Dict[str, Any]]:
    """One row per (backend, precision), the reference (cpu fp32) first and always present."""
    for name in options.backends:
        if name not in BACKENDS:
            raise ConfigError("unknown backend '%s'; choose from: %s" % (name, ", ".join(BACKENDS.choices())))
    for precision in options.precisions:
        if precision not in PRECISIONS:
            raise ConfigError("unknown precision '%s'; choose from: %s" % (precision, ", ".join(PRECISIONS)))
    pairs = [REFERENCE] + [(b, p) for b in options.backends for p in options.precisions if (b, p) != REFERENCE]
    rows = []
    for backend, precision in pairs:
        row = {"backend": backend, "precision": precision, "key": row_key(backend, precision),
               "status": "pending", "reference": (backend, precision) == REFERENCE}
        if (backend, precision) == REFERENCE and REFERENCE[0] not in options.backends:
            row["note"] = "added: every backend is compared against it"
        rows.append(row)
    return rows


def precheck(row: Dict[str, Any], options: BenchOptions) -> Optional[str]:
    """Why this row cannot run here (backend missing, combination refused), before any process starts."""
    try:
        validate(Config(model=ModelConfig(name=options.model),
                        engine=EngineConfig(backend=row["backend"], precision=row["precision"])))
        BACKENDS.get(row["backend"]).check_available()
    except (BackendUnavailable, ConfigError) as e:
        return str(e)
    except ImportError as e:
        return "backend '%s' could not be imported: %s" % (row["backend"], e)
    return None


@dataclass
class Inputs:
    path: str
    weights_path: str
    frames: int
    source_fps: Optional[float]
    source_description: str
    image_hw: Tuple[int, int]
    task: str
    class_names: List[str]
    samples: Dict[int, Any]  # frame index -> BGR image, for the annotated frames


def prepare_inputs(options: BenchOptions, work_dir: str, progress: ProgressBar) -> Inputs:
    """Decode the frames once, preprocess them once on the CPU in fp32, save the weights once."""
    import numpy as np
    import torch

    from ..inference.adapters.base import build_core, create_adapter
    from ..sources.spec import create_source

    images = []
    source = create_source(SourceConfig(uri=options.source))
    with source:
        while len(images) < options.frames:
            frame = source.read(timeout_s=10.0)
            if frame is None:
                break
            images.append(frame.image)
            progress.update("inputs", "decode", len(images), options.frames)
        source_fps = source.nominal_fps
        description = source.describe()
    if not images:
        raise SourceError("%s gave no frames; check the file or pass another --source" % options.source)
    adapter = create_adapter(model_config(options))
    network = build_core(adapter)
    weights_path = os.path.join(work_dir, "weights.pt")
    torch.save(network.state_dict(), weights_path)
    arrays = {"frames": np.array(len(images))}
    for i, image in enumerate(images):
        arrays["image_%05d" % i] = image
        arrays["batch_%05d" % i] = adapter.preprocess(image, torch.device("cpu"), torch.float32).numpy()
        progress.update("inputs", "preprocess", i + 1, len(images))
    path = os.path.join(work_dir, "inputs.npz")
    np.savez(path, **arrays)
    # every frame is a candidate: the report shows the sample_frames with the most detections (plots.busiest_frames)
    return Inputs(path, weights_path, len(images), source_fps, description, images[0].shape[:2], adapter.task,
                  list(adapter.class_names), dict(enumerate(images)))


def model_config(options: BenchOptions) -> ModelConfig:
    return ModelConfig(name=options.model, weights=options.weights, random_weights=options.random_weights,
                       score_threshold=options.score_threshold, iou_threshold=options.iou_threshold,
                       max_detections=options.max_detections, topk=options.topk, imgsz=options.imgsz,
                       decoder=options.decoder, labels=options.labels)


def _tail(path: str, lines: int = 15) -> str:
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-lines:]).strip()
    except OSError:
        return ""


def run_worker(row: Dict[str, Any], options: BenchOptions, inputs: Inputs, work_dir: str, label: str,
               progress: ProgressBar) -> Dict[str, Any]:
    """Run one row's worker process; its result.json, or a `failed` result saying how it died."""
    row_dir = os.path.join(work_dir, row["key"])
    os.makedirs(row_dir, exist_ok=True)
    engine = EngineConfig(backend=row["backend"], precision=row["precision"], threads=options.threads,
                          trt_workspace_mb=options.trt_workspace_mb,
                          cache_dir=os.path.abspath(options.cache_dir), triton_url=options.triton_url,
                          triton_model=options.triton_model)
    job = {"model": dataclasses.asdict(model_config(options)), "engine": dataclasses.asdict(engine),
           "inputs_path": os.path.abspath(inputs.path), "weights_path": os.path.abspath(inputs.weights_path),
           "out_dir": os.path.abspath(row_dir), "warmup": options.warmup, "cuda_graph": options.cuda_graph}
    job_path = os.path.join(row_dir, "job.json")
    with open(job_path, "w") as f:
        json.dump(job, f, indent=1)
    result_path = os.path.join(row_dir, "result.json")
    if os.path.exists(result_path):
        os.remove(result_path)
    log_path = os.path.join(row_dir, "worker.log")
    env = dict(os.environ)
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "") if env.get("PYTHONPATH") else ROOT
    env.update(options.env)
    timed_out = threading.Event()
    with open(log_path, "w") as log:
        proc = subprocess.Popen([sys.executable, "-m", "jetcam_app.bench.worker", job_path], stdout=subprocess.PIPE,
                                stderr=log, env=env, universal_newlines=True, bufsize=1)

        def kill_on_timeout() -> None:
            timed_out.set()
            proc.kill()

        timer = threading.Timer(options.worker_timeout_s, kill_on_timeout)
        timer.start()
        try:
            for line in proc.stdout:
                parts = line.split()
                if len(parts) == 4 and parts[0] == "@progress":
                    progress.update(label, parts[1], int(parts[2]), int(parts[3]))
                else:
                    log.write(line)
                    log.flush()
            code = proc.wait()
        except KeyboardInterrupt as stop:
            # A terminal's Ctrl-C reaches the worker too; SIGTERM / SIGHUP sent to us alone are passed on as SIGINT.
            if stop.args and stop.args[0] != "SIGINT" and proc.poll() is None:
                proc.send_signal(signal.SIGINT)
            # Give the worker a moment to write its result, then make sure it is gone.
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            raise
        finally:
            timer.cancel()
    result = {}  # type: Dict[str, Any]
    if os.path.isfile(result_path):
        with open(result_path) as f:
            result = json.load(f)
    if timed_out.is_set():
        result.update(status="failed", error="timed out after %.0f s (--worker-timeout-s)" % options.worker_timeout_s)
    elif not result:
        how = "killed by signal %d" % -code if code < 0 else "exit code %d" % code
        result = {"status": "failed", "error": "worker died without a result (%s): %s"
                  % (how, _tail(log_path, 5).replace("\n", " | ") or "no output")}
    result["exit_code"] = code
    result["log"] = os.path.relpath(log_path, os.path.dirname(work_dir))
    return result


def resolve_target_fps(options: BenchOptions, inputs: Optional[Inputs]) -> Tuple[float, str]:
    if options.target_fps > 0:
        return options.target_fps, "--target-fps"
    if inputs is not None and inputs.source_fps:
        return float(inputs.source_fps), "the source's frame rate"
    return DEFAULT_TARGET_FPS, "the default: the source has no frame rate"


def run_bench(options: BenchOptions, progress: Optional[ProgressBar] = None) -> str:
    """Run every row and write the report folder; the report is written even after Ctrl-C or a crash."""
    progress = progress or ProgressBar()
    if options.model not in MODELS:
        raise ConfigError("unknown model '%s'; choose one of: %s" % (options.model, ", ".join(MODELS.choices())))
    if options.frames < 1 or options.warmup < 0:
        raise ConfigError("--frames must be >= 1 and --warmup >= 0")
    rows = plan_rows(options)
    out_dir = os.path.abspath(options.out_dir)
    work_dir = os.path.join(out_dir, "work")
    try:
        os.makedirs(work_dir, exist_ok=True)
    except OSError as e:
        raise JetcamError("cannot create the bench folder %s (%s); choose a writable --out DIR" % (out_dir, e)) from e
    _clean_leftovers(work_dir, progress)
    inputs = None  # type: Optional[Inputs]
    started = time.time()
    error = None  # type: Optional[BaseException]
    try:
        inputs = prepare_inputs(options, work_dir, progress)
        for n, row in enumerate(rows, 1):
            label = "[%d/%d] %s %s" % (n, len(rows), row["backend"], row["precision"])
            reason = precheck(row, options)
            if reason is not None:
                row.update(status="unavailable", error=reason)
                progress.message("%s: unavailable (%s)" % (label, reason))
                continue
            row["status"] = "running"
            row.update(run_worker(row, options, inputs, work_dir, label, progress))
            progress.message("%s: %s%s" % (label, row["status"], (" (%s)" % row["error"]) if row.get("error") else ""))
    except BaseException as e:  # noqa: BLE001 - recorded for the report, then re-raised
        error = e
        raise
    finally:
        try:
            _finish(options, rows, inputs, error, started, out_dir, work_dir)
            progress.message("bench report: %s" % os.path.join(out_dir, "report.html"))
        except Exception as report_error:  # noqa: BLE001 - never let the report hide the error that stopped the bench
            if error is None:
                raise
            progress.message("the bench report could not be written: %s: %s" % (type(report_error).__name__, report_error))
    return out_dir


def _finish(options: BenchOptions, rows: List[Dict[str, Any]], inputs: Optional[Inputs], error: Optional[BaseException],
            started: float, out_dir: str, work_dir: str) -> None:
    """Statistics, results.json, CSVs and the report for whatever finished."""
    from .report import write_report
    from .analysis import analyse

    interrupted = isinstance(error, KeyboardInterrupt)
    by = error.args[0] if interrupted and error.args else "Ctrl-C"  # the signal's name (errors.on_stop_signals)
    for row in rows:
        if row["status"] in ("pending", "running"):
            row.update(status="interrupted" if interrupted else "failed",
                       error="interrupted (%s)" % by if interrupted else "not run: the bench stopped early")
    target_fps, target_origin = resolve_target_fps(options, inputs)
    bench = {"options": dataclasses.asdict(options), "rows": rows, "out_dir": out_dir,
             "started": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(started)),
             "duration_s": round(time.time() - started, 1), "interrupted": interrupted,
             "error": None if error is None or interrupted else "%s: %s" % (type(error).__name__, error),
             "target_fps": target_fps, "target_origin": target_origin,
             "inputs": None if inputs is None else {
                 "frames": inputs.frames, "source": inputs.source_description, "source_fps": inputs.source_fps,
                 "image_hw": list(inputs.image_hw), "task": inputs.task}}
    analyse(bench, work_dir)
    write_report(bench, inputs.samples if inputs else {}, inputs.class_names if inputs else [], work_dir)
    if not options.keep_work:
        _clean_work(work_dir)


def _bulky_files(work_dir: str) -> List[str]:
    """The inputs, the weights and every backend's raw outputs under work/ (what _clean_work drops)."""
    found = [os.path.join(work_dir, name) for name in ("inputs.npz", "weights.pt")]
    for entry in os.listdir(work_dir):
        folder = os.path.join(work_dir, entry)
        if os.path.isdir(folder):
            found += [os.path.join(folder, n) for n in os.listdir(folder) if n.startswith("out_") and n.endswith(".npy")]
    return [path for path in found if os.path.isfile(path)]


def _clean_leftovers(work_dir: str, progress) -> None:
    """What a bench killed before its report (kill -9, the OOM killer) left in work/: removed, and said so."""
    leftovers = _bulky_files(work_dir)
    if leftovers:
        size_mb = sum(os.path.getsize(p) for p in leftovers) / 1e6
        progress.message("bench: removed %.1f MB that an earlier bench left unfinished in %s (%s)"
                         % (size_mb, work_dir, ", ".join(sorted({os.path.basename(p) for p in leftovers}))))
        for path in leftovers:
            os.remove(path)


def _clean_work(work_dir: str) -> None:
    """Drop the bulky files (inputs, weights, raw outputs); keep each row's result, log and predictions."""
    for path in _bulky_files(work_dir):
        os.remove(path)


def _csv_list(text: str) -> List[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def add_bench_arguments(parser: argparse.ArgumentParser) -> None:
    """The bench's flags; every default is BenchOptions' (the app's own for the app's options), shown in --help."""
    d = BenchOptions()
    parser.add_argument("--model", default=d.model, help="one of: %s, or PATH.onnx (its reference is ONNX Runtime on "
                        "the CPU; default: %%(default)s)" % ", ".join(MODELS.choices()))
    parser.add_argument("--imgsz", default=d.imgsz, help="PATH.onnx with a dynamic input: 640 or 480,640 (h,w)")
    parser.add_argument("--decoder", default=d.decoder, choices=["auto", "yolov8", "yolov5", "end2end", "classify"],
                        help="PATH.onnx: how its output is read (default: %(default)s)")
    parser.add_argument("--labels", default=d.labels, help="PATH.onnx: class names file")
    parser.add_argument("--backends", default=",".join(d.backends), type=_csv_list,
                        help="comma-separated, from: %s (cpu fp32 always runs: it is the reference; default: %%(default)s)"
                        % ", ".join(BACKENDS.choices()))
    parser.add_argument("--precision", "--precisions", dest="precisions", default=",".join(d.precisions),
                        type=_csv_list, help="comma-separated: fp32,fp16 (default: %(default)s)")
    parser.add_argument("--source", default=d.source,
                        help="a video, a folder of images, test://640x480@30 or 'sample' (default: %(default)s)")
    parser.add_argument("--frames", type=int, default=d.frames,
                        help="frames decoded and run through every backend (default: %(default)s)")
    parser.add_argument("--warmup", type=int, default=d.warmup,
                        help="untimed iterations before each timed pass (default: %(default)s)")
    parser.add_argument("--target-fps", type=float, default=d.target_fps,
                        help="frame rate for the verdict (0 = the source's; default: %(default)s)")
    parser.add_argument("--out", default=d.out_dir, help="report folder (default: %(default)s)")
    parser.add_argument("--weights", default=d.weights, help="weights file (also looked up in models/)")
    parser.add_argument("--random-weights", action="store_true", default=d.random_weights,
                        help="random weights: timing only")
    parser.add_argument("--score-threshold", type=float, default=d.score_threshold,
                        help="model.score_threshold: detections scoring below this (0-1) are dropped (default: %(default)s)")
    parser.add_argument("--iou-threshold", type=float, default=d.iou_threshold,
                        help="model.iou_threshold, per-class NMS (default: %(default)s)")
    parser.add_argument("--max-detections", type=int, default=d.max_detections,
                        help="model.max_detections (default: %(default)s)")
    parser.add_argument("--topk", type=int, default=d.topk, help="model.topk for classifiers (default: %(default)s)")
    parser.add_argument("--cuda-graph", dest="cuda_graph", action="store_true", default=d.cuda_graph,
                        help="pipeline.cuda_graph: time the end-to-end pass through the fused CUDA graph (one captured "
                        "graph for resize, network, decoding and NMS) where the backend allows it, as the app does "
                        "(default: %(default)s)")
    parser.add_argument("--no-cuda-graph", dest="cuda_graph", action="store_false", help="time the eager stages")
    parser.add_argument("--threads", type=int, default=d.threads, help="CPU threads, 0 = one per core (default: %(default)s)")
    parser.add_argument("--trt-workspace-mb", type=int, default=d.trt_workspace_mb,
                        help="TensorRT builder scratch memory limit in MB; keep <= 1024 on a 4 GB Jetson Nano (default: %(default)s)")
    parser.add_argument("--cache-dir", default=d.cache_dir,
                        help="where built engines (TensorRT, ONNX) are cached and reused (default: %(default)s)")
    parser.add_argument("--triton-url", default=d.triton_url, help="the triton row's server (default: %(default)s)")
    parser.add_argument("--triton-model", default=d.triton_model, help="the triton row's model on the server, "
                        "exported with --input float --output raw (the numeric diff compares the core's outputs; "
                        "default: export-triton's name for the model)")
    parser.add_argument("--worker-timeout-s", type=float, default=d.worker_timeout_s, help="a row taking longer fails (default: %(default)s)")
    parser.add_argument("--keep-work", action="store_true", help="keep inputs and raw outputs under OUT/work")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")


def options_from_args(args: argparse.Namespace) -> BenchOptions:
    return BenchOptions(
        model=args.model, backends=args.backends, precisions=args.precisions, source=args.source, frames=args.frames,
        warmup=args.warmup, target_fps=args.target_fps, out_dir=args.out, weights=args.weights,
        random_weights=args.random_weights, score_threshold=args.score_threshold, iou_threshold=args.iou_threshold,
        max_detections=args.max_detections, topk=args.topk, imgsz=args.imgsz, decoder=args.decoder,
        labels=args.labels, cuda_graph=args.cuda_graph, threads=args.threads,
        trt_workspace_mb=args.trt_workspace_mb, cache_dir=args.cache_dir, worker_timeout_s=args.worker_timeout_s,
        triton_url=args.triton_url, triton_model=args.triton_model,
        keep_work=args.keep_work)


def bench_main(args) -> int:
    """`run.py bench ...`: args is an argv list (after 'bench') or a Namespace from add_bench_arguments."""
    if not isinstance(args, argparse.Namespace):
        parser = argparse.ArgumentParser(prog="run.py bench", description="Compare backends on identical frames.",
                                         formatter_class=argparse.ArgumentDefaultsHelpFormatter)
        add_bench_arguments(parser)
        args = parser.parse_args(list(args))
    try:
        with on_stop_signals(raise_keyboard_interrupt):  # SIGTERM and SIGHUP end the bench as Ctrl-C does
            out_dir = run_bench(options_from_args(args))
    except KeyboardInterrupt:
        print("bench interrupted; the report holds what finished", file=sys.stderr)
        return 128 + signal.SIGINT
    except JetcamError as e:
        if getattr(args, "debug", False):
            raise
        print("error: %s" % e, file=sys.stderr)
        return e.exit_code
    with open(os.path.join(out_dir, "results.json")) as f:
        rows = json.load(f)["rows"]
    for row in rows:
        print("%-12s %-5s %-12s %s" % (row["backend"], row["precision"], row["status"],
                                       row.get("verdict", {}).get("text", "") or row.get("error", "")))
    print("report: %s" % os.path.join(out_dir, "report.md"))
    return 0 if any(r["status"] == "ok" for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(bench_main(sys.argv[1:]))
