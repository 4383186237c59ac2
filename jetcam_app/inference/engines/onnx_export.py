"""Export a network core to an ONNX file (fixed shape, or a dynamic batch axis), cached by its content and settings."""

import copy
import hashlib
import inspect
import json
import logging
import os
import tempfile
import time
import warnings
from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

import torch

from ...errors import EngineBuildError
from .cache import atomic_write
from .cache_safety import untrusted_reason, usable_cache_dir

log = logging.getLogger(__name__)

# JetPack 5's TensorRT 8.5 parses opsets up to 17; newer TensorRT versions parse 17 too. JetPack 4.6's torch 1.10
# exports up to 14 and calls 13 stable, which its TensorRT 8.2 parses: there the newest stable opset is used.
DEFAULT_OPSET = 17


def exportable_opset(wanted: int = DEFAULT_OPSET) -> int:
    """`wanted`, or the newest opset this torch exports where that is older (torch 1.10: 13)."""
    try:
        from torch.onnx._constants import ONNX_MAX_OPSET  # torch 1.13+
        return min(wanted, int(ONNX_MAX_OPSET))
    except ImportError:
        from torch.onnx import symbolic_helper
        return min(wanted, max(symbolic_helper._onnx_stable_opsets))
ONNX_SIDECAR_FORMAT = 1
_CHUNK = 1 << 20


@dataclass(frozen=True)
class OnnxModel:
    """An exported core: where it is, what is in it and the hash of the file's bytes."""

    path: str
    sha256: str
    input_names: Tuple[str, ...]
    output_names: Tuple[str, ...]
    input_shape: Tuple[int, ...]
    precision: str  # dtype of the graph's inputs, weights and outputs: fp32 or fp16
    opset: int
    exported: bool  # False when the file came from the cache


class PrebuiltOnnx(torch.nn.Module):
    """A core that already is an ONNX file (a user's model): export_onnx() hands out the file, fitted to the example's
    shape, instead of tracing. Its forward() runs the file on ONNX Runtime's CPU provider, the reference."""

    def as_onnx(self, example: torch.Tensor, precision: str, dynamic_batch: bool, out_dir: str) -> "OnnxModel":
        raise NotImplementedError


def file_sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _code_files(network: torch.nn.Module) -> List[str]:
    """The source files that define the network's module classes: what forward() does is there, not in repr()."""
    files = set()
    for module in network.modules():
        try:
            files.add(os.path.realpath(inspect.getfile(type(module))))
        except (TypeError, OSError):  # a class without a file (built in, or defined at a prompt)
            pass
    return sorted(f for f in files if os.path.isfile(f))


def network_digest(network: torch.nn.Module) -> str:
    """sha256 of the network's class, structure, parameters and buffers (non-persistent ones too), and of the
    files that define its classes: a changed forward() with the same weights must not reuse the old export."""
    digest = hashlib.sha256()
    cls = type(network)
    digest.update(("%s.%s\n%r\n" % (cls.__module__, cls.__qualname__, network)).encode())
    for path in _code_files(network):
        with open(path, "rb") as f:
            digest.update(hashlib.sha256(f.read()).digest())
    tensors = list(network.named_parameters()) + list(network.named_buffers())
    for name, tensor in tensors:
        t = tensor.detach().to("cpu").contiguous().reshape(-1)
        digest.update(("%s %s %s\n" % (name, t.dtype, tuple(tensor.shape))).encode())
        if t.numel():  # the raw bytes (torch 1.10 cannot view a tensor as bytes; numpy has no bfloat16)
            digest.update((t.view(torch.int16) if t.dtype == torch.bfloat16 else t).numpy().tobytes())
    return digest.hexdigest()


def shape_slug(shape: Sequence[int]) -> str:
    return "x".join(str(int(d)) for d in shape)


def output_shapes(network: torch.nn.Module, example: torch.Tensor) -> List[Tuple[int, ...]]:
    with torch.inference_mode():
        out = network(example)
    if isinstance(out, torch.Tensor):
        out = (out,)
    elif isinstance(out, dict):
        out = tuple(out.values())
    return [tuple(int(d) for d in t.shape) for t in out]


def default_names(network: torch.nn.Module, example: torch.Tensor,
                  input_names: Optional[Sequence[str]], output_names: Optional[Sequence[str]]):
    """The adapter's names when given (also read from `network.input_names` / `.output_names`),
    else "input" and "output0".."outputN"."""
    input_names = tuple(input_names or getattr(network, "input_names", None) or ("input",))
    output_names = output_names or getattr(network, "output_names", None)
    if not output_names:
        n = len(output_shapes(network, example))
        output_names = ("output",) if n == 1 else tuple("output%d" % i for i in range(n))
    return input_names, tuple(output_names)


