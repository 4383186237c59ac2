"""Build TensorRT engines from ONNX (tensorrt 8.5-10.x or TensorRT-RTX), with progress, Ctrl-C and the engine cache."""

import importlib
import logging
import os
import threading
import time
from dataclasses import dataclass
from typing import Any, Dict, List, Optional

from ...errors import BackendUnavailable, EngineBuildError, first_line
from .cache import EngineCache, GpuInfo, atomic_write, engine_stem, slugify
from .onnx_export import OnnxModel

log = logging.getLogger(__name__)

# The desktop/Jetson module first: on a machine with both, `tensorrt` runs on every NVIDIA GPU.
MODULES = ("tensorrt", "tensorrt_rtx_bindings")
INSTALL_HINT = ("on a Jetson: sudo apt install python3-libnvinfer (and create the venv with "
                "--system-site-packages); on a desktop: pip install tensorrt")
_HEARTBEAT_S = 15.0


class TrtLogger:
    """Factory for a logger that forwards TensorRT's messages to logging and keeps the recent errors,
    so a failed build can say why. (A class per module: each module has its own ILogger base.)"""

    @staticmethod
    def create(trt):
        class _Logger(trt.ILogger):
            def __init__(self):
                trt.ILogger.__init__(self)
                self.errors = []  # type: List[str]

            def log(self, severity, msg):
                if severity in (trt.ILogger.Severity.INTERNAL_ERROR, trt.ILogger.Severity.ERROR):
                    self.errors = (self.errors + [msg])[-20:]
                    log.error("TensorRT: %s", msg)
                elif severity == trt.ILogger.Severity.WARNING:
                    log.warning("TensorRT: %s", msg)
                else:
                    log.debug("TensorRT: %s", msg)

        return _Logger()


class TrtApi:
    """One TensorRT Python module and the differences between its versions that the app relies on."""

    def __init__(self, module):
        self.trt = module
        self.module_name = module.__name__.split(".")[0]
        self.is_rtx = "rtx" in self.module_name
        self.version = str(module.__version__)
        self.version_tuple = tuple(int(p) for p in self.version.split(".")[:3] if p.isdigit())
        self.logger = TrtLogger.create(module)

    @property
    def tag(self) -> str:
        """The converter and its version, as it appears in cache file names: trt8.5.2.2, trtrtx1.7.1.116."""
        return ("trtrtx" if self.is_rtx else "trt") + self.version

    @property
    def strongly_typed(self) -> bool:
        """TensorRT-RTX has no precision flags: the ONNX's dtypes are the engine's dtypes."""
        return self.is_rtx

    def onnx_precision(self, precision: str) -> str:
        return "fp16" if (self.strongly_typed and precision == "fp16") else "fp32"

    @property
    def has_io_tensors(self) -> bool:
        """Named I/O tensors and execute_async_v3 arrived in TensorRT 8.5."""
        return hasattr(self.trt.ICudaEngine, "num_io_tensors")


_APIS = {}  # type: Dict[str, TrtApi]


def load_api(module_name: Optional[str] = None) -> TrtApi:
    """The first TensorRT module that imports (JETCAM_TRT_MODULE picks one), else BackendUnavailable."""
    names = [module_name or os.environ.get("JETCAM_TRT_MODULE") or ""]
    names = [n for n in names if n] or list(MODULES)
    failures = []
    for name in names:
        if name in _APIS:
            return _APIS[name]
        try:
            module = importlib.import_module(name)
        except (ImportError, OSError) as e:  # OSError: the module is there but libnvinfer is not
            failures.append("%s (%s)" % (name, first_line(e)))
            continue
        _APIS[name] = TrtApi(module)
        return _APIS[name]
    raise BackendUnavailable("trt", "no TensorRT Python module imports: %s" % "; ".join(failures), INSTALL_HINT)


@dataclass(frozen=True)
class BuildSettings:
    precision: str = "fp32"
    workspace_mb: int = 1024
    target_cc: Optional[str] = None  # TensorRT-RTX only: build for this compute capability (no GPU needed)
    timing_cache_path: Optional[str] = None
    max_batch: int = 0  # > 0: an ONNX with a dynamic batch axis, built for batches 1..max_batch (Triton's plan)


@dataclass
class BuildResult:
    data: bytes
    built: bool
    stem: str
    path: Optional[str]  # None when the engine lives in memory only
    build_seconds: float = 0.0


def timing_cache_name(api: TrtApi, gpu: GpuInfo) -> str:
    return "timing_%s_%s.cache" % (slugify(api.tag), gpu.slug())


