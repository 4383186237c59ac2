"""The inference stages as one CUDA graph per frame size: resize + normalise, the network, decoding and NMS.

Each frame then costs the host a handful of calls (copy into a pinned buffer, upload, replay, download of a
small packed result, one wait) instead of ~60 tensor operations. That matters beyond the launch overhead:
every torch call releases the GIL, and a thread that gives the GIL up 60 times a frame queues behind the
drawing and capture threads each time (the convoy effect), which is what held the app at a fraction of the
GPU's pace. Used with `--cuda-graph` on the torch CUDA engine and models with static postprocessing; a frame
whose device result is not provably equal to the dynamic postprocessing (rare: see static_nms.py) is
postprocessed again by the dynamic path from the same network outputs.

Frames decoded into the page-locked buffers of `host_buffers` (the pipeline hands them to the source) are
uploaded from where they lie; others are first copied into the slot's own page-locked buffer.

Stage times here: pre = the frame's upload, infer = the graph (resize, network, decoding, NMS; GPU time from
CUDA events), post = waiting for and unpacking the kept boxes (wall time).
"""
from __future__ import annotations

import functools
import logging
import time
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
import torch

from .host_buffers import pool_for
from .stages import InferenceStages, InFlight, Processed, StageClock
from .types import Frame

log = logging.getLogger(__name__)
MAX_GRAPHS = 4  # frame sizes kept captured; a folder of many sizes uses the eager stages beyond that


class _GraphSlot:
    """The graph and its buffers for one frame size and one frame in flight."""

    def __init__(self, adapter, engine, shape: Tuple[int, ...]):
        device = engine.device
        self.host_in = torch.empty(shape, dtype=torch.uint8).pin_memory()
        self.host_in_np = self.host_in.numpy()
        self.device_in = torch.empty(shape, dtype=torch.uint8, device=device)
        image_hw = (int(shape[0]), int(shape[1]))

        def body():
            batch = adapter.prepare_tensor(self.device_in, engine.input_dtype)
            outputs = engine.forward(batch)
            return outputs, adapter.static_postprocess(outputs, image_hw)

        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.inference_mode():
            with torch.cuda.stream(stream):
                for _ in range(3):  # warm-up: autotuning, lazy allocations and cached constants happen here
                    _, packed = body()
            torch.cuda.current_stream().wait_stream(stream)
            self.graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(self.graph):
                self.outputs, self.packed = body()
        self.host_out = torch.empty(packed.shape, dtype=torch.float32).pin_memory()
        self.host_out_np = self.host_out.numpy()
        # Events recorded anew for each frame this slot carries; the pipeline reads a frame's times (finish())
        # before the slot carries the next one. Made once: torch.cuda's Python wrappers cost more host time
        # than the whole graph launch when made per frame.
        event = functools.partial(torch.cuda.Event, enable_timing=True)
        self.upload_start, self.uploaded = event(), event()  # uploaded: host_in may be overwritten
        self.graph_start, self.replayed = event(), event()  # replayed: device_in may be overwritten
        self.result_ready = event()  # host_out holds the result
        self.used = False


class GraphedStages:
    """submit()/finish() like InferenceStages, with the device work of a frame in one graph replay.
    Two graphs per frame size, used in turn, so two frames can be in flight (the pipeline finishes frame n
    before it submits n + 2)."""

    asynchronous = True
    depth = 2

    def __init__(self, adapter, engine):
        self.adapter = adapter
        self.engine = engine
        self.clock = StageClock(engine.device)
        self.eager = InferenceStages(adapter, engine)
        self.fallbacks = 0  # frames the device result was not exact for
        self._slots = {}  # type: Dict[Tuple[int, ...], List[_GraphSlot]]
        self._turn = 0
        self._disabled = False  # the capture failed once: eager stages from then on
        self._warned_sizes = False
        cuda = engine.device.type == "cuda"
        self._upload_stream = torch.cuda.Stream(engine.device) if cuda else None
        self._main_stream = torch.cuda.current_stream(engine.device) if cuda else None
        # page-locked buffers for the source to decode into (the pipeline hands them to it)
        self.host_buffers = pool_for(engine.device) if cuda else None

    def _slots_for(self, shape: Tuple[int, ...]) -> Optional[List[_GraphSlot]]:
        """The slots for frames of this shape, captured on first sight; None where the eager stages must run."""
        slots = self._slots.get(shape)
        if slots is not None or self._disabled:
            return slots
        if len(self._slots) >= MAX_GRAPHS:
            if not self._warned_sizes:
                self._warned_sizes = True
                log.warning("more than %d frame sizes: frames of new sizes run without the fused CUDA graph",
                            MAX_GRAPHS)
            return None
        start = time.perf_counter()
        try:
            slots = [_GraphSlot(self.adapter, self.engine, shape) for _ in range(self.depth)]
        except RuntimeError as e:  # an older torch that cannot capture one of the operations
            self._disabled = True
            log.warning("the fused CUDA graph could not be captured (%s); the stages run eagerly",
                        str(e).splitlines()[0])
            return None
        self._slots[shape] = slots
        log.info("cuda: preprocessing + %s + postprocessing captured in one CUDA graph for %dx%d frames (%.2f s)",
                 self.adapter.name, shape[1], shape[0], time.perf_counter() - start)
        return slots

    def submit(self, frame: Frame) -> InFlight:
        slots = self._slots_for(tuple(frame.image.shape))
        if slots is None:
            return self.eager.submit(frame)
        self._turn = (self._turn + 1) % len(slots)
        slot = slots[self._turn]
        now = time.perf_counter()
        host = self.host_buffers.storage_of(frame.image) if self.host_buffers is not None else None
        if host is None:  # not decoded into a page-locked buffer: copy it into this slot's
            if slot.used:
                slot.uploaded.synchronize()
            np.copyto(slot.host_in_np, frame.image)
            host = slot.host_in
        # The upload runs on a stream of its own, so the copy engine moves this frame while the previous
        # frame's graph computes; it waits only for the graph that last read this slot's input. Streams are
        # passed explicitly: each torch.cuda.current_stream() costs a device query and an environment lookup.
        upload, main = self._upload_stream, self._main_stream
        if slot.used:
            upload.wait_event(slot.replayed)
        torch.cuda.set_stream(upload)
        try:
            slot.upload_start.record(upload)
            slot.device_in.copy_(host, non_blocking=True)
            slot.uploaded.record(upload)
        finally:
            torch.cuda.set_stream(main)
        main.wait_event(slot.uploaded)
        slot.graph_start.record(main)
        slot.graph.replay()
        slot.replayed.record(main)
        slot.host_out.copy_(slot.packed, non_blocking=True)
        slot.result_ready.record(main)
        slot.used = True
        return InFlight(frame, (), (slot.upload_start, slot.uploaded, slot.graph_start, slot.replayed), now, slot)

    def finish(self, work: InFlight) -> Processed:
        slot = work.slot
        if slot is None:
            return self.eager.finish(work)
        start = time.perf_counter()
        slot.result_ready.synchronize()
        result = self.adapter.unpack(slot.host_out_np.copy())
        if result is None:
            self.fallbacks += 1
            result = self.adapter.postprocess(slot.outputs, work.frame.image.shape[:2])
        post_ms = (time.perf_counter() - start) * 1000.0
        return Processed(work.frame, result, work.timing(self.clock, post_ms))


def make_stages(adapter, engine):
    """The fused graph where the engine and the model allow it, the eager stages otherwise."""
    if getattr(engine, "fuses_stages", False) and adapter.supports_static:
        return GraphedStages(adapter, engine)
    return InferenceStages(adapter, engine)