def export_onnx(network: torch.nn.Module, example: torch.Tensor, out_dir: str, model_name: str,
                precision: str = "fp32", input_names: Optional[Sequence[str]] = None,
                output_names: Optional[Sequence[str]] = None, opset: Optional[int] = None,
                dynamic_batch: bool = False) -> OnnxModel:
    """The core as ONNX in `out_dir`, exported once per content: the same network, shape, precision,
    names and opset reuse the file. fp16 converts a copy of the network to half before the export
    (what strongly typed TensorRT-RTX needs); the caller's network is not modified. `dynamic_batch` leaves
    the batch axis free (the file name says N for it); every other dimension stays fixed."""
    if precision not in ("fp32", "fp16"):
        raise EngineBuildError("ONNX export: unknown precision '%s'; use fp32 or fp16" % precision)
    if isinstance(network, PrebuiltOnnx):
        return network.as_onnx(example, precision, dynamic_batch, out_dir)
    opset = exportable_opset() if opset is None else opset
    network = network.eval()
    example = example.detach().to("cpu", torch.float32)
    input_names, output_names = default_names(network, example, input_names, output_names)
    key = hashlib.sha256()
    digest = network_digest(network)
    shape = shape_slug(example.shape) if not dynamic_batch else "x".join(["N"] + [str(int(d)) for d in example.shape[1:]])
    for part in (digest, shape, precision, ",".join(input_names),
                 ",".join(output_names), str(opset), torch.__version__):
        key.update(part.encode() + b"\0")
    out_dir = usable_cache_dir(out_dir, "onnx")
    stem = "%s_%s_%s_opset%d_%s" % (model_name, shape, precision, opset, key.hexdigest()[:12])
    path = os.path.join(out_dir, stem + ".onnx")
    sidecar = {"format": ONNX_SIDECAR_FORMAT, "key": key.hexdigest(), "network_sha256": digest,
               "input_shape": list(example.shape), "dynamic_batch": dynamic_batch, "precision": precision, "opset": opset,
               "input_names": list(input_names), "output_names": list(output_names), "torch": torch.__version__}
    sha256 = verified_onnx(path, sidecar)
    exported = sha256 is None
    if exported:
        _export(network, example, path, precision, input_names, output_names, opset, dynamic_batch)
        sha256 = file_sha256(path)
        try:
            atomic_write(path + ".json", (json.dumps(dict(sidecar, onnx_sha256=sha256), indent=2, sort_keys=True)
                                          + "\n").encode())
        except OSError as e:
            log.warning("onnx: could not write the sidecar of %s (%s); it will be exported again next time",
                        path, e.strerror or e)
    else:
        log.info("onnx: reusing %s (checked against its sidecar)", path)
    return OnnxModel(path=path, sha256=sha256, input_names=input_names, output_names=output_names,
                     input_shape=tuple(int(d) for d in example.shape), precision=precision, opset=opset,
                     exported=exported)


def verified_onnx(path: str, expected: dict) -> Optional[str]:
    """The cached file's sha256 when it and its sidecar (path + ".json") describe exactly this export and the
    file is ours; None, with a warning saying why, when it must be exported again."""
    if not os.path.isfile(path):
        return None
    problem = untrusted_reason(path)
    sidecar = None
    if problem is None:
        try:
            with open(path + ".json", encoding="utf-8") as f:
                sidecar = json.load(f)
            problem = untrusted_reason(path + ".json")
        except FileNotFoundError:
            problem = "it has no sidecar"
        except (OSError, ValueError) as e:
            problem = "its sidecar is unreadable (%s)" % e
    if problem is None and not isinstance(sidecar, dict):
        problem = "its sidecar is not a JSON object"
    if problem is None:
        changed = sorted(k for k in expected if sidecar.get(k) != expected[k])
        if changed:
            problem = "it was exported with a different %s" % ", ".join(changed)
    sha256 = None
    if problem is None:
        sha256 = file_sha256(path)
        if sha256 != sidecar.get("onnx_sha256"):
            problem = "its bytes do not match the sidecar's sha256 (truncated or replaced)"
    if problem is not None:
        log.warning("onnx: not reusing %s: %s; exporting again", path, problem)
        return None
    return sha256


def cpu_runs_half_convolutions() -> bool:
    """Whether this torch runs a float16 convolution on the CPU (torch 2.1, JetPack 5's, does not): the fp16 export
    traces the half network there when no GPU is."""
    try:
        torch.nn.functional.conv2d(torch.zeros(1, 1, 4, 4, dtype=torch.half), torch.zeros(1, 1, 3, 3, dtype=torch.half))
        return True
    except RuntimeError:
        return False


