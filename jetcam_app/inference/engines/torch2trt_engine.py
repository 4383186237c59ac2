"""The torch2trt backend (the lab's converter): convert the core on the GPU, cache the TRTModule's state_dict."""

import io
import logging
import time
from typing import Optional, Tuple

import torch

from ...errors import BackendUnavailable, ConfigError, EngineBuildError, first_line
from ..safe_load import load_tensors
from .base import Capabilities, Engine
from .cache import EngineCache, current_gpu, engine_stem
from .crossval import cross_validate
from .onnx_export import network_digest
from .torch_engine import as_tuple

log = logging.getLogger(__name__)

INSTALL_HINT = ("on the Jetson: git clone https://github.com/NVIDIA-AI-IOT/torch2trt && cd torch2trt && "
                "python3 setup.py install --user (it uses JetPack's TensorRT); or use --backend trt")
SUFFIX = ".torch2trt.pth"


def _import_torch2trt():
    try:
        import torch2trt
    except (ImportError, OSError) as e:
        raise BackendUnavailable("torch2trt", "the torch2trt module does not import (%s)" % (str(e).splitlines()[0] or e),
                                 INSTALL_HINT) from e
    return torch2trt


def _version_of(module, dist: str) -> str:
    version = getattr(module, "__version__", None)
    if version:
        return str(version)
    try:
        from importlib import metadata  # novermin: guarded
        return metadata.version(dist)
    except (ImportError, ValueError, LookupError):  # PackageNotFoundError is a LookupError (ModuleNotFoundError on 3.8)
        return "unknown"


_BYTES_KEYS = "jetcam_bytes_keys"


def pack_state(state) -> dict:
    """The TRTModule state (the engine as bytes, name lists) with bytes turned into uint8 tensors, so the
    cache loads with torch.load(weights_only=True): no pickled object is ever run from the cache."""
    out = {}
    byte_keys = []
    for name, value in state.items():
        if isinstance(value, (bytes, bytearray)):
            out[name] = (torch.frombuffer(bytearray(value), dtype=torch.uint8).clone() if value
                         else torch.zeros(0, dtype=torch.uint8))
            byte_keys.append(name)
        else:
            out[name] = value
    out[_BYTES_KEYS] = byte_keys
    return out


def unpack_state(data: bytes) -> Optional[dict]:
    """pack_state's dict back, loaded with weights_only=True; None when the file is not of that form."""
    try:
        state = load_tensors(io.BytesIO(data))
    except Exception as e:  # noqa: BLE001 - any refusal (pickled objects, garbage) means: convert again
        log.warning("torch2trt: the cached state does not load as plain data (%s); converting again",
                    first_line(e))
        return None
    if not isinstance(state, dict) or not isinstance(state.get(_BYTES_KEYS), list):
        return None
    for name in state.pop(_BYTES_KEYS):
        state[name] = bytearray(state[name].numpy().tobytes())
    return state


