"""What `--backend cuda` and `--backend torch2trt` mean for a user's ONNX file, which no PyTorch engine can run."""

import dataclasses
import logging

from ...config import EngineConfig
from ...errors import BackendUnavailable, ConfigError
from .base import Engine

log = logging.getLogger(__name__)


def engine_for_onnx_file(config: EngineConfig) -> Engine:
    """cuda: ONNX Runtime on its CUDA execution provider (a clear error where this onnxruntime has none);
    torch2trt: refused, naming the backends that take the file."""
    if config.backend == "torch2trt":
        raise ConfigError("torch2trt converts PyTorch modules, and a .onnx file is not one; fix: --backend trt "
                          "(the file goes straight into TensorRT's builder) or --backend onnxruntime")
    from .onnxruntime_engine import OnnxRuntimeEngine, _import_ort

    ort = _import_ort()
    available = ort.get_available_providers()
    if "CUDAExecutionProvider" not in available:
        raise BackendUnavailable("cuda", "a .onnx file runs on CUDA through ONNX Runtime's CUDA execution provider, "
                                 "and this onnxruntime %s offers only %s" % (ort.__version__, ", ".join(available)),
                                 "--backend trt (TensorRT builds the file), --backend onnxruntime (its CPU provider "
                                 "here), or pip install onnxruntime-gpu")
    log.info("--backend cuda with a .onnx file: ONNX Runtime's CUDA execution provider runs it")
    return OnnxRuntimeEngine(dataclasses.replace(config, backend="onnxruntime"),
                             providers=["CUDAExecutionProvider", "CPUExecutionProvider"])
