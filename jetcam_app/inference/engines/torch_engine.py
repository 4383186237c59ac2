"""PyTorch engines: the unoptimised reference on the CPU, and CUDA (fp16 with channels_last) whose forward the fused graph captures."""

import logging
import time
from typing import Optional, Tuple

import torch

from ...config import check_precision
from ...stats import cpu_threads
from ...errors import BackendUnavailable, ConfigError
from .base import Capabilities, Engine

log = logging.getLogger(__name__)


def as_tuple(outputs) -> Tuple[torch.Tensor, ...]:
    """A network's outputs (tensor, list, tuple or dict) as a tuple of tensors, in order."""
    if isinstance(outputs, torch.Tensor):
        return (outputs,)
    if isinstance(outputs, dict):
        return tuple(outputs.values())
    return tuple(outputs)


class TorchCpuEngine(Engine):
    """torch on the CPU, fp32, under torch.inference_mode()."""

    capabilities = Capabilities(device="cpu", precisions=("fp32",))
    device_type = "cpu"

    def __init__(self, config):
        super().__init__(config)
        self.device = torch.device(self.device_type)
        self.network = None  # type: Optional[torch.nn.Module]
        check_precision(config.backend, config.precision, self.capabilities.precisions)

    @classmethod
    def for_onnx_file(cls, config) -> Engine:
        # the core's forward runs the file on ONNX Runtime's CPU provider (the reference a bench compares with)
        log.info("--backend cpu with a .onnx file: ONNX Runtime's CPU provider runs it")
        return super().for_onnx_file(config)

    def load(self, network, example, model_name) -> None:
        start = time.perf_counter()
        threads = cpu_threads(self.config.threads)
        if torch.get_num_threads() != threads:
            torch.set_num_threads(threads)
        self.network = network.to(self.device).eval()
        self.load_seconds = time.perf_counter() - start

    def infer(self, batch: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        with torch.inference_mode():
            return as_tuple(self.network(batch))

    def close(self) -> None:
        self.network = None


class TorchCudaEngine(TorchCpuEngine):
    """torch on CUDA: fp16 runs the network in half with channels_last. The app's fused graph (fused_stages.py)
    captures forward() with the stages around it; capture_graph() captures the forward alone, for callers that
    time the engine by itself."""

    capabilities = Capabilities(device="cuda", precisions=("fp32", "fp16"), fuses_stages=True)
    device_type = "cuda"

    @classmethod
    def check_available(cls) -> None:
        if not torch.cuda.is_available():
            build = "a CPU-only build" if torch.version.cuda is None else "built for CUDA %s" % torch.version.cuda
            raise BackendUnavailable(
                "cuda", "torch %s (%s) sees no CUDA device" % (torch.__version__, build),
                "use --backend cpu here; on a Jetson use JetPack's torch (NVIDIA's wheel), not pip's")

    @classmethod
    def for_onnx_file(cls, config) -> Engine:
        """ONNX Runtime on its CUDA execution provider: PyTorch cannot run an ONNX file."""
        import dataclasses

        from .onnxruntime_engine import OnnxRuntimeEngine, _import_ort

        ort = _import_ort()
        available = ort.get_available_providers()
        if "CUDAExecutionProvider" not in available:
            raise BackendUnavailable("cuda", "a .onnx file runs on CUDA through ONNX Runtime's CUDA execution "
                                     "provider, and this onnxruntime %s offers only %s"
                                     % (ort.__version__, ", ".join(available)),
                                     "--backend trt (TensorRT builds the file), --backend onnxruntime (its CPU "
                                     "provider here), or pip install onnxruntime-gpu")
        log.info("--backend cuda with a .onnx file: ONNX Runtime's CUDA execution provider runs it")
        return OnnxRuntimeEngine(dataclasses.replace(config, backend="onnxruntime"),
                                 providers=["CUDAExecutionProvider", "CPUExecutionProvider"])

    def __init__(self, config):
        super().__init__(config)
        self.input_dtype = torch.float16 if config.precision == "fp16" else torch.float32
        self.channels_last = config.precision == "fp16"
        self._graph = None
        self._example = None  # type: Optional[torch.Tensor]  # the warm-up input, kept for capture_graph()
        self._static_in = None  # type: Optional[torch.Tensor]
        self._static_out = ()  # type: Tuple[torch.Tensor, ...]

    def load(self, network, example, model_name) -> None:
        start = time.perf_counter()
        torch.backends.cudnn.benchmark = True
        # "fp32" means fp32: Ampere and newer GPUs (Orin included) would otherwise run convolutions in TF32,
        # whose ~1e-3 relative error is then mistaken for an error of the engine under test.
        strict = self.input_dtype == torch.float32
        torch.backends.cudnn.allow_tf32 = not strict
        torch.backends.cuda.matmul.allow_tf32 = not strict
        network = network.to(self.device).eval()
        if self.input_dtype == torch.float16:
            network = network.half()
        if self.channels_last:
            network = network.to(memory_format=torch.channels_last)
        self.network = network
        example = self._prepare(example.to(self.device, self.input_dtype))
        with torch.inference_mode():
            for _ in range(3):  # warm-up: cudnn autotuning and lazy allocations happen here, not on frame 1
                self.network(example)
        self._example = example
        torch.cuda.synchronize()
        self.load_seconds = time.perf_counter() - start

    def _prepare(self, batch: torch.Tensor) -> torch.Tensor:
        if batch.dtype != self.input_dtype:
            batch = batch.to(self.input_dtype)
        if self.channels_last:
            batch = batch.contiguous(memory_format=torch.channels_last)
        return batch

    def capture_graph(self) -> None:
        """Replay the forward as a CUDA graph of its own from now on (static input shape). The pipeline never
        calls this: where the fused graph runs it captures forward() itself, and a second graph would hold
        memory for nothing."""
        self._static_in = self._example.clone()
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.inference_mode():
            with torch.cuda.stream(stream):
                for _ in range(3):
                    self.network(self._static_in)
            torch.cuda.current_stream().wait_stream(stream)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                self._static_out = as_tuple(self.network(self._static_in))
        self._graph = graph
        log.info("cuda: forward captured in a CUDA graph (input %s)", tuple(self._static_in.shape))

    def infer(self, batch: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        batch = self._prepare(batch)
        with torch.inference_mode():
            if self._graph is None:
                return as_tuple(self.network(batch))
            if batch.shape != self._static_in.shape:
                raise ConfigError("the engine's CUDA graph needs a fixed input shape: captured %s, got %s"
                                  % (tuple(self._static_in.shape), tuple(batch.shape)))
            self._static_in.copy_(batch)
            self._graph.replay()
            # The graph's outputs are overwritten by the next replay: hand out copies.
            return tuple(t.clone() for t in self._static_out)

    def fixed_batch(self) -> int:
        """The engine's own CUDA graph (capture_graph()) replays the batch size it was captured at; eager runs any."""
        return int(self._static_in.shape[0]) if self._graph is not None else 0

    def forward(self, batch: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        """The network on a batch, without this engine's own graph: for a caller's capture."""
        with torch.inference_mode():
            return as_tuple(self.network(self._prepare(batch)))

    def synchronize(self) -> None:
        torch.cuda.synchronize()

    def memory_mb(self) -> Optional[float]:
        return torch.cuda.memory_allocated() / 2 ** 20

    def close(self) -> None:
        self._graph = None
        self._example = self._static_in = None
        self._static_out = ()
        self.network = None
