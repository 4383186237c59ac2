"""Triton shared memory for a client on the server's host (--triton-shm system|cuda): no tensor bytes on the socket.

Each request in flight takes a slot: one region for its input and one per output, registered with the server once
and reused (made on first need, at most MAX_SLOTS; a request that finds none free goes over the wire). Regions are
named jetcam_triton_<host>_<pid>_<n>_..., so what a killed client left behind (segments in /dev/shm, registrations on
the server) is recognised by the next client on the same host, whose pid check finds the owner gone, and removed.
"""

import logging
import os
import re
import socket
import threading
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

log = logging.getLogger(__name__)
KINDS = ("none", "system", "cuda")
PREFIX = "jetcam_triton_"
MAX_SLOTS = 16
SHM_DIR = "/dev/shm"
_NAME = re.compile(r"^/?%s(?P<host>[A-Za-z0-9-]+)_(?P<pid>\d+)_" % PREFIX)
_sequence = [0]


class SharedMemoryUnavailable(Exception):
    """Shared memory cannot be used with this server; the reason is the message (the engine notes it and falls back)."""


def host_tag() -> str:
    """This machine's name as region names may hold it (containers sharing /dev/shm have names of their own)."""
    return re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname())[:40] or "host"


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def stale(name: str, host: str, alive: Callable[[int], bool] = pid_alive) -> bool:
    """A region this host's jetcam client made and whose process is gone."""
    match = _NAME.match(name)
    return bool(match) and match.group("host") == host and not alive(int(match.group("pid")))


def remove_stale_segments(host: str, folder: str = SHM_DIR, alive: Callable[[int], bool] = pid_alive) -> List[str]:
    """Unlink the POSIX segments dead jetcam clients of this host left in /dev/shm; the names removed."""
    try:
        names = os.listdir(folder)
    except OSError:
        return []
    removed = []
    for name in names:
        if stale(name, host, alive):
            try:
                os.unlink(os.path.join(folder, name))
                removed.append(name)
            except OSError as e:
                log.debug("triton shm: could not remove %s: %s", name, e)
    return removed


def region_names(status: Any) -> List[str]:
    """Names in a shared-memory status answer: gRPC's as_json {"regions": {name: ...}} or HTTP's [{"name": ...}]."""
    if isinstance(status, dict):
        regions = status.get("regions", {})
        return list(regions) if isinstance(regions, dict) else [r.get("name", "") for r in regions]
    return [r.get("name", "") for r in status or []]


class _SystemRegions:
    """POSIX shared memory through tritonclient.utils.shared_memory."""

    kind = "system"

    def __init__(self, call: Callable[..., Any], protocol: str = "grpc"):
        import tritonclient.utils.shared_memory as module
        from tritonclient.utils import InferenceServerException

        self.module, self.call = module, call
        self.errors = (InferenceServerException, module.SharedMemoryException, OSError)
        self.as_json = {"as_json": True} if protocol == "grpc" else {}  # gRPC answers protos otherwise

    def create(self, name: str, size: int) -> Any:
        return self.module.create_shared_memory_region(name, "/" + name, size)

    def register(self, name: str, handle: Any, size: int) -> None:
        self.call("register_system_shared_memory", name, "/" + name, size)

    def unregister(self, name: str) -> None:
        self.call("unregister_system_shared_memory", name)

    def status(self) -> List[str]:
        return region_names(self.call("get_system_shared_memory_status", **self.as_json))

    def write(self, handle: Any, array: np.ndarray) -> None:
        self.module.set_shared_memory_region(handle, [array])

    def read(self, handle: Any, dtype: Any, shape: Sequence[int]) -> np.ndarray:
        return np.array(self.module.get_contents_as_numpy(handle, dtype, list(shape)))  # a copy: the slot is reused

    def destroy(self, handle: Any) -> None:
        self.module.destroy_shared_memory_region(handle)


class _CudaRegions(_SystemRegions):
    """CUDA memory on this GPU, shared with the server by IPC handle (tritonclient.utils.cuda_shared_memory)."""

    kind = "cuda"

    def __init__(self, call: Callable[..., Any], protocol: str = "grpc", device_id: int = 0):
        import tritonclient.utils.cuda_shared_memory as module
        from tritonclient.utils import InferenceServerException

        self.module, self.call, self.device_id = module, call, device_id
        self.errors = (InferenceServerException, module.CudaSharedMemoryException, OSError)
        self.as_json = {"as_json": True} if protocol == "grpc" else {}

    def create(self, name: str, size: int) -> Any:
        return self.module.create_shared_memory_region(name, size, self.device_id)

    def register(self, name: str, handle: Any, size: int) -> None:
        self.call("register_cuda_shared_memory", name, self.module.get_raw_handle(handle), self.device_id, size)

    def unregister(self, name: str) -> None:
        self.call("unregister_cuda_shared_memory", name)

    def status(self) -> List[str]:
        return region_names(self.call("get_cuda_shared_memory_status", **self.as_json))

    def read(self, handle: Any, dtype: Any, shape: Sequence[int]) -> np.ndarray:
        return self.module.get_contents_as_numpy(handle, dtype, list(shape))  # already a host copy


