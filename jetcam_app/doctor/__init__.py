"""`run.py doctor`: a table of what this machine has for a camera source and an inference backend, each with a fix."""
import argparse
import importlib
import importlib.util
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Tuple

from ..bench.environment import command_output
from ..errors import JetcamError, mask_secrets
from ..registry import BACKENDS
from ..sources import gst_runner, v4l2
from ..sources.kinds import GSTREAMER, GSTREAMER_OR_V4L2, SourceKind, source_kind

OK, MISSING, ABSENT, WARN, INFO = "ok", "MISSING", "absent", "warn", "info"
JETSON_ONLY = "Jetson only"
ARGUS_DAEMON = "nvargus-daemon"
PLUGIN_FIXES = {
    "nvarguscamerasrc": "Jetson only: JetPack's nvidia-l4t-gstreamer (sudo apt install nvidia-l4t-gstreamer)",
    "nvvidconv": "Jetson only: JetPack's nvidia-l4t-gstreamer (sudo apt install nvidia-l4t-gstreamer)",
    "nvv4l2decoder": "Jetson only: JetPack's nvidia-l4t-gstreamer; elsewhere MJPEG decodes with jpegdec",
    "v4l2src": "sudo apt install gstreamer1.0-plugins-good",
    "jpegdec": "sudo apt install gstreamer1.0-plugins-good",
    "rtspsrc": "sudo apt install gstreamer1.0-plugins-good",
    "decodebin": "sudo apt install gstreamer1.0-plugins-base",
    "avdec_h264": "sudo apt install gstreamer1.0-libav (H.264/H.265 decoders off a Jetson)",
    "videoconvert": "sudo apt install gstreamer1.0-plugins-base",
    "videotestsrc": "sudo apt install gstreamer1.0-plugins-base",
    "appsink": "sudo apt install gstreamer1.0-plugins-base",
}
# Listed when no --source says which elements matter.
ANY_SOURCE_PLUGINS = ("videotestsrc", "v4l2src", "nvarguscamerasrc", "nvvidconv")


@dataclass
class Check:
    name: str
    status: str  # ok, MISSING, absent (not expected on this machine), warn, info
    detail: str
    fix: str = ""
    needed: bool = False  # the given --source / --backend cannot work without it

    @property
    def failed(self) -> bool:
        return self.needed and self.status not in (OK, INFO)


def _process_running(name: str) -> bool:
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open("/proc/%s/comm" % pid) as f:
                if f.read().strip() == name[:15]:  # comm is truncated to 15 characters
                    return True
        except OSError:
            continue
    return False


def _meminfo_mb() -> Dict[str, float]:
    values = {}
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                key, _, rest = line.partition(":")
                values[key] = float(rest.split()[0]) / 1024.0
    except (OSError, ValueError, IndexError):
        pass
    return values


def _module_version(name: str) -> Optional[str]:
    try:
        module = importlib.import_module(name)
    except ImportError:
        return None
    return str(getattr(module, "__version__", "installed"))


def capture_checks(kind: Optional[SourceKind], jetson: bool) -> List[Check]:
    """OpenCV's GStreamer, Python Gst, the runner auto picks, and the plugins the source needs."""
    import cv2

    checks = []
    cv_gst = gst_runner.opencv_has_gstreamer()
    gst_reason = gst_runner.gobject_reason()
    checks.append(Check("OpenCV GStreamer", OK if cv_gst else WARN,
                        "cv2 %s %s GStreamer" % (cv2.__version__, "with" if cv_gst else "without"),
                        "" if cv_gst else "pip's opencv-python has none; the PyGObject runner is used instead "
                        "(on a Jetson: pip uninstall opencv-python to get JetPack's OpenCV back)"))
    checks.append(Check("Python Gst (PyGObject)", OK if gst_reason is None else WARN,
                        gst_runner.load_gst().version_string() if gst_reason is None else gst_reason,
                        "" if gst_reason is None else gst_runner.GST_INSTALL_HINT))
    runner_kind = kind.runner if kind is not None else None
    runner = "OpenCV CAP_GSTREAMER" if cv_gst else ("PyGObject" if gst_reason is None else None)
    v4l2_only = runner_kind == GSTREAMER_OR_V4L2 and runner is None
    if v4l2_only:
        runner = "OpenCV V4L2 backend (no GStreamer runner)"
    checks.append(Check("pipeline runner", OK if runner else MISSING, runner or "no way to run a GStreamer pipeline",
                        "" if runner else gst_runner.GST_INSTALL_HINT, needed=runner_kind == GSTREAMER))
    known = kind.doctor_plugins() if kind is not None else ()
    elements = list(known or ANY_SOURCE_PLUGINS)
    if kind is not None and kind.decoders:  # decodebin needs a decoder for the stream's codec
        elements.append(kind.decoders[0] if jetson else kind.decoders[1])
    for element in elements:
        present = gst_runner.has_element(element)
        if present is None and shutil.which("gst-inspect-1.0"):
            present = subprocess.call(["gst-inspect-1.0", "--exists", element], timeout=10) == 0
        jetson_only = element.startswith("nv")
        # Optional plugins matter only for some devices; OpenCV's V4L2 backend needs no plugin at all.
        needed = bool(known) and element not in kind.optional_plugins and not v4l2_only
        if present:
            checks.append(Check("plugin %s" % element, OK, "installed", needed=needed))
        elif present is None:
            checks.append(Check("plugin %s" % element, WARN, "cannot tell without Python Gst or gst-inspect-1.0",
                                "sudo apt install gstreamer1.0-tools; gst-inspect-1.0 %s" % element))
        else:
            status = ABSENT if jetson_only and not jetson else MISSING
            detail = "not installed" + (" (%s)" % JETSON_ONLY if jetson_only else "")
            checks.append(Check("plugin %s" % element, status, detail, PLUGIN_FIXES.get(element, ""), needed=needed))
    checks.append(nvmm_frames_check(jetson, gst_reason))
    return checks


