"""A user's ONNX file, treated as input: checked (onnx.checker, external data kept inside the model's folder),
read (input, outputs, the exporter's metadata), and copied with its input shape fixed where a backend needs one."""

import json
import logging
import os
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple, Union

from ...errors import WeightsError
from ..engines.cache import atomic_write
from ..engines.cache_safety import usable_cache_dir
from ..engines.onnx_export import file_sha256

log = logging.getLogger(__name__)

Dim = Union[int, str]  # a fixed size, or the name of a free axis ("batch", "height", "?")
ELEMENT_TYPES = {1: "float32", 10: "float16", 2: "uint8", 3: "int8", 6: "int32", 7: "int64", 11: "float64"}
MATERIALISED_FORMAT = 1


@dataclass(frozen=True)
class TensorInfo:
    name: str
    dims: Tuple[Dim, ...]
    dtype: str  # numpy's name: float32, float16, ...


@dataclass(frozen=True)
class OnnxFileInfo:
    """What the app reads from a user's file before running it."""

    path: str
    sha256: str
    inputs: Tuple[TensorInfo, ...]
    outputs: Tuple[TensorInfo, ...]
    metadata: Dict[str, str] = field(default_factory=dict)  # the exporter's metadata_props (Ultralytics: names, ...)
    opset: int = 0
    external_data: bool = False

    @property
    def input(self) -> TensorInfo:
        return self.inputs[0]

    def fixed_batch(self) -> int:
        """The batch the file was exported for (a fixed dimension 0), or 0 when that axis is free."""
        first = self.input.dims[0] if self.input.dims else 0
        return first if isinstance(first, int) and first > 0 else 0

    def fixed_hw(self) -> Optional[Tuple[int, int]]:
        """(height, width) when the file fixes them, else None (a dynamic-shape export)."""
        dims = self.input.dims
        if len(dims) == 4 and all(isinstance(d, int) and d > 0 for d in dims[2:]):
            return int(dims[2]), int(dims[3])
        return None


def _import_onnx():
    try:
        import onnx
    except ImportError as e:
        raise WeightsError("reading an ONNX file needs the onnx package, which does not import (%s); fix: pip install "
                           "onnx (or pip install -e .[onnx])" % e) from e
    return onnx


def _dims(value) -> Tuple[Dim, ...]:
    dims = []  # type: List[Dim]
    for d in value.type.tensor_type.shape.dim:
        dims.append(int(d.dim_value) if d.HasField("dim_value") else (d.dim_param or "?"))
    return tuple(dims)


def _tensor(value) -> TensorInfo:
    elem = value.type.tensor_type.elem_type
    return TensorInfo(value.name, _dims(value), ELEMENT_TYPES.get(elem, "type%d" % elem))


def _external_locations(model) -> List[str]:
    locations = []
    for tensor in model.graph.initializer:
        if tensor.data_location == 1:  # TensorProto.EXTERNAL
            entries = {e.key: e.value for e in tensor.external_data}
            locations.append(entries.get("location", ""))
    return locations


def check_external_data(path: str, locations: List[str]) -> None:
    """Every external-data file must lie inside the model's folder: a file naming ../../etc/shadow or an absolute
    path would make the app read whatever it points at."""
    folder = os.path.realpath(os.path.dirname(os.path.abspath(path)))
    for location in locations:
        target = os.path.realpath(os.path.join(folder, location))
        if os.path.isabs(location) or not target.startswith(folder + os.sep):
            raise WeightsError("%s: its external data '%s' lies outside the model's folder %s; refused. Fix: keep "
                               "the .onnx and its data file together, with a plain file name as the location"
                               % (path, location, folder))
        if not os.path.isfile(target):
            raise WeightsError("%s: its external data file %s is missing; fix: copy it next to the .onnx"
                               % (path, target))


