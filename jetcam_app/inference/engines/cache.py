"""The engine cache: file names that encode what an engine was built for, a .json sidecar, atomic writes."""

import hashlib
import json
import logging
import os
import re
import tempfile
import time
from dataclasses import dataclass
from typing import Any, Dict, Optional, Sequence

from .cache_safety import untrusted_reason

log = logging.getLogger(__name__)

SIDECAR_FORMAT = 1


@dataclass(frozen=True)
class GpuInfo:
    """The device an engine is built for: TensorRT engines only run on the GPU model they were built on."""

    name: str
    compute_capability: str  # "5.3" (Nano), "8.7" (Orin), "8.6" (RTX 30xx)

    def slug(self) -> str:
        return "%s-sm%s" % (slugify(self.name), self.compute_capability.replace(".", ""))


def current_gpu() -> Optional[GpuInfo]:
    """The CUDA device torch sees, or None."""
    import torch

    if not torch.cuda.is_available():
        return None
    props = torch.cuda.get_device_properties(torch.cuda.current_device())
    return GpuInfo(props.name, "%d.%d" % (props.major, props.minor))


def slugify(text: str, keep: str = ".") -> str:
    """Lower case, with runs of anything but letters, digits and `keep` turned into one '-'."""
    return re.sub(r"[^a-z0-9%s]+" % re.escape(keep), "-", text.lower()).strip("-") or "unknown"


def engine_stem(model_name: str, input_shape: Sequence[int], precision: str, backend_tag: str,
                gpu: GpuInfo) -> str:
    """e.g. ssd300_vgg16_1x3x300x300_fp16_trt8.5.2.2_nvidia-tegra-x1-sm53: model, input shape (batch
    first), precision, the converter and its version, and the GPU with its compute capability."""
    shape = "x".join(str(int(d)) for d in input_shape)
    return "%s_%s_%s_%s_%s" % (slugify(model_name, keep="._"), shape, precision, slugify(backend_tag), gpu.slug())


def atomic_write(path: str, data: bytes) -> None:
    """Write to a temporary file in the same folder, then rename: readers never see half a file."""
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp_path = tempfile.mkstemp(dir=folder, prefix="." + os.path.basename(path) + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp_path, path)
    finally:
        if os.path.exists(tmp_path):
            os.remove(tmp_path)


class EngineCache:
    """Engines in `cache_dir` as <stem><suffix> with <stem>.json beside them.

    The sidecar's "key" holds everything the engine depends on (ONNX sha256, build arguments,
    converter version, GPU, precision, input shape, batch); an engine is reused only when the key
    matches exactly and the engine's bytes still hash to what was written, otherwise it is rebuilt.
    An unwritable cache warns once and the caller keeps the engine in memory.
    """

    def __init__(self, cache_dir: str, suffix: str = ".engine"):
        self.cache_dir = cache_dir
        self.suffix = suffix
        self._writable = None  # type: Optional[bool]

    def engine_path(self, stem: str) -> str:
        return os.path.join(self.cache_dir, stem + self.suffix)

    def sidecar_path(self, stem: str) -> str:
        return os.path.join(self.cache_dir, stem + ".json")

    def writable(self) -> bool:
        if self._writable is None:
            try:
                os.makedirs(self.cache_dir, exist_ok=True)
                fd, probe = tempfile.mkstemp(dir=self.cache_dir, prefix=".probe-")
                os.close(fd)
                os.remove(probe)
                self._writable = True
            except OSError as e:
                self._writable = False
                log.warning("engine cache %s is not writable (%s): the engine is built in memory and rebuilt "
                            "on every run; fix: make the folder writable or set engine.cache_dir (--cache-dir)",
                            self.cache_dir, e.strerror or e)
        return self._writable

    def read_sidecar(self, stem: str) -> Optional[Dict[str, Any]]:
        try:
            with open(self.sidecar_path(stem)) as f:
                return json.load(f)
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as e:
            log.warning("engine cache: unreadable sidecar %s (%s); rebuilding", self.sidecar_path(stem), e)
            return None

    def lookup(self, stem: str, key: Dict[str, Any]) -> Optional[bytes]:
        """The cached engine's bytes when its sidecar's key equals `key`; None (with the reason logged)
        when it must be built."""
        path = self.engine_path(stem)
        if not os.path.isfile(path):
            log.info("engine cache: no %s; building", os.path.basename(path))
            return None
        distrust = untrusted_reason(path) or untrusted_reason(self.cache_dir)
        if distrust is not None:
            log.warning("engine cache: not loading %s: it or its folder is %s; rebuilding; fix: keep the cache in "
                        "a folder of yours (--cache-dir)", path, distrust)
            return None
        sidecar = self.read_sidecar(stem)
        if sidecar is None or sidecar.get("format") != SIDECAR_FORMAT:
            log.info("engine cache: %s has no usable sidecar; rebuilding", os.path.basename(path))
            return None
        old_key = sidecar.get("key", {})
        changed = sorted(k for k in set(old_key) | set(key) if old_key.get(k) != key.get(k))
        if changed:
            log.info("engine cache: %s was built with a different %s; rebuilding",
                     os.path.basename(path), ", ".join(changed))
            return None
        with open(path, "rb") as f:
            data = f.read()
        if hashlib.sha256(data).hexdigest() != sidecar.get("engine_sha256"):
            log.warning("engine cache: %s does not match its sidecar's checksum (truncated or replaced); "
                        "rebuilding", path)
            return None
        log.info("engine cache: reusing %s", path)
        return data

    def store(self, stem: str, data: bytes, key: Dict[str, Any], info: Optional[Dict[str, Any]] = None) -> Optional[str]:
        """Write the engine, then its sidecar (so a sidecar always describes a complete engine).
        Returns the engine's path, or None when the cache cannot be written (warned)."""
        if not self.writable():
            return None
        sidecar = {"format": SIDECAR_FORMAT, "key": key, "engine_sha256": hashlib.sha256(data).hexdigest(),
                   "engine_bytes": len(data), "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        sidecar.update(info or {})
        path = self.engine_path(stem)
        try:
            atomic_write(path, data)
            atomic_write(self.sidecar_path(stem), (json.dumps(sidecar, indent=2, sort_keys=True) + "\n").encode())
        except OSError as e:
            log.warning("engine cache: could not write %s (%s); the engine stays in memory; fix: free disk "
                        "space or set engine.cache_dir", path, e.strerror or e)
            return None
        log.info("engine cache: saved %s (%.1f MB)", path, len(data) / 2 ** 20)
        return path

    def remove(self, stem: str) -> None:
        for path in (self.sidecar_path(stem), self.engine_path(stem)):
            if os.path.exists(path):
                os.remove(path)