class Torch2TRTEngine(Engine):
    """torch2trt on the core with fp16_mode per precision; inputs and outputs stay fp32 CUDA tensors."""

    capabilities = Capabilities(device="cuda", precisions=("fp32", "fp16"), accelerated=True)

    @classmethod
    def for_onnx_file(cls, config) -> Engine:
        raise ConfigError("torch2trt converts PyTorch modules, and a .onnx file is not one; fix: --backend trt "
                          "(the file goes straight into TensorRT's builder) or --backend onnxruntime")

    @classmethod
    def check_available(cls) -> None:
        _import_torch2trt()
        if not torch.cuda.is_available():
            raise BackendUnavailable("torch2trt", "torch2trt imports but torch sees no CUDA device",
                                     "run on the Jetson or a PC with an NVIDIA GPU")

    def __init__(self, config):
        super().__init__(config)
        self.device = torch.device("cuda")
        self.module = None  # type: Optional[torch.nn.Module]
        self.engine_path = None  # type: Optional[str]
        self.built = False
        self.input_shape = ()  # type: Tuple[int, ...]

    def load(self, network: torch.nn.Module, example: torch.Tensor, model_name: str) -> None:
        start = time.perf_counter()
        t2t = _import_torch2trt()
        import tensorrt

        gpu = current_gpu()
        if gpu is None:
            raise BackendUnavailable("torch2trt", "torch sees no CUDA device", "run on a machine with an NVIDIA GPU")
        fp16 = self.config.precision == "fp16"
        self.input_shape = tuple(int(d) for d in example.shape)
        key = {
            "model": model_name, "network_sha256": network_digest(network), "precision": self.config.precision,
            "input_shape": list(self.input_shape), "batch": self.input_shape[0],
            "torch2trt_version": _version_of(t2t, "torch2trt"), "tensorrt_version": str(tensorrt.__version__),
            "gpu_name": gpu.name, "compute_capability": gpu.compute_capability,
            "build_args": {"workspace_mb": int(self.config.trt_workspace_mb), "fp16_mode": fp16},
            "state_format": "tensors-only",  # older caches were pickles: never loaded, converted again
        }
        stem = engine_stem(model_name, self.input_shape, self.config.precision,
                           "torch2trt-trt%s" % tensorrt.__version__, gpu)
        cache = EngineCache(self.config.cache_dir, suffix=SUFFIX)
        network = network.to(self.device).eval()
        example = example.to(self.device, torch.float32)
        data = cache.lookup(stem, key)
        module = None
        if data is not None:
            state = unpack_state(data)
            module = t2t.TRTModule() if state is not None else None
            if module is not None:
                module.load_state_dict(state)
            if module is not None and getattr(module, "engine", None) is None:
                log.warning("torch2trt: the cached %s did not load; converting again", cache.engine_path(stem))
                module = None
        if module is None:
            module = self._convert(t2t, network, example, fp16, model_name)
            buffer = io.BytesIO()
            torch.save(pack_state(module.state_dict()), buffer)
            self.engine_path = cache.store(stem, buffer.getvalue(), key, {"build_seconds": round(time.perf_counter() - start, 2)})
            self.built = True
        else:
            self.engine_path = cache.engine_path(stem)
        self.module = module
        with torch.inference_mode():
            # torch2trt warns rather than fails on ops it cannot convert; compare once against torch.
            report = cross_validate(as_tuple(network(example)), as_tuple(module(example)), self.config.precision)
        if not report.ok:
            log.warning("torch2trt: %s differs from torch on the GPU: %s", model_name, report.summary())
        network.to("cpu")
        torch.cuda.empty_cache()
        self.load_seconds = time.perf_counter() - start
        log.info("torch2trt: %s ready in %.1f s (%s)", model_name, self.load_seconds,
                 "converted" if self.built else "from the cache")

    def _convert(self, t2t, network, example, fp16: bool, model_name: str):
        log.info("torch2trt: converting %s (fp16_mode=%s, workspace %d MB); this takes minutes on a Jetson",
                 model_name, fp16, self.config.trt_workspace_mb)
        try:
            with torch.no_grad():
                module = t2t.torch2trt(network, [example], fp16_mode=fp16,
                                       max_workspace_size=int(self.config.trt_workspace_mb) << 20)
        except (RuntimeError, AttributeError, TypeError, ValueError, KeyError) as e:
            raise EngineBuildError("torch2trt could not convert %s: %s; fix: use --backend trt (the ONNX path)"
                                   % (model_name, first_line(e))) from e
        if getattr(module, "engine", None) is None:
            raise EngineBuildError("torch2trt returned no engine for %s; fix: raise --trt-workspace-mb if memory "
                                   "allows, or use --backend trt" % model_name)
        return module

    def infer(self, batch: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        x = batch.to(self.device, torch.float32, non_blocking=True).contiguous()
        if tuple(x.shape) != self.input_shape:
            raise ConfigError("the torch2trt engine was converted for input %s, got %s" % (self.input_shape, tuple(x.shape)))
        with torch.inference_mode():
            return as_tuple(self.module(x))

    def synchronize(self) -> None:
        torch.cuda.synchronize(self.device)

    # No memory_mb(): TensorRT allocates its weights and activations outside torch's allocator, so
    # torch.cuda.memory_allocated() would under-report; the stats poller (NVML / jtop) sees the process.

    def close(self) -> None:
        self.module = None
