"""PyTorch engines: the unoptimised reference on the CPU and on CUDA (fp16, channels_last, CUDA graphs)."""
from __future__ import annotations

import logging
import os
import time
from typing import Optional, Tuple

import torch

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


def cpu_threads(requested: int) -> int:
    """0 = one per usable core (sched_getaffinity sees container and taskset limits)."""
    if requested > 0:
        return requested
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:
        return max(1, os.cpu_count() or 1)


class TorchCpuEngine(Engine):
    """torch on the CPU, fp32, under torch.inference_mode()."""

    name = "cpu"
    capabilities = Capabilities(device="cpu", precisions=("fp32",))
    device_type = "cpu"

    def __init__(self, config):
        super().__init__(config)
        self.device = torch.device(self.device_type)
        self.network = None  # type: Optional[torch.nn.Module]
        if config.precision == "fp16" and self.device_type == "cpu":
            raise ConfigError("fp16 runs on CUDA only; use --precision fp32 with --backend cpu, or --backend cuda")

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
    """torch on CUDA: fp16 runs the network in half with channels_last; `cuda_graph` captures the
    forward once with static shapes and replays it per frame (removes per-kernel launch overhead)."""

    name = "cuda"
    capabilities = Capabilities(device="cuda", precisions=("fp32", "fp16"), fuses_stages=True)
    device_type = "cuda"

    @classmethod
    def check_available(cls) -> None:
        if not torch.cuda.is_available():
            build = "a CPU-only build" if torch.version.cuda is None else "built for CUDA %s" % torch.version.cuda
            raise BackendUnavailable(
                "cuda", "torch %s (%s) sees no CUDA device" % (torch.__version__, build),
                "use --backend cpu here; on a Jetson use JetPack's torch (NVIDIA's wheel), not pip's")

    def __init__(self, config):
        super().__init__(config)
        self.input_dtype = torch.float16 if config.precision == "fp16" else torch.float32
        self.channels_last = config.precision == "fp16"
        self._graph = None
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
        if self.config.cuda_graph:
            self._capture_graph(example)
        torch.cuda.synchronize()
        self.load_seconds = time.perf_counter() - start

    def _prepare(self, batch: torch.Tensor) -> torch.Tensor:
        if batch.dtype != self.input_dtype:
            batch = batch.to(self.input_dtype)
        if self.channels_last:
            batch = batch.contiguous(memory_format=torch.channels_last)
        return batch

    def _capture_graph(self, example: torch.Tensor) -> None:
        self._static_in = example.clone()
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
        log.info("cuda: forward captured in a CUDA graph (input %s)", tuple(example.shape))

    def infer(self, batch: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        batch = self._prepare(batch)
        with torch.inference_mode():
            if self._graph is None:
                return as_tuple(self.network(batch))
            if batch.shape != self._static_in.shape:
                raise ConfigError("--cuda-graph needs a fixed input shape: captured %s, got %s"
                                  % (tuple(self._static_in.shape), tuple(batch.shape)))
            self._static_in.copy_(batch)
            self._graph.replay()
            # The graph's outputs are overwritten by the next replay: hand out copies.
            return tuple(t.clone() for t in self._static_out)

    def fixed_batch(self) -> int:
        """--cuda-graph replays the forward captured at the example's batch size; eager runs any batch."""
        return int(self._static_in.shape[0]) if self._graph is not None else 0

    @property
    def fuses_stages(self) -> bool:
        """With --cuda-graph the pipeline captures preprocessing + forward + postprocessing in one graph
        (graphed_stages.py), calling forward() inside its capture."""
        return bool(self.config.cuda_graph)

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
        self._static_in = None
        self._static_out = ()
        self.network = None