def engine_key(api: TrtApi, onnx: OnnxModel, model_name: str, settings: BuildSettings, gpu: GpuInfo) -> Dict[str, Any]:
    """Everything the engine depends on; the sidecar stores it and any difference rebuilds."""
    return {
        "model": model_name,
        "onnx_sha256": onnx.sha256,
        "onnx_precision": onnx.precision,
        "precision": settings.precision,
        "input_shape": list(onnx.input_shape),
        "batch": int(onnx.input_shape[0]),
        "tensorrt_module": api.module_name,
        "tensorrt_version": api.version,
        "gpu_name": gpu.name,
        "compute_capability": gpu.compute_capability,
        "build_args": {"workspace_mb": int(settings.workspace_mb), "strongly_typed": api.strongly_typed,
                       "fp16_flag": settings.precision == "fp16" and not api.strongly_typed, "opset": onnx.opset},
    }


def build_or_load(api: TrtApi, onnx: OnnxModel, model_name: str, settings: BuildSettings, cache: EngineCache,
                  gpu: GpuInfo, force: bool = False, isolated: bool = True) -> BuildResult:
    """The cached engine when its sidecar matches, else a fresh build (saved when the cache is writable).
    `isolated` builds in a child process (trt_child.py says why)."""
    if settings.precision == "fp16" and api.strongly_typed and onnx.precision != "fp16":
        raise EngineBuildError("TensorRT-RTX builds strongly typed networks: fp16 needs an fp16 ONNX, got %s"
                               % onnx.precision)
    key = engine_key(api, onnx, model_name, settings, gpu)
    stem = engine_stem(model_name, onnx.input_shape, settings.precision, api.tag, gpu)
    if not force:
        data = cache.lookup(stem, key)
        if data is not None:
            return BuildResult(data=data, built=False, stem=stem, path=cache.engine_path(stem))
    start = time.perf_counter()
    if isolated:
        from .trt_launch import build_in_child

        data = build_in_child(api, onnx.path, settings, stem)
    else:
        data = build_serialized(api, onnx.path, settings, label=stem)
    seconds = time.perf_counter() - start
    path = cache.store(stem, data, key, {"build_seconds": round(seconds, 2), "onnx_path": onnx.path})
    return BuildResult(data=data, built=True, stem=stem, path=path, build_seconds=seconds)


def parse_onnx(api: TrtApi, builder, onnx_path: str):
    """A network definition from the ONNX file; EngineBuildError listing the parser's errors."""
    trt = api.trt
    flags = 0
    if not api.is_rtx and api.version_tuple < (10,):
        # TensorRT < 10 defaults to implicit batch, which the ONNX parser refuses.
        flags = 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, api.logger)
    with open(onnx_path, "rb") as f:
        ok = parser.parse(f.read(), onnx_path)
    if not ok or parser.num_errors:
        errors = []
        for i in range(parser.num_errors):
            error = parser.get_error(i)
            node = error.node_name() if hasattr(error, "node_name") else error.node()
            errors.append("node %s: %s" % (node, error.desc()) if node not in (-1, "", None) else str(error.desc()))
        raise EngineBuildError("TensorRT %s could not parse %s: %s; fix: re-export the ONNX with opset <= 17 "
                               "or use --backend onnxruntime" % (api.version, os.path.basename(onnx_path),
                                                                 " | ".join(errors) or "no error reported"))
    return network, parser


def _configure(api: TrtApi, builder, settings: BuildSettings):
    trt = api.trt
    config = builder.create_builder_config()
    workspace_bytes = int(settings.workspace_mb) << 20
    if hasattr(config, "set_memory_pool_limit"):  # TensorRT >= 8.4
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_bytes)
    else:
        config.max_workspace_size = workspace_bytes
    if settings.precision == "fp16" and not api.strongly_typed:
        if hasattr(builder, "platform_has_fast_fp16") and not builder.platform_has_fast_fp16:
            log.warning("trt: this GPU has no fast fp16; the fp16 engine may be no faster than fp32")
        config.set_flag(trt.BuilderFlag.FP16)
    if settings.target_cc:
        if not api.is_rtx:
            raise EngineBuildError("a target compute capability needs TensorRT-RTX; tensorrt builds for the GPU it runs on")
        member = "SM" + settings.target_cc.replace(".", "")
        if member not in trt.ComputeCapability.__members__:
            raise EngineBuildError("TensorRT-RTX %s cannot build for compute capability %s; it knows %s"
                                   % (api.version, settings.target_cc, ", ".join(trt.ComputeCapability.__members__)))
        config.num_compute_capabilities = 1
        config.set_compute_capability(trt.ComputeCapability.__members__[member], 0)
    return config


def _load_timing_cache(api: TrtApi, config, path: Optional[str]):
    # TensorRT-RTX 1.2+ made timing caches no-ops (and warns), so only `tensorrt` gets one.
    if not path or api.is_rtx or not hasattr(config, "create_timing_cache"):
        return None
    data = b""
    if os.path.isfile(path):
        with open(path, "rb") as f:
            data = f.read()
        log.info("trt: reusing the timing cache %s", path)
    cache = config.create_timing_cache(data)
    config.set_timing_cache(cache, False)
    return cache


