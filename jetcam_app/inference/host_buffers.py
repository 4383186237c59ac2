"""Frame buffers the decoder writes into directly, reused once no frame holds them (page-locked on CUDA).

With the fused CUDA graph, copying each decoded frame into a page-locked buffer for the upload (2.7 MB for a
720p frame) is a large share of the inference thread's host time. When the source decodes straight into a
page-locked buffer, the upload reads the frame where it lies. A buffer goes back into use only when the
frame array handed out with it, and every view made from that array, is gone (see _Lease), so a frame still
queued, drawn or written is never overwritten.
"""

import collections
import threading
import weakref
from typing import Any, Callable, Deque, Dict, List, Optional, Tuple

import numpy as np

DEFAULT_LIMIT_BYTES = 256 * 1024 * 1024  # beyond this, frames are decoded into ordinary memory (and copied)


class _Lease:
    """One frame's hold on a buffer: the base object of the array handed out and of every view made from it
    (numpy collapses a view's base to the first object that is not an ndarray), so while any of them lives,
    so does the lease."""

    __slots__ = ("__array_interface__", "entry", "__weakref__")

    def __init__(self, entry: "_Entry"):
        self.__array_interface__ = entry.interface
        self.entry = entry


class _Entry:
    __slots__ = ("pool", "storage", "interface", "shape", "lease", "retired")

    def __init__(self, pool: "HostFramePool", storage: Any, array: np.ndarray):
        self.pool = pool
        self.storage = storage  # kept here: the memory stays allocated while the pool lives
        self.interface = dict(array.__array_interface__)
        self.shape = array.shape
        # the frame's lease, weakly; held so its callback (released) runs when the lease dies
        self.lease = None  # type: Optional[weakref.ReferenceType]
        self.retired = False  # forget() took it out of the pool

    def released(self, _lease_ref: Any) -> None:
        self.pool._release(self)


class HostFramePool:
    """take(shape) -> a uint8 array to decode into (None once `limit_bytes` are in use); storage_of(array) -> the
    storage (a pinned torch tensor on CUDA) behind an array this pool handed out, or None. Thread-safe."""

    def __init__(self, allocate: Callable[[Tuple[int, ...]], Any], as_array: Callable[[Any], np.ndarray],
                 limit_bytes: int = DEFAULT_LIMIT_BYTES):
        self._allocate = allocate
        self._as_array = as_array
        self.limit_bytes = int(limit_bytes)
        self.allocated_bytes = 0
        self._entries = []  # type: List[_Entry]
        # Buffers no frame holds, by shape: a lease's death puts its entry back (weakref callback, any thread), so
        # take() costs the same however many buffers are out, where a scan of them all held the GIL per frame.
        self._free = collections.defaultdict(collections.deque)  # type: Dict[Tuple[int, ...], Deque[_Entry]]
        self._lock = threading.Lock()

    def take(self, shape: Tuple[int, ...]) -> Optional[np.ndarray]:
        shape = tuple(int(v) for v in shape)
        with self._lock:
            free = self._free[shape]
            entry = free.pop() if free else None  # the last freed: its memory is the likeliest to be in cache
            if entry is None:
                entry = self._new_entry(shape)
                if entry is None:
                    return None
            lease = _Lease(entry)
            entry.lease = weakref.ref(lease, entry.released)
            return np.asarray(lease)

    def reserve(self, shape: Tuple[int, ...], count: int) -> int:
        """Allocate free buffers of `shape` until `count` exist (within the limit), before the clock starts: page-
        locking memory is slow, and during a run it would hold the lock the capture threads take buffers under.
        Returns how many of that shape there are."""
        shape = tuple(int(v) for v in shape)
        with self._lock:
            have = sum(1 for e in self._entries if e.shape == shape)
            while have < count:
                entry = self._new_entry(shape)
                if entry is None:
                    break
                self._free[shape].append(entry)
                have += 1
        return have

    def _new_entry(self, shape: Tuple[int, ...]) -> Optional[_Entry]:
        """A new buffer (the lock held), or None when it would pass the limit."""
        size = int(np.prod(shape))
        if self.allocated_bytes + size > self.limit_bytes:
            return None
        storage = self._allocate(shape)
        entry = _Entry(self, storage, self._as_array(storage))
        self._entries.append(entry)
        self.allocated_bytes += size
        return entry

    def _release(self, entry: "_Entry") -> None:
        if not entry.retired:
            self._free[entry.shape].append(entry)  # deque.append is atomic: no lock, safe in any thread's callback

    def storage_of(self, array: np.ndarray) -> Any:
        """The storage behind `array` when the array is the whole buffer as handed out; None for a view of part of
        it (a crop, a flip), whose bytes are not the buffer's."""
        lease = getattr(array, "base", None)
        if not isinstance(lease, _Lease) or lease.entry.pool is not self or lease.entry.retired:
            return None
        entry = lease.entry
        if array.shape != entry.shape or array.__array_interface__["data"][0] != entry.interface["data"][0] \
                or not array.flags.c_contiguous:
            return None
        return entry.storage

    def forget(self, array: np.ndarray) -> None:
        """The decoder wrote elsewhere (another frame size): the buffer is retired, since whatever it returned
        instead may still share its memory."""
        lease = getattr(array, "base", None)
        with self._lock:
            if isinstance(lease, _Lease) and lease.entry.pool is self and not lease.entry.retired:
                lease.entry.retired = True
                self._entries.remove(lease.entry)
                self.allocated_bytes -= int(np.prod(lease.entry.shape))

    @property
    def buffers(self) -> int:
        return len(self._entries)


def pinned_memory_is_cached(integrated: bool, capability: Tuple[int, int]) -> bool:
    """Whether the CPU caches page-locked memory: always on a discrete GPU's host; on a Jetson only with I/O
    coherency (compute capability 7.2+: Xavier, Orin). On a Nano or TX2 it is uncached for the CPU (NVIDIA's
    "CUDA for Tegra" note), and decoding and drawing into it would be slow."""
    return not integrated or tuple(capability) >= (7, 2)


def is_integrated(props: Any) -> bool:
    """Whether a CUDA device (its torch.cuda.get_device_properties) shares the CPU's RAM: a Jetson. Older torch
    has no such field and reports no integrated GPU."""
    return bool(getattr(props, "is_integrated", False))


def pool_for(device, limit_bytes: int = DEFAULT_LIMIT_BYTES) -> Optional[HostFramePool]:
    """A page-locked pool for frames bound for `device`, or None where the CPU would not cache it."""
    import torch

    props = torch.cuda.get_device_properties(device)
    if not pinned_memory_is_cached(is_integrated(props), (props.major, props.minor)):
        return None
    return pinned_pool(limit_bytes)


def pinned_pool(limit_bytes: int = DEFAULT_LIMIT_BYTES) -> HostFramePool:
    """Page-locked buffers for uploads to the GPU (needs CUDA)."""
    import torch

    return HostFramePool(lambda shape: torch.empty(shape, dtype=torch.uint8).pin_memory(), lambda t: t.numpy(),
                         limit_bytes)
