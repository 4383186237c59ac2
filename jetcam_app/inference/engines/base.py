"""The Engine interface every backend implements, and the helper that picks one by name."""

from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple

import torch

from ...config import EngineConfig
from ...errors import BackendUnavailable
from ...registry import BACKENDS


@dataclass(frozen=True)
class Capabilities:
    """What a backend declares about itself, so nothing outside the registry compares backend names.

    device: where it runs ("cpu", "cuda", or "auto" when it picks at load time, e.g. ONNX Runtime's providers);
    precisions: the --precision values it accepts; accelerated: an optimising runtime (TensorRT, ONNX Runtime)
    rather than eager PyTorch, i.e. an answer to the lab's question 2; fuses_stages: the fused CUDA graph
    (pipeline.cuda_graph) may capture preprocessing, its forward() and postprocessing as one graph;
    asynchronous: the work runs elsewhere (a server) and the engine offers infer_async() and result(), so the
    pipeline keeps several frames in flight."""

    device: str = "cpu"
    precisions: Tuple[str, ...] = ("fp32",)
    accelerated: bool = False
    fuses_stages: bool = False
    asynchronous: bool = False


class Engine:
    """Runs a network core: tensors in, a tuple of tensors out.

    `device` and `input_dtype` tell the adapter where to put the preprocessed batch.
    Outputs may live on any device; adapters' postprocess moves what they need.
    """

    capabilities = Capabilities()

    def __init__(self, config: EngineConfig):
        self.config = config
        self.device = torch.device("cpu")
        self.input_dtype = torch.float32
        self.input_shape = ()  # type: Tuple[int, ...]  # fixed-shape engines: the shape they were built for
        self.load_seconds = 0.0

    @classmethod
    def check_available(cls) -> None:
        """Raise BackendUnavailable(reason, install hint) when this backend cannot run here."""

    @classmethod
    def for_onnx_file(cls, config: EngineConfig) -> "Engine":
        """The engine that runs a user's ONNX file for this backend: itself, where it takes the file (ONNX Runtime,
        TensorRT, Triton); PyTorch backends hand it to ONNX Runtime or refuse it with a fix."""
        return _checked(cls, config)

    def load(self, network: torch.nn.Module, example: torch.Tensor, model_name: str) -> None:
        """Prepare `network` (build, convert or load from the cache) for inputs shaped like `example`."""
        raise NotImplementedError

    def infer(self, batch: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        raise NotImplementedError

    def fixed_batch(self) -> int:
        """The batch size a fixed-shape engine was built for (its inputs must be padded to it); 0 = any batch.
        Engines built from the example's shape (ONNX Runtime, TensorRT, torch2trt) keep it in `input_shape`."""
        return int(self.input_shape[0]) if self.input_shape else 0

    def infer_async(self, batch: torch.Tensor) -> Any:
        """Engines declaring `capabilities.asynchronous`: start inference and return a handle for result()."""
        raise NotImplementedError

    def result(self, handle: Any) -> Optional[Tuple[torch.Tensor, ...]]:
        """The outputs of infer_async()'s request, or None when the frame was dropped (the engine counts it)."""
        raise NotImplementedError

    def served_adapter(self, adapter) -> Any:
        """An engine whose model takes frames or gives results itself (a Triton model exported with --input uint8 or
        --output detections): the adapter the eager stages should use instead, whose preprocess() gives what the
        model takes and postprocess() reads what it gives (triton/wire.py's CodecAdapter); None: the adapter as it
        is. Called after load()."""
        return None

    def server_counters(self) -> Optional[Dict[str, int]]:
        """A remote engine's cumulative server statistics (Triton: count and ns per phase); None for local ones."""
        return None

    def health(self) -> Dict[str, Any]:
        """Counters for summary.json (reconnects, dropped frames) from engines that can lose frames."""
        return {}

    def synchronize(self) -> None:
        """Wait for queued device work, so stage timings are honest."""

    def memory_mb(self) -> Optional[float]:
        """Device memory this engine's process holds, if the backend can tell."""
        return None

    def close(self) -> None:
        """Free resources; safe to call twice."""


def available_backends() -> List[str]:
    """Names of the backends whose check_available() passes here."""
    names = []
    for name in BACKENDS.choices():
        try:
            BACKENDS.get(name).check_available()
        except BackendUnavailable:
            continue
        except ImportError:
            continue
        names.append(name)
    return names


def capabilities_of(backend: str) -> Capabilities:
    """A backend's declared capabilities; imports its module (not its runtime) through the registry."""
    return BACKENDS.get(backend).capabilities


def create_engine(config: EngineConfig, onnx_file: bool = False) -> Engine:
    """The engine named in config, after checking it can run here (BackendUnavailable otherwise). `onnx_file`: the
    core is a user's ONNX file, and the backend says what that means to it (Engine.for_onnx_file)."""
    cls = BACKENDS.get(config.backend)
    if onnx_file:
        return cls.for_onnx_file(config)
    return _checked(cls, config)


def _checked(cls, config: EngineConfig) -> Engine:
    try:
        cls.check_available()
    except BackendUnavailable as e:
        raise BackendUnavailable(e.backend, e.reason, e.hint, available_backends()) from e
    return cls(config)