def _save_timing_cache(config, path: Optional[str]) -> None:
    cache = config.get_timing_cache()
    if cache is None or not path:
        return
    try:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        atomic_write(path, bytes(memoryview(cache.serialize())))
    except OSError as e:
        log.warning("trt: timing cache %s not saved (%s); the next build times its layers again", path, e.strerror or e)


def _progress_monitor(api: TrtApi, start: float, cancel: threading.Event):
    """An IProgressMonitor (TensorRT >= 10, TensorRT-RTX) that logs the top phases and cancels on Ctrl-C."""
    trt = api.trt
    if not hasattr(trt, "IProgressMonitor"):
        return None

    class _Monitor(trt.IProgressMonitor):
        def __init__(self):
            trt.IProgressMonitor.__init__(self)
            self.depth = {}  # type: Dict[str, int]

        def phase_start(self, phase_name, parent_phase, num_steps):
            depth = self.depth.get(parent_phase, -1) + 1 if parent_phase else 0
            self.depth[phase_name] = depth
            if depth <= 1:
                log.info("trt build %6.1f s  %s%s", time.perf_counter() - start, "  " * depth, phase_name)

        def phase_finish(self, phase_name):
            self.depth.pop(phase_name, None)

        def step_complete(self, phase_name, step):
            return not cancel.is_set()  # False asks TensorRT to stop the build

    return _Monitor()


def build_serialized(api: TrtApi, onnx_path: str, settings: BuildSettings, label: str = "") -> bytes:
    """Parse and build on a worker thread while this one reports elapsed time and honours Ctrl-C.

    TensorRT releases the GIL while it builds. With a progress monitor (TensorRT >= 10) Ctrl-C stops
    the build; TensorRT 8.x cannot be interrupted, so Ctrl-C returns at once and the process exits
    while the builder thread (a daemon) is abandoned.
    """
    trt = api.trt
    start = time.perf_counter()
    builder = trt.Builder(api.logger)
    network, parser = parse_onnx(api, builder, onnx_path)
    config = _configure(api, builder, settings)
    if settings.max_batch > 0:
        profile = builder.create_optimization_profile()
        for i in range(network.num_inputs):
            tensor = network.get_input(i)
            rest = tuple(tensor.shape)[1:]
            profile.set_shape(tensor.name, (1,) + rest, (settings.max_batch,) + rest, (settings.max_batch,) + rest)
        config.add_optimization_profile(profile)
    timing_cache = _load_timing_cache(api, config, settings.timing_cache_path)
    cancel = threading.Event()
    monitor = _progress_monitor(api, start, cancel)
    if monitor is not None:
        config.progress_monitor = monitor
    outcome = {}  # type: Dict[str, Any]
    api.logger.errors = []

    def work():
        try:
            outcome["data"] = builder.build_serialized_network(network, config)
        except Exception as e:  # handed to the waiting thread, which reports it
            outcome["error"] = e

    log.info("trt: building %s with TensorRT %s (%s, workspace %d MB); this takes minutes on a Jetson",
             label or os.path.basename(onnx_path), api.version, settings.precision, settings.workspace_mb)
    worker = threading.Thread(target=work, name="trt-build", daemon=True)
    worker.start()
    last_beat = start
    try:
        while worker.is_alive():
            worker.join(0.5)
            now = time.perf_counter()
            if now - last_beat >= _HEARTBEAT_S:
                log.info("trt build %6.1f s  still building", now - start)
                last_beat = now
    except KeyboardInterrupt:
        cancel.set()
        if monitor is not None:
            log.warning("trt: Ctrl-C, cancelling the build")
            worker.join()
        else:
            log.warning("trt: Ctrl-C; TensorRT %s cannot cancel a build, leaving it behind", api.version)
        raise
    if "error" in outcome:
        raise EngineBuildError("TensorRT build of %s failed: %s" % (label, outcome["error"])) from outcome["error"]
    data = outcome.get("data")
    if data is None or getattr(data, "nbytes", 1) == 0:
        errors = " | ".join(api.logger.errors[-3:]) or "no error reported"
        raise EngineBuildError("TensorRT %s returned no engine for %s (%s); fix: raise --trt-workspace-mb if "
                               "memory allows, close the desktop or add swap on a Jetson, or try --precision fp32"
                               % (api.version, label or onnx_path, errors))
    if timing_cache is not None:
        _save_timing_cache(config, settings.timing_cache_path)
    log.info("trt build %6.1f s  done (%.1f MB)", time.perf_counter() - start, data.nbytes / 2 ** 20)
    return bytes(memoryview(data))