def nvmm_frames_check(jetson: bool, gst_reason: Optional[str]) -> Check:
    """Whether --decode auto sends a Jetson's NVMM frames (CSI, RTSP, USB MJPEG) to CUDA as BGRx (nvmm_frames.py):
    nvvidconv, PyGObject's runner (OpenCV hands over no buffer) and a CUDA device are all there."""
    name = "camera frames to CUDA (NVMM)"
    if not jetson:
        return Check(name, INFO, "not a Jetson: cameras and streams are converted to BGR on the CPU")
    import torch

    missing = [what for what, ok in (
        ("nvvidconv", gst_runner.has_element("nvvidconv") is not False),
        ("PyGObject's Gst (%s)" % gst_reason, gst_reason is None),
        ("a CUDA device for torch", torch.cuda.is_available())) if not ok]
    if not missing:
        return Check(name, OK, "CSI, RTSP and USB MJPEG frames go to CUDA as nvvidconv's BGRx: no videoconvert on "
                               "the CPU (--decode auto; --decode cpu for the old path)")
    return Check(name, WARN, "frames are converted to BGR on the CPU: no %s" % ", no ".join(missing),
                 gst_runner.GST_INSTALL_HINT if gst_reason is not None else "JetPack's torch (NVIDIA's wheel) "
                 "and nvidia-l4t-gstreamer")


def camera_checks(kind: Optional[SourceKind], location: str, jetson: bool) -> List[Check]:
    """nvargus-daemon and the /dev/video* nodes with their formats and permissions."""
    checks = []
    needs_daemon = kind is not None and kind.daemon == ARGUS_DAEMON
    if _process_running(ARGUS_DAEMON):
        checks.append(Check(ARGUS_DAEMON, OK, "running", needed=needs_daemon))
    else:
        checks.append(Check(ARGUS_DAEMON, MISSING if jetson else ABSENT,
                            "not running" if jetson else "not running (%s)" % JETSON_ONLY,
                            "sudo systemctl restart nvargus-daemon (CSI cameras need it)", needed=needs_daemon))
    device_kind = kind is not None and kind.location == "device"
    devices = v4l2.list_video_devices()
    for path in devices:
        device = v4l2.probe_device(path)
        access = "rw" if device.readable and device.writable else "no access"
        status = OK if device.is_capture and device.formats and not device.error else (WARN if device.error else INFO)
        fix = "sudo usermod -aG video $USER, then log in again" if access != "rw" else ""
        checks.append(Check(path, status, "%s (%s)" % (device.summary(), access), fix,
                            needed=device_kind and path == location))
    if device_kind and location not in devices:
        checks.append(Check(location, MISSING, "does not exist; video devices here: %s" % v4l2.describe_devices(),
                            "plug the camera in (lsusb), or pick one of the devices listed", needed=True))
    elif not devices:
        checks.append(Check("/dev/video*", INFO, "no video devices", "plug a USB camera in, or on a Jetson connect "
                            "the CSI sensor; test:// needs none"))
    return checks