def regions_for(kind: str, call: Callable[..., Any], protocol: str = "grpc"):
    """The region maker for `kind`; SharedMemoryUnavailable where tritonclient's module for it does not import.
    `call(method, *args, **kwargs)` runs a client method (with the engine's timeout)."""
    try:
        return _SystemRegions(call, protocol) if kind == "system" else _CudaRegions(call, protocol)
    except ImportError as e:  # cuda: needs cuda-python (cuda.bindings) and a CUDA driver
        raise SharedMemoryUnavailable("tritonclient's %s shared memory does not import here (%s)"
                                      % (kind, str(e).splitlines()[0] if str(e) else e)) from e


class Slot:
    """One request's regions: (name, handle, size) for the input and for each output."""

    def __init__(self, index: int, tensors: List[Tuple[str, Any, int]]):
        self.index = index
        self.tensors = tensors


class SharedMemoryPool:
    """Slots of registered regions for one model's requests. `input_spec`: (name, bytes a frame); `outputs`: (name,
    numpy dtype, bytes a frame) each; regions hold `max_batch` frames."""

    def __init__(self, regions, input_spec: Tuple[str, int], outputs: Sequence[Tuple[str, Any, int]],
                 max_batch: int, host: Optional[str] = None):
        self.regions = regions
        self.kind = regions.kind
        self.input_name, self.input_bytes = input_spec[0], int(input_spec[1])
        self.outputs = [(n, np.dtype(d), int(b)) for n, d, b in outputs]
        self.max_batch = max(1, int(max_batch))
        self.host = host or host_tag()
        _sequence[0] += 1
        self.stem = "%s%s_%d_%d" % (PREFIX, self.host, os.getpid(), _sequence[0])
        self.slots = []  # type: List[Slot]
        self.free = []  # type: List[Slot]
        self.lock = threading.Lock()
        self.closed = False
        self.retired = []  # type: List[Slot]
        self.made = 0  # slots made (requests in flight at once through shared memory), kept after close()

    def clean_stale(self) -> Tuple[int, int]:
        """Remove dead clients' leftovers of this host: registrations on the server and, for system memory, the
        segments in /dev/shm. (count unregistered, count of segments removed)."""
        names = []  # type: List[str]
        try:
            names = [n for n in self.regions.status() if stale(n, self.host)]
        except self.regions.errors as e:  # the status is only a clean-up aid
            log.debug("triton shm: status not read: %s", e)
        for name in names:
            try:
                self.regions.unregister(name)
            except self.regions.errors as e:
                log.debug("triton shm: could not unregister %s: %s", name, e)
        segments = remove_stale_segments(self.host) if self.kind == "system" else []
        if names or segments:
            log.info("triton shm: removed what dead clients left: %d registrations, %d segments", len(names),
                     len(segments))
        return len(names), len(segments)

    def open(self) -> "SharedMemoryPool":
        """Clean stale leftovers and register the first slot; SharedMemoryUnavailable when the server cannot map it."""
        self.clean_stale()
        slot = self._new_slot()
        if slot is None:
            raise SharedMemoryUnavailable("no shared memory region could be made")
        self.free.append(slot)
        return self

    def _new_slot(self) -> Optional[Slot]:
        index = len(self.slots)
        sizes = [(self.input_bytes, "in")] + [(b, "out%d" % k) for k, (_, _, b) in enumerate(self.outputs)]
        tensors = []  # type: List[Tuple[str, Any, int]]
        try:
            for per_frame, role in sizes:
                name, size = "%s_%d_%s" % (self.stem, index, role), per_frame * self.max_batch
                handle = self.regions.create(name, size)
                tensors.append((name, handle, size))
                self.regions.register(name, handle, size)
        except self.regions.errors as e:
            self._drop(tensors)
            if not self.slots:
                raise SharedMemoryUnavailable(str(e).splitlines()[0] if str(e) else type(e).__name__) from e
            log.warning("triton shm: slot %d not made (%s); extra requests go over the network", index, e)
            return None
        slot = Slot(index, tensors)
        self.slots.append(slot)
        self.made = max(self.made, len(self.slots))
        return slot

    def _drop(self, tensors: List[Tuple[str, Any, int]]) -> None:
        for name, handle, _ in tensors:
            try:
                self.regions.unregister(name)
            except self.regions.errors as e:  # it may never have been registered
                log.debug("triton shm: unregister %s: %s", name, e)
            try:
                self.regions.destroy(handle)
            except self.regions.errors as e:
                log.warning("triton shm: could not destroy %s: %s", name, e)

    def acquire(self) -> Optional[Slot]:
        with self.lock:
            if self.closed:
                return None
            if self.free:
                return self.free.pop()
            if len(self.slots) >= MAX_SLOTS:
                return None
            return self._new_slot()

    def release(self, slot: Slot) -> None:
        with self.lock:
            if not self.closed:
                self.free.append(slot)

    def retire(self, slot: Slot) -> None:
        """A slot whose request failed: not handed out again before reregister() (the old server may still write)."""
        with self.lock:
            self.retired.append(slot)

    def bind(self, slot: Slot, infer_input: Any, array: np.ndarray, requested: Sequence[Any]) -> None:
        """Write the batch into the slot's input region and point the request's input and outputs at the slot."""
        frames = int(array.shape[0])
        name, handle, _ = slot.tensors[0]
        self.regions.write(handle, array)
        infer_input.set_shared_memory(name, int(array.nbytes))
        for output, (region, _, _), (_, _, per_frame) in zip(requested, slot.tensors[1:], self.outputs):
            output.set_shared_memory(region, per_frame * frames)

    def read(self, slot: Slot, shapes: Sequence[Sequence[int]]) -> List[np.ndarray]:
        """The outputs the server wrote into the slot, as host copies, in the outputs' order."""
        return [self.regions.read(handle, dtype, shape)
                for (_, handle, _), (_, dtype, _), shape in zip(slot.tensors[1:], self.outputs, shapes)]

    def reregister(self) -> None:
        """After the server restarted (it forgets registrations): register every slot again; retired ones are free."""
        with self.lock:
            self.free.extend(self.retired)
            self.retired = []
        for slot in self.slots:
            for name, handle, size in slot.tensors:
                try:
                    self.regions.unregister(name)
                except self.regions.errors as e:  # the new server does not know it
                    log.debug("triton shm: unregister %s: %s", name, e)
                self.regions.register(name, handle, size)

    def close(self) -> None:
        """Unregister and destroy every region; safe to call twice."""
        with self.lock:
            if self.closed:
                return
            self.closed = True
            slots, self.slots, self.free = self.slots, [], []
        for slot in slots:
            self._drop(slot.tensors)

    def names(self) -> List[str]:
        return [name for slot in self.slots for name, _, _ in slot.tensors]


