"""Video replay decoded in a child process: frames cross in a shared-memory ring, so decoding never holds the GIL
that the inference and drawing threads need (measured: the stages alone run ~3x faster than the threaded app)."""
from __future__ import annotations

import logging
import multiprocessing
import queue
import time
from typing import Optional

import numpy as np

from ..errors import CaptureTimeout, SourceError
from .video_file import VideoFileSource

log = logging.getLogger(__name__)
RING_SLOTS = 8
STARTUP_TIMEOUT_S = 60.0


def _decode(path: str, shm_name: str, shape, free_slots, filled) -> None:
    """Child: decode every frame into a free slot of the ring; announce (slot) or None at the end."""
    from multiprocessing import shared_memory

    import cv2

    shm = shared_memory.SharedMemory(name=shm_name)
    try:
        ring = np.ndarray((RING_SLOTS,) + tuple(shape), np.uint8, buffer=shm.buf)
        cap = cv2.VideoCapture(path)
        while True:
            slot = free_slots.get()
            if slot is None:
                break
            ok, image = cap.read()
            if not ok:
                filled.put(None)
                break
            if image.shape != ring[slot].shape:  # a size change mid-file: say so, do not reshape silently
                filled.put(("error", "%s changes frame size mid-file (%s -> %s)" % (path, ring[slot].shape, image.shape)))
                break
            ring[slot][...] = image
            filled.put(slot)
        cap.release()
        del ring
    finally:
        shm.close()


class ProcessVideoFileSource(VideoFileSource):
    """VideoFileSource whose decoding runs in a child process (same frames, order, pacing and timestamps)."""

    _pending = None  # the first frame, taken in open()

    def open(self) -> None:
        from multiprocessing import shared_memory

        super().open()  # validates the file and reads size, fps and the timestamp sidecar
        shape = self._first.shape
        self._first = None
        self._cap.release()
        self._cap = None
        self._shape = shape
        self._shm = shared_memory.SharedMemory(create=True, size=int(np.prod(shape)) * RING_SLOTS)
        self._ring = np.ndarray((RING_SLOTS,) + tuple(shape), np.uint8, buffer=self._shm.buf)
        context = multiprocessing.get_context("spawn")  # no fork of a process that holds CUDA and threads
        self._free, self._filled = context.Queue(), context.Queue()
        for slot in range(RING_SLOTS):
            self._free.put(slot)
        self._child = context.Process(target=_decode, name="jetcam-decode", daemon=True,
                                      args=(self.path, self._shm.name, shape, self._free, self._filled))
        self._child.start()
        self._done = False
        # Wait for the first frame here, so the child's start-up is not counted in the run's wall time.
        self._pending = self._take(STARTUP_TIMEOUT_S)
        self._start = time.perf_counter()  # paced replay starts from here

    def _next_image(self, timeout_s: float):
        if self._pending is not None:
            image, self._pending = self._pending, None
            return image
        if self._done or getattr(self, "_child", None) is None:
            return None
        return self._take(timeout_s)

    def _take(self, timeout_s: float):
        try:
            item = self._filled.get(timeout=timeout_s)
        except queue.Empty as e:
            if not self._child.is_alive():
                raise SourceError("the decoding process for %s died (exit code %s); fix: retry, or check the file "
                                  "with ffprobe" % (self.path, self._child.exitcode)) from e
            raise CaptureTimeout("no frame from the decoding process within %.1f s" % timeout_s) from e
        if item is None:
            self._done = True
            return None
        if isinstance(item, tuple):
            self._done = True
            raise SourceError(item[1])
        image = self._ring[item].copy()  # the slot goes back to the decoder; the frame lives on in the pipeline
        self._free.put(item)
        return image

    def close(self) -> None:
        child = getattr(self, "_child", None)
        if child is not None:
            self._free.put(None)
            child.join(2.0)
            if child.is_alive():
                child.terminate()
                child.join(2.0)
            self._child = None
            for q in (self._free, self._filled):
                q.cancel_join_thread()
                q.close()
            self._ring = None
            self._shm.close()
            self._shm.unlink()
        super().close()

    def describe(self) -> str:
        return super().describe()[:-1] + ", decoded in a child process)"