def backend_checks(backend: Optional[str]) -> List[Check]:
    """The accelerator libraries and every registered backend's check_available(), with its hint."""
    checks = []
    torch_version = _module_version("torch")
    if torch_version is not None:
        import torch

        cuda = torch.cuda.is_available()
        checks.append(Check("CUDA (torch %s)" % torch_version, OK if cuda else ABSENT,
                            torch.cuda.get_device_name(0) if cuda else "no CUDA device (torch.version.cuda=%s)"
                            % torch.version.cuda, "" if cuda else "on a Jetson install NVIDIA's torch wheel for JetPack"))
    for name, hint in (("tensorrt", "ships with JetPack (python3-libnvinfer); on a PC: pip install tensorrt"),
                       ("torch2trt", "git clone NVIDIA-AI-IOT/torch2trt && python setup.py install"),
                       ("onnxruntime", "pip install onnxruntime (onnxruntime-gpu from the Jetson Zoo on a Jetson)")):
        version = _module_version(name)
        checks.append(Check(name, OK if version else ABSENT, version or "not installed", "" if version else hint))
    return checks + [backend_check(name, needed=name == backend) for name in BACKENDS.choices()]


def backend_check(name: str, needed: bool) -> Check:
    """One backend's check_available(): ok, or why not with its install hint (MISSING when needed, else absent)."""
    from ..errors import BackendUnavailable

    try:
        BACKENDS.get(name).check_available()
    except BackendUnavailable as e:
        return Check("backend %s" % name, MISSING if needed else ABSENT, e.reason, e.hint, needed=needed)
    except ImportError as e:
        return Check("backend %s" % name, MISSING if needed else ABSENT, "cannot import its module (%s)" % e,
                     "see README, Backends", needed=needed)
    return Check("backend %s" % name, OK, "available", needed=needed)


def gpu_decode_check(jetson: bool) -> Check:
    """Whether --decode auto can put video files on NVDEC: PyNvVideoCodec loads (and a CUDA device is there)."""
    from ..sources.nvdec import library_status

    version, why = library_status()
    if version is not None:
        import torch

        cuda = torch.cuda.is_available()
        return Check("GPU decode (NVDEC)", OK if cuda else WARN, "PyNvVideoCodec %s%s" % (
            version, "" if cuda else "; torch sees no CUDA device, so files decode on the CPU"))
    fix = ("JetPack 6: pip install '.[gpu-decode]' (PyNvVideoCodec's aarch64 wheel, Python 3.10); JetPack 4.6 and 5 "
           "have none: files decode on the CPU" if jetson else "pip install '.[gpu-decode]' (Python 3.8 on x86-64, "
           "or 3.10+)")
    return Check("GPU decode (NVDEC)", INFO, "video files decode on the CPU: %s" % why.split(":")[0], fix)


def system_checks(cache_dir: str, jetson: bool) -> List[Check]:
    """The models cache, DISPLAY, RAM and swap, and the Jetson tools (jtop, nvpmodel, jetson_clocks)."""
    checks = []
    try:
        os.makedirs(cache_dir, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=cache_dir, prefix=".doctor-"):
            pass
        checks.append(Check("models cache", OK, "%s is writable" % os.path.abspath(cache_dir), needed=True))
    except OSError as e:
        checks.append(Check("models cache", MISSING, "%s is not writable (%s)" % (cache_dir, e.strerror or e),
                            "chmod u+w %s, or pass --cache-dir DIR" % cache_dir, needed=True))
    display = os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
    checks.append(Check("DISPLAY", OK if display else INFO, display or "unset: no window, runs headless",
                        "" if display else "export DISPLAY=:0 for the Jetson's own screen, or use --record / http"))
    mem = _meminfo_mb()
    if mem:
        ram_mb, free_mb, swap_mb = mem.get("MemTotal", 0), mem.get("MemAvailable", 0), mem.get("SwapTotal", 0)
        low_swap = jetson and ram_mb < 8192 and swap_mb < 2048
        checks.append(Check("RAM and swap", WARN if low_swap else OK, "%.0f MB free of %.0f MB, swap %.0f MB"
                            % (free_mb, ram_mb, swap_mb),
                            "TensorRT builds need swap on a small Jetson: sudo fallocate -l 4G /swapfile && sudo "
                            "chmod 600 /swapfile && sudo mkswap /swapfile && sudo swapon /swapfile" if low_swap else ""))
    checks.append(gpu_decode_check(jetson))
    jtop = _module_version("jtop")
    service = os.path.exists("/run/jtop.sock") or _process_running("jtop")
    checks.append(Check("jtop service", OK if jtop and service else ABSENT,
                        "running" if jtop and service else ("jtop installed, service not running" if jtop else
                                                            "not installed (%s; RAM/GPU stats fall back to NVML or psutil)"
                                                            % JETSON_ONLY),
                        "" if jtop and service else "sudo pip3 install -U jetson-stats && sudo systemctl restart jtop.service"))
    nvpmodel = command_output(["nvpmodel", "-q"], timeout_s=5.0)
    nvpmodel = " ".join(nvpmodel.split())[:160] if nvpmodel is not None else None
    checks.append(Check("nvpmodel", OK if nvpmodel else ABSENT, nvpmodel or "not found (%s)" % JETSON_ONLY,
                        "sudo nvpmodel -m 0 for the maximum power mode" if nvpmodel else "part of JetPack (nvidia-l4t-tools)"))
    clocks = shutil.which("jetson_clocks")
    checks.append(Check("jetson_clocks", OK if clocks else ABSENT, clocks or "not found (%s)" % JETSON_ONLY,
                        "sudo jetson_clocks pins the clocks at their maximum for steady timings" if clocks
                        else "part of JetPack (nvidia-l4t-tools)"))
    return checks