def open_pool(kind: str, call: Callable[..., Any], protocol: str, url: str, address: str, served: Any,
              max_batch: int) -> Tuple[Optional[SharedMemoryPool], Optional[str]]:
    """The registered pool for a served model (served_check.ServedModel), or None and why not: JPEG frames (BYTES),
    a server on another host, a server that cannot map it (a container without the host's /dev/shm or IPC), no
    CUDA shared memory here."""
    if served.input_type == "BYTES":
        return None, "JPEG frames (BYTES) go over the network"
    if not is_local(address):
        return None, "the server at %s is not on this machine" % url
    try:
        regions = regions_for(kind, call, protocol)
    except SharedMemoryUnavailable as e:
        return None, str(e)
    try:
        pool = SharedMemoryPool(regions, (served.input_name, served.frame_bytes()), served.output_specs(), max_batch)
        return pool.open(), None
    except SharedMemoryUnavailable as e:
        return None, "the server at %s could not map this client's %s shared memory (%s)" % (url, kind, e)


def is_local(address: str) -> bool:
    """Whether host:port names this machine (loopback, its host name or one of its addresses)."""
    host = address.rsplit(":", 1)[0].strip("[]") if ":" in address else address
    if host in ("localhost", "::1") or host.startswith("127."):
        return True
    try:
        local = {socket.gethostname(), socket.getfqdn()}
        addresses = set()  # type: set
        for name in local:
            try:
                addresses.update(info[4][0] for info in socket.getaddrinfo(name, None))
            except OSError:
                continue
        return host in local or host in addresses
    except OSError:
        return False


def output_shapes(result: Any, names: Sequence[str], protocol: str) -> List[List[int]]:
    """Each output's shape from an answer whose tensors went to shared memory (gRPC: protos, HTTP: dicts)."""
    shapes = []
    for name in names:
        out = result.get_output(name)
        shapes.append([int(d) for d in (out["shape"] if protocol == "http" else out.shape)])
    return shapes


def summary(pool: Optional[SharedMemoryPool], note: Optional[str]) -> Dict[str, Any]:
    if pool is None:
        return {"shared_memory": None, "shared_memory_note": note} if note else {"shared_memory": None}
    return {"shared_memory": pool.kind, "shared_memory_slots": pool.made}
