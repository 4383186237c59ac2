"""The machine the run is on: its usable cores, whether it is a Jetson, and RAM and GPU memory sampled by a poller
thread (jtop -> NVML -> psutil), never on the per-frame path."""

import logging
import os
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any, Dict, Optional

import psutil

from .errors import first_line

log = logging.getLogger(__name__)

MB = 1024.0 * 1024.0
JTOP_SOCKET = "/run/jtop.sock"


def usable_cores() -> int:
    """Cores this process may run on (sched_getaffinity sees container and taskset limits): one count for the
    engines' threads, the drawing pool and the decoders."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS and Windows have no sched_getaffinity
        return max(1, os.cpu_count() or 1)


def cpu_threads(requested: int) -> int:
    """`requested` threads, or at 0 one per usable core."""
    return requested if requested > 0 else usable_cores()


def is_jetson() -> bool:
    """Whether this machine is an NVIDIA Jetson (L4T release file, or the device-tree model name)."""
    if os.path.exists("/etc/nv_tegra_release"):
        return True
    try:
        with open("/proc/device-tree/model", "rb") as f:
            return b"jetson" in f.read().lower()
    except OSError:
        return False


@dataclass
class StatsSample:
    rss_mb: float  # this process's resident memory
    ram_used_mb: float  # system RAM in use (total - available)
    ram_total_mb: float
    gpu_mb: Optional[float]  # GPU memory of this process (Jetson: its share of the unified RAM), if known
    gpu_name: Optional[str]
    provider: str
    gpu_used_mb: Optional[float] = None  # the whole device's used memory (NVML), if known
    gpu_total_mb: Optional[float] = None
    torch_max_allocated_mb: Optional[float] = None  # torch.cuda.max_memory_allocated, when torch's CUDA is up
    time_s: float = 0.0  # time.perf_counter() of the sample


def _psutil_memory() -> Dict[str, float]:
    vm = psutil.virtual_memory()
    return {
        "rss_mb": psutil.Process().memory_info().rss / MB,
        # total - available is what `free` calls used + what cannot be reclaimed; psutil's `used` varies by OS.
        "ram_used_mb": (vm.total - vm.available) / MB,
        "ram_total_mb": vm.total / MB,
    }


def _torch_cuda():
    """torch, only if this process already imported it and initialised CUDA (never imports or initialises it here)."""
    torch = sys.modules.get("torch")
    if torch is None or not hasattr(torch, "cuda"):
        return None
    if not torch.cuda.is_available() or not torch.cuda.is_initialized():
        return None
    return torch


class _NvmlProvider:
    """Per-process GPU memory from nvidia-ml-py; the device's used/total memory as well."""

    name = "nvml"

    def __init__(self, device_index: int = 0):
        import pynvml  # nvidia-ml-py

        self._nvml = pynvml
        pynvml.nvmlInit()
        try:
            self._handle = pynvml.nvmlDeviceGetHandleByIndex(device_index)
            name = pynvml.nvmlDeviceGetName(self._handle)
            self.gpu_name = name.decode() if isinstance(name, bytes) else str(name)
        except pynvml.NVMLError:
            pynvml.nvmlShutdown()
            raise
        self._pid = os.getpid()

    def sample(self) -> Dict[str, Any]:
        nvml = self._nvml
        info = nvml.nvmlDeviceGetMemoryInfo(self._handle)
        process_mb = None  # type: Optional[float]
        processes = []  # type: list
        for query in (nvml.nvmlDeviceGetComputeRunningProcesses, nvml.nvmlDeviceGetGraphicsRunningProcesses):
            try:
                processes += list(query(self._handle))
            except nvml.NVMLError as e:  # NotSupported on some boards/drivers: device totals still come
                log.debug("nvml: %s: %s", query.__name__, e)
        for proc in processes:
            # usedGpuMemory is None where the driver hides it (Windows WDDM, some containers)
            if proc.pid == self._pid and proc.usedGpuMemory is not None:
                process_mb = (process_mb or 0.0) + proc.usedGpuMemory / MB
        return {"gpu_mb": process_mb, "gpu_name": self.gpu_name, "gpu_used_mb": info.used / MB,
                "gpu_total_mb": info.total / MB}

    def close(self) -> None:
        self._nvml.nvmlShutdown()


class _JtopProvider:
    """jetson-stats' jtop service: the unified RAM and this process's GPU (nvmap) memory on a Jetson."""

    name = "jtop"

    def __init__(self) -> None:
        from jtop import jtop  # jetson-stats

        self._jetson = jtop()
        self._jetson.start()
        self._pid = os.getpid()
        self.gpu_name = "Jetson iGPU"
        try:
            self.gpu_name = str(self._jetson.board["hardware"].get("Module", self.gpu_name))
        except (AttributeError, KeyError, TypeError):
            log.debug("jtop gives no module name; the HUD says 'Jetson iGPU'")

    def sample(self) -> Dict[str, Any]:
        if not self._jetson.ok():
            raise RuntimeError("the jtop service stopped answering")
        ram = self._jetson.memory["RAM"]  # kB
        process_mb = None  # type: Optional[float]
        for proc in self._jetson.processes:
            # [pid, user, gpu, type, priority, state, cpu %, mem kB, gpu mem kB, name]
            if int(proc[0]) == self._pid:
                process_mb = float(proc[8]) / 1024.0
        return {"gpu_mb": process_mb, "gpu_name": self.gpu_name, "ram_used_mb": ram["used"] / 1024.0,
                "ram_total_mb": ram["tot"] / 1024.0, "gpu_used_mb": ram.get("shared", 0) / 1024.0,
                "gpu_total_mb": ram["tot"] / 1024.0}

    def close(self) -> None:
        self._jetson.close()