def _source_kind(source_uri: Optional[str], checks: List[Check]) -> Tuple[Optional[SourceKind], str]:
    """(kind, location) of the source, appending a failed check when the URI is bad."""
    if not source_uri:
        return None, ""
    from ..sources.spec import parse_source

    try:
        spec = parse_source(source_uri)
    except JetcamError as e:
        checks.append(Check("source %s" % source_uri, MISSING, str(e), "see docs/cameras.md for the forms", needed=True))
        return None, ""
    kind = source_kind(spec.kind)
    if kind.location == "path" and not os.path.exists(spec.location):
        checks.append(Check("source %s" % source_uri, MISSING, "%s does not exist" % spec.location,
                            "check the path", needed=True))
    if kind.location == "pipeline" and gst_runner.gobject_reason() is None:
        from gi.repository import GLib

        try:
            gst_runner.load_gst().parse_launch(spec.location)
            checks.append(Check("custom pipeline", OK, "parses", needed=True))
        except GLib.Error as e:
            checks.append(Check("custom pipeline", MISSING, e.message, "gst-inspect-1.0 ELEMENT; fix the element "
                                "names or install their plugins", needed=True))
    return kind, spec.location


def run_doctor(source_uri: Optional[str] = None, backend: Optional[str] = None,
               out: Callable[[str], None] = print, cache_dir: Optional[str] = None) -> int:
    """Print the checks; 0 when everything the given source and backend need is present, 1 otherwise."""
    print_line = out
    out = lambda line: print_line(mask_secrets(line))  # noqa: E731 - an RTSP password is never printed
    if cache_dir is None:
        from ..config import load_config

        cache_dir = load_config().engine.cache_dir
    jetson = gst_runner.is_jetson()
    checks = []  # type: List[Check]
    kind, location = _source_kind(source_uri, checks)
    checks += capture_checks(kind, jetson) + camera_checks(kind, location, jetson)
    checks += backend_checks(backend) + system_checks(cache_dir, jetson)
    out("jetcam doctor on %s: source %s, backend %s" % ("a Jetson" if jetson else "a non-Jetson machine",
                                                        source_uri or "(none given)", backend or "(none given)"))
    name_w = max(len(c.name) for c in checks)
    out("%-8s %-6s %-*s  %s" % ("status", "needed", name_w, "check", "detail"))
    for check in checks:
        out("%-8s %-6s %-*s  %s" % (check.status, "yes" if check.needed else "", name_w, check.name, check.detail))
        if check.fix and check.status != OK:
            out("%-8s %-6s %-*s  fix: %s" % ("", "", name_w, "", check.fix))
    failed = [c.name for c in checks if c.failed]
    if failed:
        out("result: missing for this source/backend: %s" % ", ".join(failed))
        return 1
    out("result: everything the given source and backend need is present")
    return 0




def doctor_main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="run.py doctor", description=run_doctor.__doc__)
    parser.add_argument("--source", help="the --source to check (csi://0, usb:0, /dev/video0, rtsp://..., a file)")
    parser.add_argument("--backend", help="the --backend to check (%s)" % ", ".join(BACKENDS.choices()))
    parser.add_argument("--cache-dir", help="the engine cache folder to check (default: engine.cache_dir)")
    args = parser.parse_args(argv)
    return run_doctor(args.source, args.backend, cache_dir=args.cache_dir)
