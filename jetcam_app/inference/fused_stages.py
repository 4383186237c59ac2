"""The inference stages as one CUDA graph per frame size: resize + normalise, the network, decoding and NMS.

Each frame then costs the host a handful of calls (copy into a pinned buffer, upload, replay, download of a
small packed result, one wait) instead of ~60 tensor operations. That matters beyond the launch overhead:
every torch call releases the GIL, and a thread that gives the GIL up 60 times a frame queues behind the
drawing and capture threads each time (the convoy effect), which is what held the app at a fraction of the
GPU's pace. Used where pipeline.cuda_graph is on (the default) and the engine declares `fuses_stages` (the
torch CUDA engine); a frame whose device result is not provably equal to the dynamic postprocessing (rare: see
static_nms.py) is postprocessed again by the dynamic path from the same network outputs.

Frames decoded into the page-locked buffers of `host_buffers` (the source is built with them) are
uploaded from where they lie; others are first copied into the slot's own page-locked buffer. With the overlay
on, a detection model's frames expected to have many boxes also get their outlines drawn by a second, small
graph on the uploaded frame (box_outlines.py), which comes back into another of those buffers; the host then
adds only the labels and the HUD.

Stage times here: pre = the frame's upload, infer = the graph (resize, network, decoding, NMS; GPU time from
CUDA events; the outlines come after it), post = waiting for and unpacking the kept boxes (wall time).
"""
from __future__ import annotations

import dataclasses
import functools
import logging
import time
from typing import Dict, List, Optional, Tuple  # noqa: F401 - Dict is used in a type comment

import numpy as np
import torch

from ..errors import first_line
from ..types import Frame
from .box_outlines import OutlinePainter
from .host_buffers import HostFramePool, is_integrated, pool_for
from .stages import InferenceStages, InFlight, Processed, StageClock, Stages

log = logging.getLogger(__name__)
MAX_GRAPHS = 4  # frame sizes kept captured; a folder of many sizes uses the eager stages beyond that
# Box outlines go on the GPU from this many boxes a frame (the last finished frame's count predicts the next):
# bringing the drawn frame back costs more than drawing a few boxes on the host.
GPU_OUTLINES_FROM = 16
# Frames in flight through the fused graph: each has a slot (its own graph, stream and memory) and the slots'
# graphs run side by side, one frame's small kernels filling what another's leave idle. Each slot holds its own
# graph memory, which on a Jetson comes out of the RAM the CPU shares, so there the default is 2.
IN_FLIGHT_DISCRETE = 4
IN_FLIGHT_INTEGRATED = 2


def default_in_flight(requested: int, integrated: bool) -> int:
    """Frames in flight through the fused graph: `requested` (pipeline.in_flight) or, at 0, the default."""
    if requested > 0:
        return requested
    return IN_FLIGHT_INTEGRATED if integrated else IN_FLIGHT_DISCRETE