class StatsPoller:
    """A daemon thread sampling memory every `interval_s`; latest() returns the last sample without blocking."""

    def __init__(self, interval_s: float = 1.0, device: str = "cpu", device_index: int = 0):
        self.interval_s = float(interval_s)
        self.device = device
        self.skipped = {}  # type: Dict[str, str]
        self._provider = None  # type: Any
        self._stop = threading.Event()
        self._thread = None  # type: Optional[threading.Thread]
        self._lock = threading.Lock()
        self._provider_lock = threading.Lock()
        self._select_provider(device_index)
        self._latest = self._sample()

    @property
    def provider(self) -> str:
        return self._provider.name if self._provider is not None else "psutil"

    def _select_provider(self, device_index: int) -> None:
        # An optional provider that fails falls back, and the reason goes into provider_report().
        if not is_jetson():
            self.skipped["jtop"] = "not a Jetson (/etc/nv_tegra_release absent)"
        elif not os.path.exists(JTOP_SOCKET):
            self.skipped["jtop"] = "the jtop service is not running (%s absent; sudo systemctl start jtop.service)" % JTOP_SOCKET
        else:
            try:
                self._provider = _JtopProvider()
            except ImportError:
                self.skipped["jtop"] = "jetson-stats is not installed (sudo pip3 install -U jetson-stats)"
            except Exception as e:  # jtop raises its own JtopException and socket errors
                self.skipped["jtop"] = "jtop did not start: %s" % first_line(e)
        if self._provider is not None:
            self.skipped["nvml"] = "jtop is used instead"
            return
        try:
            self._provider = _NvmlProvider(device_index)
        except ImportError:
            self.skipped["nvml"] = "nvidia-ml-py is not installed (pip install nvidia-ml-py)"
        except Exception as e:  # pynvml.NVMLError_*: no driver, no device, library not found
            self.skipped["nvml"] = "no NVIDIA driver answered (%s: %s)" % (type(e).__name__, e)

    def _sample(self) -> StatsSample:
        values = _psutil_memory()  # type: Dict[str, Any]
        values.update({"gpu_mb": None, "gpu_name": None})
        provider = "psutil"
        if self._provider is not None:
            try:
                values.update(self._provider.sample())
                provider = self._provider.name
            except Exception as e:  # a provider that dies mid-run: keep going on psutil, say why once
                self.skipped[self._provider.name] = "stopped mid-run: %s" % e
                log.warning("stats: %s stopped (%s); falling back to psutil", self._provider.name, e)
                self._close_provider()
        torch = _torch_cuda() if self.device == "cuda" else None
        if torch is not None:
            values["torch_max_allocated_mb"] = torch.cuda.max_memory_allocated() / MB
            if values.get("gpu_mb") is None:
                # NVML may not see our pid (container pid namespace) and a Jetson without jtop has no NVML:
                # torch's reserved memory is then the best per-process figure.
                values["gpu_mb"] = torch.cuda.memory_reserved() / MB
                values["gpu_name"] = values.get("gpu_name") or torch.cuda.get_device_name()
                provider += "+torch"
        values["provider"] = provider
        values["time_s"] = time.perf_counter()
        return StatsSample(**values)

    def _close_provider(self) -> None:
        with self._provider_lock:
            provider, self._provider = self._provider, None
        if provider is not None:
            try:
                provider.close()
            except Exception as e:  # closing a monitor must not mask the run's own outcome
                log.warning("stats: closing %s failed: %s", provider.name, e)

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            sample = self._sample()
            with self._lock:
                self._latest = sample

    def start(self) -> "StatsPoller":
        if self._thread is None and not self._stop.is_set():
            self._thread = threading.Thread(target=self._run, name="stats-poller", daemon=True)
            self._thread.start()
        return self

    def latest(self) -> StatsSample:
        with self._lock:
            return self._latest

    def provider_report(self) -> str:
        lines = ["stats provider: %s" % self.provider]
        for name in ("jtop", "nvml"):
            if name in self.skipped:
                lines.append("  %s skipped: %s" % (name, self.skipped[name]))
        lines.append("  psutil: process RSS and system RAM (always)")
        return "\n".join(lines)

    def stop(self, timeout_s: float = 2.0) -> None:
        """Idempotent; joins the thread (with a timeout) before closing the provider it uses."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
            if self._thread.is_alive():
                log.warning("stats poller did not stop within %.1f s (a provider call is hanging)", timeout_s)
                return
        self._close_provider()

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def __enter__(self) -> "StatsPoller":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()