def _half_for_export(network, example):
    """A half copy of the network and example on the device that can trace them: the GPU where there is one, else
    the CPU; EngineBuildError where neither can."""
    device = torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")
    if device.type == "cpu" and not cpu_runs_half_convolutions():
        raise EngineBuildError("ONNX export in fp16: torch %s runs no float16 convolution on the CPU and there is no "
                               "CUDA device to trace on; fix: export on the Jetson (its GPU traces it), use "
                               "--precision fp32, or torch >= 2.2" % torch.__version__)
    return copy.deepcopy(network).to(device).half(), example.to(device).half()


def _export(network, example, path, precision, input_names, output_names, opset, dynamic_batch=False) -> None:
    start = time.perf_counter()
    if precision == "fp16":
        network, example = _half_for_export(network, example)
    # a unique name in the same folder: a predictable one could be planted (a symlink) by another user
    fd, tmp_path = tempfile.mkstemp(dir=os.path.dirname(path), prefix="." + os.path.basename(path) + ".", suffix=".tmp")
    os.close(fd)
    try:
        with warnings.catch_warnings():
            # The TorchScript exporter is deprecated in torch >= 2.9 but is the one that gives TensorRT 8.5
            # plain fixed-shape graphs; its tracer warnings are about Python control flow we do not have.
            warnings.simplefilter("ignore", DeprecationWarning)
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            warnings.filterwarnings("ignore", message="Constant folding")
            kwargs = dict(export_params=True, opset_version=opset, do_constant_folding=True,
                          input_names=list(input_names), output_names=list(output_names))
            if dynamic_batch:
                kwargs["dynamic_axes"] = {name: {0: "batch"} for name in list(input_names) + list(output_names)}
            if "dynamo" in inspect.signature(torch.onnx.export).parameters:
                kwargs["dynamo"] = False
            with torch.inference_mode(False), torch.no_grad():
                torch.onnx.export(network, (example,), tmp_path, **kwargs)
        fix_output_shapes(tmp_path, output_shapes(network, example), dynamic_batch)
        check_onnx(tmp_path, len(input_names), len(output_names))
        os.replace(tmp_path, path)
    except EngineBuildError:
        raise
    except (RuntimeError, ValueError, TypeError) as e:  # torch's OnnxExporterError is a RuntimeError
        raise EngineBuildError("ONNX export of %s failed: %s; fix: check that the core returns tensors only "
                               "(no NMS, no Python lists of boxes)" % (os.path.basename(path),
                                                                         str(e).splitlines()[0])) from e
    finally:
        if os.path.exists(tmp_path):
            os.remove(tmp_path)
    log.info("onnx: exported %s in %.1f s", path, time.perf_counter() - start)


def fix_output_shapes(path: str, shapes: Sequence[Tuple[int, ...]], dynamic_batch: bool = False) -> None:
    """Write the traced output shapes into the graph where the exporter left a dimension unknown
    (a flatten after global pooling does), so every input and output has a fixed shape (but the batch
    axis, named "batch", with `dynamic_batch`)."""
    try:
        import onnx
    except ImportError:
        return  # check_onnx says the export is unchecked
    model = onnx.load(path)
    changed = False
    for value, shape in zip(model.graph.output, shapes):
        dims = value.type.tensor_type.shape.dim
        wanted = [("batch" if dynamic_batch and i == 0 else n) for i, n in enumerate(shape)]
        if len(dims) == len(wanted) and all((d.dim_param == n) if isinstance(n, str) else
                                            (d.HasField("dim_value") and d.dim_value == n) for d, n in zip(dims, wanted)):
            continue
        del dims[:]
        for n in wanted:
            if isinstance(n, str):
                dims.add().dim_param = n
            else:
                dims.add().dim_value = n
        changed = True
    if changed:
        onnx.save(model, path)


def check_onnx(path: str, n_inputs: int, n_outputs: int) -> None:
    """onnx.checker on the file, and a count of the graph's inputs and outputs."""
    try:
        import onnx
    except ImportError:
        log.warning("onnx: the onnx package is not installed, so the export is not checked; fix: pip install onnx")
        return
    try:
        onnx.checker.check_model(path)
    except onnx.checker.ValidationError as e:
        raise EngineBuildError("ONNX export %s fails onnx.checker: %s" % (path, str(e).splitlines()[0])) from e
    graph = onnx.load(path, load_external_data=False).graph
    initializers = {i.name for i in graph.initializer}
    inputs = [i for i in graph.input if i.name not in initializers]
    if len(inputs) != n_inputs or len(graph.output) != n_outputs:
        raise EngineBuildError("ONNX export %s has %d inputs and %d outputs, expected %d and %d"
                               % (path, len(inputs), len(graph.output), n_inputs, n_outputs))