class _GraphSlot:
    """The graph and its buffers for one frame size and one frame in flight."""

    def __init__(self, adapter, engine, shape: Tuple[int, ...], outline_boxes: bool = False):
        device = engine.device
        # The slot's graph is captured and replayed on a stream of its own, so the graphs of two frames in
        # flight can run at the same time; at batch 1 one frame's kernels leave most of a large GPU idle
        # (NMS rounds, small late layers). Each slot's graph has its own memory pool, and being captured on
        # its own stream it also gets its own cuBLAS workspace.
        self.stream = torch.cuda.Stream(device)
        self.host_in = torch.empty(shape, dtype=torch.uint8).pin_memory()
        self.host_in_np = self.host_in.numpy()
        self.device_in = torch.empty(shape, dtype=torch.uint8, device=device)
        image_hw = (int(shape[0]), int(shape[1]))

        def body():
            batch = adapter.prepare_tensor(self.device_in, engine.input_dtype)
            outputs = engine.forward(batch)
            return outputs, adapter.static_postprocess(outputs, image_hw)

        stream = self.stream
        stream.wait_stream(torch.cuda.current_stream())
        with torch.inference_mode():
            with torch.cuda.stream(stream):
                for _ in range(3):  # warm-up: autotuning, lazy allocations and cached constants happen here
                    _, packed = body()
            torch.cuda.current_stream().wait_stream(stream)
            self.graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(self.graph, stream=stream):
                self.outputs, self.packed = body()
        self.host_out = torch.empty(packed.shape, dtype=torch.float32).pin_memory()
        # The detections' outlines drawn onto the uploaded frame (nothing reads device_in after the first graph):
        # a second graph, replayed only for frames expected to have many boxes. The painter stays on the slot:
        # the graph reads its tensors, and their memory, once freed, would be handed to other tensors.
        self.painter = self.outline_graph = None
        if outline_boxes:
            self.painter = OutlinePainter(image_hw[0], image_hw[1], device)
            with torch.inference_mode(), torch.cuda.stream(stream):
                self.painter.draw(self.device_in, self.packed)  # warm-up
            torch.cuda.current_stream().wait_stream(stream)
            self.outline_graph = torch.cuda.CUDAGraph()
            with torch.inference_mode(), torch.cuda.graph(self.outline_graph, stream=stream):
                self.painter.draw(self.device_in, self.packed)
        self.host_out_np = self.host_out.numpy()
        # Events recorded anew for each frame this slot carries; the pipeline reads a frame's times (finish())
        # before the slot carries the next one. Made once: torch.cuda's Python wrappers cost more host time
        # than the whole graph launch when made per frame.
        event = functools.partial(torch.cuda.Event, enable_timing=True)
        self.upload_start, self.uploaded = event(), event()  # uploaded: host_in may be overwritten
        self.graph_start, self.replayed = event(), event()
        self.result_ready = event()  # host_out holds the result (and the drawn frame is back): device_in is free
        self.used = False


