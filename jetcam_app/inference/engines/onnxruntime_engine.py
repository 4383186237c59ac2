"""The ONNX Runtime backend: the core's ONNX on the TensorRT or CUDA execution provider when present, else the CPU."""

import logging
import os
import time
from typing import Dict, List, Optional, Tuple

import torch

from ...stats import cpu_threads
from ...errors import BackendUnavailable, ConfigError
from .base import Capabilities, Engine
from .onnx_export import export_onnx

log = logging.getLogger(__name__)

GPU_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider")
INSTALL_HINT = ("desktop: pip install onnxruntime (onnxruntime-gpu for CUDA); Jetson: the onnxruntime-gpu wheel "
                "for your JetPack from NVIDIA's Jetson Zoo")


def _import_ort():
    try:
        import onnxruntime
    except (ImportError, OSError) as e:
        raise BackendUnavailable("onnxruntime", "the onnxruntime module does not import (%s)"
                                 % (str(e).splitlines()[0] or e), INSTALL_HINT) from e
    return onnxruntime


def choose_providers(available: List[str]) -> List[str]:
    """TensorRT, then CUDA, then the CPU, in that order of preference, among those this build offers."""
    chosen = [p for p in GPU_PROVIDERS if p in available]
    return chosen + ["CPUExecutionProvider"]


class OnnxRuntimeEngine(Engine):
    """An onnxruntime InferenceSession on the exported core. Inputs are taken on the CPU (the session
    copies them to the GPU itself when a GPU provider runs); outputs come back as CPU torch tensors."""

    capabilities = Capabilities(device="auto", precisions=("fp32", "fp16"), accelerated=True)

    @classmethod
    def check_available(cls) -> None:
        _import_ort()

    def __init__(self, config, providers: Optional[List[str]] = None):
        super().__init__(config)
        ort = _import_ort()
        self.providers = list(providers) if providers else choose_providers(ort.get_available_providers())
        self.gpu = self.providers[0] in GPU_PROVIDERS
        if config.precision == "fp16" and not self.gpu:
            raise ConfigError("fp16 with onnxruntime needs its TensorRT or CUDA execution provider, and this onnxruntime "
                              "%s offers only %s; use --precision fp32, or install onnxruntime-gpu"
                              % (ort.__version__, ", ".join(ort.get_available_providers())))
        # With the CUDA provider fp16 means an fp16 graph; the TensorRT provider takes the fp32 graph and a flag.
        self.onnx_precision = "fp16" if (config.precision == "fp16" and self.providers[0] == "CUDAExecutionProvider") else "fp32"
        self.input_dtype = torch.float16 if self.onnx_precision == "fp16" else torch.float32
        self.session = None
        self.onnx_path = None  # type: Optional[str]
        self.input_shape = ()  # type: Tuple[int, ...]
        self._input_name = ""
        self._output_names = []  # type: List[str]

    def _provider_options(self) -> List[Dict[str, object]]:
        options = []  # type: List[Dict[str, object]]
        for provider in self.providers:
            if provider == "TensorrtExecutionProvider":
                options.append({
                    "trt_fp16_enable": self.config.precision == "fp16",
                    "trt_max_workspace_size": int(self.config.trt_workspace_mb) << 20,
                    "trt_engine_cache_enable": True,
                    "trt_engine_cache_path": os.path.join(self.config.cache_dir, "onnxruntime_trt"),
                    "trt_timing_cache_enable": True,
                })
            else:
                options.append({})
        return options

    def load(self, network: torch.nn.Module, example: torch.Tensor, model_name: str) -> None:
        start = time.perf_counter()
        ort = _import_ort()
        # An example of several frames (several sources) gets a free batch axis on the CPU, where a padded slot would
        # cost a whole frame; GPU providers keep the fixed batch (the TensorRT provider builds an engine per shape).
        dynamic = int(example.shape[0]) > 1 and not self.gpu
        onnx = export_onnx(network, example, self.config.cache_dir, model_name, precision=self.onnx_precision,
                           dynamic_batch=dynamic)
        self.onnx_path = onnx.path
        if "TensorrtExecutionProvider" in self.providers:
            os.makedirs(os.path.join(self.config.cache_dir, "onnxruntime_trt"), exist_ok=True)
        options = ort.SessionOptions()
        options.intra_op_num_threads = cpu_threads(self.config.threads)
        # Spinning idle workers keep the cores busy after each run and slow the torch pre/postprocessing
        # that follows on the same cores (most of all on a machine with few cores).
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(onnx.path, sess_options=options, providers=self.providers,
                                            provider_options=self._provider_options())
        running = self.session.get_providers()
        if self.gpu and running[0] not in GPU_PROVIDERS:
            # onnxruntime falls back to the CPU when a GPU provider cannot start (no device, CUDA libraries missing).
            if self.config.precision == "fp16":
                raise ConfigError("onnxruntime could not start %s (see its messages above), so fp16 cannot run; "
                                  "use --precision fp32 or fix the CUDA install" % self.providers[0])
            log.warning("onnxruntime: %s did not start; running on the CPU", self.providers[0])
        self.providers = running
        inputs = self.session.get_inputs()
        self._input_name = inputs[0].name
        # a user's file says its own input type (an fp16 export takes float16 whatever --precision says)
        self.input_dtype = torch.float16 if inputs[0].type == "tensor(float16)" else torch.float32
        self.input_shape = tuple(d if isinstance(d, int) else 0 for d in inputs[0].shape)  # 0: a free axis
        self._output_names = [o.name for o in self.session.get_outputs()]
        self.load_seconds = time.perf_counter() - start
        log.info("onnxruntime %s: %s on %s, %d threads, ready in %.1f s", ort.__version__, model_name,
                 ", ".join(running), options.intra_op_num_threads, self.load_seconds)

    def infer(self, batch: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        x = batch.detach().to("cpu", self.input_dtype).contiguous()
        if len(x.shape) != len(self.input_shape) or any(want and want != got for want, got in zip(self.input_shape,
                                                                                                   x.shape)):
            raise ConfigError("the ONNX model was exported for input %s, got %s" % (self.input_shape, tuple(x.shape)))
        outputs = self.session.run(self._output_names, {self._input_name: x.numpy()})
        return tuple(torch.from_numpy(o) for o in outputs)

    def close(self) -> None:
        self.session = None
