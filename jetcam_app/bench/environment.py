"""What the numbers were measured on: machine, CPU, GPU, driver, JetPack/L4T, power mode, library versions."""

import importlib
import os
import platform
import shutil
import subprocess
import sys
from typing import Any, Dict, List, Optional, Sequence, Tuple

NOT_FOUND = "not found"


def _read(path: str) -> Optional[str]:
    try:
        with open(path, "rb") as f:
            return f.read().decode("utf-8", "replace").replace("\x00", "").strip()
    except OSError:
        return None


def command_output(args: Sequence[str], timeout_s: float = 10.0) -> Optional[str]:
    """stdout of a command, or None when it is missing or fails; stderr is given when only it speaks."""
    if shutil.which(args[0]) is None:
        return None
    try:
        done = subprocess.run(list(args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout_s,
                              universal_newlines=True)
    except (OSError, subprocess.SubprocessError) as e:
        return "failed: %s" % e
    text = (done.stdout or "").strip()
    if done.returncode != 0:
        return "exit %d: %s" % (done.returncode, ((done.stderr or text).strip().splitlines() or [""])[0])
    return text


def cpu_name() -> str:
    """The CPU's model name (/proc/cpuinfo, else lscpu), else the architecture."""
    text = _read("/proc/cpuinfo") or ""
    for key in ("model name", "Model", "Hardware"):
        for line in text.splitlines():
            if line.startswith(key) and ":" in line:
                return line.split(":", 1)[1].strip()
    lscpu = command_output(["lscpu"]) or ""
    for line in lscpu.splitlines():
        if line.startswith("Model name:"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def _cores() -> str:
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return "%s usable of %s" % (usable, os.cpu_count())


def _version(module_name: str, dist_names: Sequence[str] = ()) -> str:
    """A package's version from its metadata (no import) or, failing that, from the module itself."""
    try:
        from importlib import metadata  # novermin: guarded
    except ImportError:  # Python < 3.8
        metadata = None  # type: ignore
    if metadata is not None:
        for dist in list(dist_names) + [module_name]:
            try:
                return metadata.version(dist)
            except metadata.PackageNotFoundError:
                continue
    try:
        module = importlib.import_module(module_name)
    except ImportError:
        return NOT_FOUND
    return str(getattr(module, "__version__", "installed (no version)"))


def _torch_details() -> List[Tuple[str, str]]:
    try:
        import torch
    except ImportError:
        return [("torch", NOT_FOUND)]
    cudnn = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
    return [("torch", torch.__version__),
            ("CUDA (torch build)", torch.version.cuda or "none (CPU-only build)"),
            ("cuDNN", str(cudnn) if cudnn else "none"),
            ("torch threads", str(torch.get_num_threads()))]


def _gpu_lines(rows: Sequence[Dict[str, Any]]) -> List[Tuple[str, str]]:
    smi = command_output(["nvidia-smi", "--query-gpu=name,driver_version,memory.total,compute_cap", "--format=csv,noheader"])
    if smi and not smi.startswith(("exit", "failed")):
        lines = []
        for n, entry in enumerate(smi.splitlines()):
            parts = [p.strip() for p in entry.split(",")]
            if len(parts) >= 3:
                text = "%s, %s, compute capability %s" % (parts[0], parts[2], parts[3] if len(parts) > 3 else "?")
                lines.append(("GPU %d" % n, text))
                lines.append(("NVIDIA driver", parts[1]))
        if lines:
            return lines
    names = sorted({r["gpu_name"] for r in rows if r.get("gpu_name")})
    if names:
        return [("GPU", ", ".join(names) + " (from the workers; nvidia-smi not available)")]
    return [("GPU", "none seen (%s)" % ("nvidia-smi absent" if smi is None else smi))]


def _jetson_lines() -> List[Tuple[str, str]]:
    lines = []
    model = _read("/proc/device-tree/model")
    if model:
        lines.append(("board", model))
    release = _read("/etc/nv_tegra_release")
    if release is None:
        return lines + [("JetPack / L4T", "not a Jetson (/etc/nv_tegra_release absent)")]
    lines.append(("L4T", release.splitlines()[0].lstrip("# ")))
    jetpack = command_output(["dpkg-query", "-W", "-f=${Version}", "nvidia-jetpack"])
    lines.append(("JetPack", jetpack or "nvidia-jetpack package not installed"))
    nvpmodel = command_output(["nvpmodel", "-q"])
    lines.append(("nvpmodel", " ".join((nvpmodel or "nvpmodel not found").split())))
    clocks = command_output(["jetson_clocks", "--show"])
    if clocks is None:
        lines.append(("jetson_clocks", "not found"))
    elif clocks.startswith(("exit", "failed")):
        lines.append(("jetson_clocks", "could not read (%s; needs sudo)" % clocks))
    else:
        keep = [line for line in clocks.splitlines() if line.startswith(("GPU", "EMC", "CPU Cluster", "NV Power"))]
        lines.append(("jetson_clocks", "; ".join(" ".join(line.split()) for line in keep[:4]) or clocks[:200]))
    return lines


def _onnxruntime() -> str:
    version = _version("onnxruntime", ("onnxruntime", "onnxruntime-gpu"))
    if version == NOT_FOUND:
        return version
    try:
        import onnxruntime
    except ImportError:
        return version
    return "%s (providers: %s)" % (version, ", ".join(onnxruntime.get_available_providers()))


def collect_environment(rows: Sequence[Dict[str, Any]] = ()) -> List[Tuple[str, str]]:
    """(label, value) pairs in the order the report shows them."""
    import psutil

    env = [
        ("host", platform.node()),
        ("OS", "%s (%s)" % (platform.platform(), platform.machine())),
        ("CPU", "%s, %s cores" % (cpu_name(), _cores())),
        ("RAM", "%.1f GB" % (psutil.virtual_memory().total / 1e9)),
    ]
    env += _gpu_lines(rows)
    env += _jetson_lines()
    env.append(("Python", sys.version.split()[0]))
    env += _torch_details()
    env += [
        ("torchvision", _version("torchvision")),
        ("OpenCV", _version("cv2", ("opencv-python", "opencv-python-headless", "opencv-contrib-python"))),
        ("numpy", _version("numpy")),
        ("TensorRT", _version("tensorrt", ("tensorrt", "tensorrt-cu12", "tensorrt-cu11"))),
        ("TensorRT-RTX", _version("tensorrt_rtx_bindings", ("tensorrt_rtx", "tensorrt-rtx"))),
        ("torch2trt", _version("torch2trt")),
        ("ONNX", _version("onnx")),
        ("ONNX Runtime", _onnxruntime()),
    ]
    return env