class GraphedStages:
    """The Stages protocol with the device work of a frame in one graph replay. `in_flight` graphs per frame size
    (default_in_flight()), used in turn, so that many frames can be in flight (the pipeline finishes frame n before
    it submits n + in_flight), each on its own stream so that their graphs overlap."""

    def __init__(self, adapter, engine, outline_boxes: bool = False, in_flight: int = 0):
        self.adapter = adapter
        self.engine = engine
        cuda = engine.device.type == "cuda"
        self.in_flight = default_in_flight(
            in_flight, cuda and is_integrated(torch.cuda.get_device_properties(engine.device)))
        self.clock = StageClock(engine.device)
        self.eager = InferenceStages(adapter, engine)
        self.fallbacks = 0  # frames the device result was not exact for
        self._slots = {}  # type: Dict[Tuple[int, ...], List[_GraphSlot]]
        self._turn = 0
        self._disabled = False  # the capture failed once: eager stages from then on
        self._warned_sizes = False
        self._upload_stream = torch.cuda.Stream(engine.device) if cuda else None
        self._main_stream = torch.cuda.current_stream(engine.device) if cuda else None
        # page-locked buffers for the source to decode into (the source is built with them)
        self.host_buffers = pool_for(engine.device) if cuda else None  # type: Optional[HostFramePool]
        # Box outlines drawn by the graph: detection models, with a pool to bring the drawn frames back into
        self.outlines_on_device = bool(outline_boxes and adapter.task == "detection" and self.host_buffers is not None)
        self._last_boxes = 0  # boxes of the last finished frame: whether the next frame's go on the GPU

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
            slots = [_GraphSlot(self.adapter, self.engine, shape, self.outlines_on_device)
                     for _ in range(self.in_flight)]
        except RuntimeError as e:
            # an older torch that cannot capture an operation, or (NotImplementedError) a model without the
            # static hooks of ModelAdapter
            self._disabled = True
            log.warning("the fused CUDA graph could not be captured (%s); the stages run eagerly", first_line(e))
            return None
        self._slots[shape] = slots
        log.info("cuda: preprocessing + %s + postprocessing captured in one CUDA graph for %dx%d frames (%.2f s)",
                 self.adapter.name, shape[1], shape[0], time.perf_counter() - start)
        return slots

    def prepare(self, shape_hwc: Tuple[int, int, int]) -> None:
        """Capture the graphs for frames of this shape now (before the clock starts) rather than on the first
        such frame: capturing takes a fraction of a second, which a live source would see as dropped frames."""
        self._slots_for(tuple(int(v) for v in shape_hwc))

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
        # frame's graph computes; it waits only for the slot's previous frame (its graphs and copies). Streams are
        # passed explicitly: each torch.cuda.current_stream() costs a device query and an environment lookup.
        upload, main = self._upload_stream, self._main_stream
        if slot.used:
            upload.wait_event(slot.result_ready)
        torch.cuda.set_stream(upload)
        try:
            slot.upload_start.record(upload)
            slot.device_in.copy_(host, non_blocking=True)
            slot.uploaded.record(upload)
        finally:
            torch.cuda.set_stream(main)
        compute = slot.stream
        compute.wait_event(slot.uploaded)
        slot.graph_start.record(compute)
        torch.cuda.set_stream(compute)
        try:
            slot.graph.replay()  # on the current stream
            slot.replayed.record(compute)
            slot.host_out.copy_(slot.packed, non_blocking=True)
            drawn = self._draw_outlines(slot)
            slot.result_ready.record(compute)
        finally:
            torch.cuda.set_stream(main)
        slot.used = True
        return InFlight(frame, (), (slot.upload_start, slot.uploaded, slot.graph_start, slot.replayed), now, slot,
                        drawn)

    def _draw_outlines(self, slot: _GraphSlot) -> Optional[np.ndarray]:
        """The frame with its box outlines drawn on the GPU, copied back into a page-locked buffer; None where the
        host draws them: when the last finished frame had fewer than GPU_OUTLINES_FROM boxes (drawing a few on
        the host is cheaper than bringing the frame back), or the pool is full."""
        if slot.outline_graph is None or self._last_boxes < GPU_OUTLINES_FROM:
            return None
        drawn = self.host_buffers.take(tuple(slot.device_in.shape))
        if drawn is not None:
            slot.outline_graph.replay()
            self.host_buffers.storage_of(drawn).copy_(slot.device_in, non_blocking=True)
        return drawn

    def finish(self, work: InFlight) -> Processed:
        slot = work.slot
        if slot is None:
            return self.eager.finish(work)
        start = time.perf_counter()
        slot.result_ready.synchronize()
        result = self.adapter.unpack(slot.host_out_np.copy())
        frame, outlined = work.frame, False
        if result is None:
            self.fallbacks += 1  # the outlines drawn were of the inexact result: the host draws these
            result = self.adapter.postprocess(slot.outputs, work.frame.image.shape[:2])
        elif work.drawn is not None:
            frame, outlined = dataclasses.replace(frame, image=work.drawn), True
        self._last_boxes = len(result) if self.outlines_on_device else 0
        post_ms = (time.perf_counter() - start) * 1000.0
        return Processed(frame, result, work.timing(self.clock, post_ms), outlined)


def make_stages(adapter, engine, cuda_graph: bool, outline_boxes: bool = False, in_flight: int = 0) -> Stages:
    """The fused graph where `cuda_graph` (pipeline.cuda_graph) asks for it and the engine declares it can be
    fused; the eager stages otherwise. A model whose static postprocessing cannot be captured falls back to the
    eager stages inside GraphedStages, with a warning. `outline_boxes`: the graph also draws the detections'
    box outlines (the overlay is on). `in_flight`: pipeline.in_flight (0 = the default)."""
    if cuda_graph and engine.capabilities.fuses_stages:
        return GraphedStages(adapter, engine, outline_boxes, in_flight)
    return InferenceStages(adapter, engine, in_flight)