def inspect_onnx(path: str) -> OnnxFileInfo:
    """The file's input, outputs and metadata; WeightsError (exit 2, one line) for a missing, damaged, truncated or
    non-ONNX file, one that fails onnx.checker, or one whose external data points outside its folder."""
    onnx = _import_onnx()
    if not os.path.isfile(path):
        raise WeightsError("ONNX file not found: %s; fix: pass the path of the .onnx file you exported" % path)
    try:
        model = onnx.load(path, load_external_data=False)
    except Exception as e:  # noqa: B902 - protobuf raises DecodeError, RuntimeWarning-ish or ValueError
        raise WeightsError("%s is not a readable ONNX file (%s); fix: export it again (a truncated download or copy "
                           "looks like this)" % (path, str(e).splitlines()[0] if str(e) else type(e).__name__)) from e
    if not model.graph.node and not model.graph.output:
        raise WeightsError("%s holds no ONNX graph (empty or not an ONNX file); fix: export it again" % path)
    locations = _external_locations(model)
    check_external_data(path, locations)
    try:
        onnx.checker.check_model(path)  # the path form also checks external data and files over 2 GB
    except Exception as e:  # noqa: B902 - ValidationError, or protobuf errors on damaged bytes
        raise WeightsError("%s fails onnx.checker: %s; fix: export it again, with a newer exporter or opset"
                           % (path, str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__)) from e
    initializers = {t.name for t in model.graph.initializer}
    inputs = tuple(_tensor(v) for v in model.graph.input if v.name not in initializers)
    outputs = tuple(_tensor(v) for v in model.graph.output)
    if len(inputs) != 1:
        raise WeightsError("%s has %d inputs (%s); the app feeds one image tensor [B, 3, H, W]"
                           % (path, len(inputs), ", ".join(i.name for i in inputs) or "none"))
    if len(inputs[0].dims) != 4 or inputs[0].dims[1] not in (3, "?") and isinstance(inputs[0].dims[1], int):
        raise WeightsError("%s: input %s has shape %s; the app feeds images as [B, 3, H, W] (NCHW)"
                           % (path, inputs[0].name, list(inputs[0].dims)))
    opset = max([o.version for o in model.opset_import if o.domain in ("", "ai.onnx")] or [0])
    return OnnxFileInfo(path=os.path.abspath(path), sha256=file_sha256(path), inputs=inputs, outputs=outputs,
                        metadata={p.key: p.value for p in model.metadata_props}, opset=opset,
                        external_data=bool(locations))


def materialise(info: OnnxFileInfo, batch: int, hw: Tuple[int, int], dynamic_batch: bool, cache_dir: str) -> str:
    """A path to the file with its input fixed to [batch, 3, H, W] (the batch left free with `dynamic_batch`, where
    the file leaves it free): the file itself when it already says so, else a copy in the cache keyed by the file's
    sha256 and the shape. TensorRT and a fixed-shape session need every dimension known."""
    dims = info.input.dims
    wanted = ["batch" if dynamic_batch and not info.fixed_batch() else batch, 3, hw[0], hw[1]]
    if info.fixed_batch() and info.fixed_batch() != batch:
        raise WeightsError("%s was exported for a batch of %d, and %d frames were asked for; fix: export it with a "
                           "dynamic batch (yolo export ... dynamic=True)" % (info.path, info.fixed_batch(), batch))
    if [d if isinstance(d, int) else "batch" for d in dims] == [w if isinstance(w, int) else "batch" for w in wanted]:
        return info.path
    onnx = _import_onnx()
    out_dir = usable_cache_dir(cache_dir, "onnx")
    stem = "%s_%s_%s" % (os.path.splitext(os.path.basename(info.path))[0],
                         "x".join(str(w) if isinstance(w, int) else "N" for w in wanted), info.sha256[:12])
    path = os.path.join(out_dir, stem + ".onnx")
    sidecar_path = path + ".json"
    expected = {"format": MATERIALISED_FORMAT, "source_sha256": info.sha256, "input": [str(w) for w in wanted]}
    if os.path.isfile(path) and os.path.isfile(sidecar_path):
        try:
            with open(sidecar_path, encoding="utf-8") as f:
                sidecar = json.load(f)
            if all(sidecar.get(k) == v for k, v in expected.items()) and sidecar.get("sha256") == file_sha256(path):
                return path
        except (OSError, ValueError):
            pass
    model = onnx.load(info.path)  # external data (checked to lie in the model's folder) is read in
    value = [v for v in model.graph.input if v.name == info.input.name][0]
    shape = value.type.tensor_type.shape
    for d, w in zip(shape.dim, wanted):
        if isinstance(w, int):
            d.Clear()
            d.dim_value = w
        elif not d.HasField("dim_value"):
            d.dim_param = w
    data = model.SerializeToString()
    atomic_write(path, data)
    atomic_write(sidecar_path, (json.dumps(dict(expected, sha256=file_sha256(path), source=info.path), indent=2)
                                + "\n").encode())
    log.info("onnx: %s with its input fixed to %s -> %s", os.path.basename(info.path), wanted, path)
    return path
