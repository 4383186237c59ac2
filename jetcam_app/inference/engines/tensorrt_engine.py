"""The TensorRT backend: export the core to ONNX, build or reuse a cached engine, run it on torch CUDA buffers."""

import logging
import os
import time
from typing import List, Optional, Tuple

import numpy as np
import torch

from ...errors import BackendUnavailable, ConfigError, EngineBuildError, JetcamError
from .base import Capabilities, Engine
from .cache import EngineCache, current_gpu
from .onnx_export import export_onnx
from .trt_build import BuildSettings, TrtApi, build_or_load, load_api, timing_cache_name

log = logging.getLogger(__name__)

_NUMPY_TO_TORCH = {
    np.dtype(np.float32): torch.float32, np.dtype(np.float16): torch.float16, np.dtype(np.int32): torch.int32,
    np.dtype(np.int64): torch.int64, np.dtype(np.int8): torch.int8, np.dtype(np.uint8): torch.uint8,
    np.dtype(np.bool_): torch.bool,
}


def torch_dtype(api: TrtApi, trt_dtype) -> torch.dtype:
    return _NUMPY_TO_TORCH[np.dtype(api.trt.nptype(trt_dtype))]


class TensorRTEngine(Engine):
    """A TensorRT engine built from the core's ONNX and cached in engine.cache_dir.

    Inputs and outputs are torch CUDA tensors whose addresses are handed to TensorRT, so no pycuda
    is needed. TensorRT >= 8.5 (and TensorRT-RTX) run through named tensors and execute_async_v3;
    older versions through a bindings list and execute_async_v2.
    """

    capabilities = Capabilities(device="cuda", precisions=("fp32", "fp16"), accelerated=True)

    @classmethod
    def check_available(cls) -> None:
        api = load_api()
        if not torch.cuda.is_available():
            raise BackendUnavailable(
                "trt", "%s %s is installed but torch sees no CUDA device to run engines on"
                % (api.module_name, api.version),
                "run on the Jetson or a PC with an NVIDIA GPU and a CUDA build of torch")

    def __init__(self, config):
        super().__init__(config)
        self.device = torch.device("cuda")
        self.api = None  # type: Optional[TrtApi]
        self._runtime = None
        self.engine = None
        self.context = None
        self.engine_path = None  # type: Optional[str]
        self.built = False
        self.input_shape = ()  # type: Tuple[int, ...]
        self._input_name = ""
        self._output_names = []  # type: List[str]
        self._outputs = []  # type: List[torch.Tensor]
        self._bindings = []  # type: List[int]
        self._input_index = 0
        self._output_indices = []  # type: List[int]

    def load(self, network: torch.nn.Module, example: torch.Tensor, model_name: str) -> None:
        start = time.perf_counter()
        self.api = api = load_api()
        gpu = current_gpu()
        if gpu is None:
            raise BackendUnavailable("trt", "torch sees no CUDA device", "run on a machine with an NVIDIA GPU")
        cache_dir = self.config.cache_dir
        onnx = export_onnx(network, example, cache_dir, model_name, precision=api.onnx_precision(self.config.precision))
        settings = BuildSettings(precision=self.config.precision, workspace_mb=self.config.trt_workspace_mb,
                                 timing_cache_path=os.path.join(cache_dir, timing_cache_name(api, gpu)))
        cache = EngineCache(cache_dir)
        result = build_or_load(api, onnx, model_name, settings, cache, gpu)
        runtime = api.trt.Runtime(api.logger)
        engine = runtime.deserialize_cuda_engine(result.data)
        if engine is None and not result.built:
            log.warning("trt: the cached engine %s does not deserialize; rebuilding it", result.path)
            result = build_or_load(api, onnx, model_name, settings, cache, gpu, force=True)
            engine = runtime.deserialize_cuda_engine(result.data)
        if engine is None:
            raise EngineBuildError("TensorRT %s could not load the engine it built for %s (%s); fix: delete %s* "
                                   "and run again" % (api.version, model_name, " | ".join(api.logger.errors[-3:]),
                                                      os.path.join(cache_dir, result.stem)))
        self._runtime = runtime  # the runtime must outlive its engines
        self.engine = engine
        self.engine_path = result.path
        self.built = result.built
        self.context = engine.create_execution_context()
        if self.context is None:
            raise EngineBuildError("TensorRT could not create an execution context for %s (out of GPU memory?); "
                                   "fix: close other GPU programs" % model_name)
        if api.has_io_tensors:
            self._bind_named(list(onnx.output_names))
        else:
            self._bind_indexed(list(onnx.output_names))
        self.load_seconds = time.perf_counter() - start
        log.info("trt: %s ready in %.1f s (%s, input %s %s)", model_name, self.load_seconds,
                 "built" if self.built else "from the cache", self.input_shape, self.input_dtype)

    def _bind_named(self, onnx_outputs: List[str]) -> None:
        trt, engine = self.api.trt, self.engine
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        inputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        outputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        if len(inputs) != 1:
            raise EngineBuildError("the engine has %d inputs (%s); the app feeds one image tensor" % (len(inputs), inputs))
        # The adapter's postprocess expects the ONNX's output order; the engine may list them differently.
        if sorted(outputs) == sorted(onnx_outputs):
            outputs = list(onnx_outputs)
        self._input_name = inputs[0]
        self.input_shape = tuple(engine.get_tensor_shape(self._input_name))
        self.input_dtype = torch_dtype(self.api, engine.get_tensor_dtype(self._input_name))
        self._output_names = outputs
        self._outputs = []
        for name in outputs:
            shape = tuple(self.context.get_tensor_shape(name))
            out = torch.empty(shape, dtype=torch_dtype(self.api, engine.get_tensor_dtype(name)), device=self.device)
            self.context.set_tensor_address(name, out.data_ptr())
            self._outputs.append(out)

    def _bind_indexed(self, onnx_outputs: List[str]) -> None:
        engine = self.engine
        count = engine.num_bindings
        inputs = [i for i in range(count) if engine.binding_is_input(i)]
        outputs = [i for i in range(count) if not engine.binding_is_input(i)]
        if len(inputs) != 1:
            raise EngineBuildError("the engine has %d inputs; the app feeds one image tensor" % len(inputs))
        by_name = {engine.get_binding_name(i): i for i in outputs}
        if sorted(by_name) == sorted(onnx_outputs):
            outputs = [by_name[n] for n in onnx_outputs]
        self._input_index = inputs[0]
        self.input_shape = tuple(engine.get_binding_shape(self._input_index))
        self.input_dtype = torch_dtype(self.api, engine.get_binding_dtype(self._input_index))
        self._output_indices = outputs
        self._bindings = [0] * count
        self._outputs = []
        for i in outputs:
            out = torch.empty(tuple(engine.get_binding_shape(i)), dtype=torch_dtype(self.api, engine.get_binding_dtype(i)),
                              device=self.device)
            self._bindings[i] = out.data_ptr()
            self._outputs.append(out)

    def infer(self, batch: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        x = batch.to(self.device, self.input_dtype, non_blocking=True).contiguous()
        if tuple(x.shape) != self.input_shape:
            raise ConfigError("the TensorRT engine was built for input %s, got %s" % (self.input_shape, tuple(x.shape)))
        stream = torch.cuda.current_stream(self.device).cuda_stream
        if self.api.has_io_tensors:
            self.context.set_tensor_address(self._input_name, x.data_ptr())
            ok = self.context.execute_async_v3(stream)
        else:
            self._bindings[self._input_index] = x.data_ptr()
            ok = self.context.execute_async_v2(self._bindings, stream)
        if not ok:
            raise JetcamError("TensorRT could not run the engine %s; fix: delete it so it is rebuilt"
                              % (self.engine_path or "(in memory)"))
        # The output buffers are reused by the next call: hand out copies (queued on the same stream).
        return tuple(out.clone() for out in self._outputs)

    def synchronize(self) -> None:
        torch.cuda.synchronize(self.device)

    # No memory_mb(): TensorRT allocates its weights and activations outside torch's allocator, so
    # torch.cuda.memory_allocated() would under-report; the stats poller (NVML / jtop) sees the process.

    def close(self) -> None:
        self.context = None
        self.engine = None
        self._runtime = None
        self._outputs = []
