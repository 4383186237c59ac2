"""The inference stages as CUDA graphs: per frame shape and batch size one graph holding resize + normalise, the
network, decoding and NMS, for 1..N frames (one source is a batch of one).

Each batch then costs the host a handful of calls (copy into a pinned buffer, upload, replay, download of a small
packed result, one wait) instead of ~60 tensor operations a frame. That matters beyond the launch overhead: every
torch call releases the GIL, and a thread that gives the GIL up 60 times a frame queues behind the drawing and
capture threads each time (the convoy effect), which is what held the app at a fraction of the GPU's pace. Used
where pipeline.cuda_graph is on (the default) and the engine declares `fuses_stages` (the torch CUDA engine).

Batch sizes are padded up to a few sizes (graph_parts.padded_sizes()), so each frame shape needs only a handful of
graphs. Each batch in flight has a lane (graph_parts.Lane). Frames of different shapes in one batch run as one
sub-batch per shape, one after the other on the lane's stream. A row whose device result is not provably exact
(adapter.unpack() -> None; rare: see static_nms.py) is postprocessed again by the dynamic path from the same
network outputs, and counted in `fallbacks`. Batches whose frames cannot all take a graph (a capture failed, too
many shapes) run through the eager stages.

Frames decoded into the page-locked buffers of `host_buffers` (the sources are built with them) are uploaded from
where they lie; others are first copied into the lane's own page-locked rows. With the overlay on and one frame at a
time, a detection model's frames expected to have many boxes also get their outlines drawn on the GPU, and come back
into another of those buffers; the host then adds only the labels and the HUD.

Stage times: pre = the sub-batch's upload, infer = its graph (resize, network, decoding, NMS; GPU time from CUDA
events; the outlines come after it), post = waiting for and unpacking the frame's result (wall time).
"""

import dataclasses
import logging
import time
from typing import Dict, List, Optional, Sequence, Tuple  # noqa: F401 - Dict is used in a type comment

import numpy as np
import torch

from ..errors import first_line
from ..types import Frame, FrameTiming, device_pixels
from .box_outlines import GPU_OUTLINES_SUPPORTED
from .graph_parts import BatchGraph, Lane, copy_rows, group_by_shape, padded_size, padded_sizes
from .host_buffers import DEFAULT_LIMIT_BYTES, HostFramePool, is_integrated, pool_for
from .stages import EagerBatch, EagerStages, Processed, StageClock, Stages, split_outputs

log = logging.getLogger(__name__)
MAX_SHAPES = 4  # frame shapes kept captured; a batch holding a frame of another shape runs eagerly
BYTES_PER_SOURCE = 64 * 1024 * 1024  # page-locked frame buffers a source may hold: 23 frames of 720p
# Box outlines go on the GPU from this many boxes a frame (the last finished frame's count predicts the next):
# bringing the drawn frame back costs more than drawing a few boxes on the host.
GPU_OUTLINES_FROM = 16
# One frame at a time: frames in flight, each on a lane of its own whose graphs run side by side, one frame's small
# kernels filling what another's leave idle. Each lane holds its own graph memory, which on a Jetson comes out of the
# RAM the CPU shares, so there the default is 2. Batches already fill much of the GPU: 2 in flight.
IN_FLIGHT_DISCRETE = 4
IN_FLIGHT_INTEGRATED = 2
IN_FLIGHT_BATCHES = 2


def default_in_flight(requested: int, integrated: bool, max_batch: int = 1) -> int:
    """Batches in flight through the fused graphs: `requested` (pipeline.in_flight) or, at 0, the default."""
    if requested > 0:
        return requested
    if max_batch > 1:
        return IN_FLIGHT_BATCHES
    return IN_FLIGHT_INTEGRATED if integrated else IN_FLIGHT_DISCRETE


class _FusedBatch:
    """A submitted batch: per sub-batch its graph, the indices of its frames and the frame drawn on the GPU."""

    def __init__(self, frames: List[Frame], parts: list, submitted: float):
        self.frames = frames
        self.parts = parts  # [(BatchGraph, [frame indices], drawn image or None)]
        self.submitted = submitted


def fuses(engine, cuda_graph: bool) -> bool:
    """Whether the stages for this engine are the fused graphs: pipeline.cuda_graph asks for them and the engine
    declares it can be fused (the torch CUDA engine)."""
    return bool(cuda_graph and engine.capabilities.fuses_stages)


def frame_pool(engine, cuda_graph: bool, max_batch: int = 1) -> Optional[HostFramePool]:
    """Page-locked buffers for the sources to decode into (they are built with it) where the fused graphs will upload
    frames from them: a frame is then uploaded from where it was decoded, not copied on the inference thread. Sized
    for each source's queue and batches; None elsewhere, or where the CPU would not cache such memory."""
    if not (fuses(engine, cuda_graph) and engine.device.type == "cuda"):
        return None
    limit = DEFAULT_LIMIT_BYTES if max_batch <= 1 else max(DEFAULT_LIMIT_BYTES, max_batch * BYTES_PER_SOURCE)
    return pool_for(engine.device, limit)


class FusedStages:
    """The Stages protocol with each batch's device work in one graph replay per frame shape. `host_buffers`: the
    pool the sources decode into (frame_pool()); by default one of its own."""

    padded_batch = 0  # batches are padded to the captured sizes, not to an engine's fixed batch

    def __init__(self, adapter, engine, max_batch: int = 1, outline_boxes: bool = False, in_flight: int = 0,
                 host_buffers: Optional[HostFramePool] = None):
        self.adapter = adapter
        self.engine = engine
        self.max_batch = max(1, int(max_batch))
        self.sizes = padded_sizes(self.max_batch)
        cuda = engine.device.type == "cuda"
        self.in_flight = default_in_flight(
            in_flight, cuda and is_integrated(torch.cuda.get_device_properties(engine.device)), self.max_batch)
        self.clock = StageClock(engine.device)
        self.eager = EagerStages(adapter, engine, self.max_batch, self.in_flight)
        self.padded_frames = 0  # batch slots run without a frame
        self.fallbacks = 0  # frames whose device result was not exact: postprocessed by the dynamic path
        self.copied_frames = 0  # frames not decoded into host_buffers: copied into a page-locked row on this thread
        self._lanes = []  # type: List[Lane]  # made with the first graph: a CPU engine has no streams
        self._graphs = {}  # type: Dict[Tuple[Tuple[int, ...], int], List[BatchGraph]]
        self._shapes = set()  # type: set
        self._turn = 0
        self._disabled = False  # a capture failed once: the eager stages from then on
        self._warned_shapes = False
        self._upload_stream = torch.cuda.Stream(engine.device) if cuda else None
        self._main_stream = torch.cuda.current_stream(engine.device) if cuda else None
        self.host_buffers = host_buffers or frame_pool(engine, True, self.max_batch)  # type: Optional[HostFramePool]
        # Box outlines drawn by the graph: detection models one frame at a time, with a pool to bring frames back into
        self.outlines_on_device = bool(outline_boxes and adapter.task == "detection" and self.max_batch == 1
                                       and self.host_buffers is not None and GPU_OUTLINES_SUPPORTED)
        self._last_boxes = 0  # boxes of the last finished frame: whether the next frame's go on the GPU

    def warm_up(self) -> None:
        """The eager path's warm-up (a batch falling back to it must not autotune on a camera's frame)."""
        self.eager.warm_up()

    def prepare(self, shape_hwc: Tuple[int, int, int]) -> None:
        """Capture every batch size's graphs for frames of this shape now, before the clock starts: capturing takes a
        fraction of a second, which a live source would see as dropped frames."""
        shape = tuple(int(v) for v in shape_hwc)
        for size in self.sizes:
            if self._graphs_for(shape, size) is None:
                return

    def _graphs_for(self, shape: Tuple[int, ...], size: int) -> Optional[List[BatchGraph]]:
        """One graph per lane for `size` frames of this shape, captured on first need; None: run eagerly."""
        key = (shape, size)
        graphs = self._graphs.get(key)
        if graphs is not None or self._disabled:
            return graphs
        if shape not in self._shapes and len(self._shapes) >= MAX_SHAPES:
            if not self._warned_shapes:
                self._warned_shapes = True
                log.warning("more than %d frame sizes: frames of new sizes run without the fused CUDA graph",
                            MAX_SHAPES)
            return None
        start = time.perf_counter()
        try:
            if not self._lanes:
                self._lanes = [Lane(self.engine.device, self.max_batch) for _ in range(self.in_flight)]
            graphs = [BatchGraph(self.adapter, self.engine, shape, size, lane, self.outlines_on_device)
                      for lane in self._lanes]
        except (RuntimeError, NotImplementedError, AssertionError, ValueError) as e:
            # an older torch that cannot capture an operation, a model without the static hooks of ModelAdapter
            # (NotImplementedError), or an engine or torch without CUDA (ValueError, AssertionError)
            self._disabled = True
            log.warning("the fused CUDA graph could not be captured (%s); the stages run eagerly", first_line(e))
            return None
        self._shapes.add(shape)
        self._graphs[key] = graphs
        log.info("cuda: preprocessing + %s + postprocessing captured in one CUDA graph for %s%dx%d frames (%.2f s)",
                 self.adapter.name, "batches of %d " % size if self.max_batch > 1 else "", shape[1], shape[0],
                 time.perf_counter() - start)
        return graphs

    def submit(self, frames: Sequence[Frame]):
        if not 0 < len(frames) <= self.max_batch:
            raise ValueError("a batch holds 1 to %d frames, got %d" % (self.max_batch, len(frames)))
        now = time.perf_counter()
        if len(frames) == 1:  # one source: nothing to group
            groups = [(frames[0].hw + (3,), [0])]  # type: List[Tuple[Tuple[int, ...], List[int]]]
        else:
            groups = group_by_shape([f.hw + (3,) for f in frames])
        plan = []
        for shape, indices in groups:
            size = padded_size(len(indices), self.sizes)
            graphs = self._graphs_for(shape, size)
            if graphs is None:
                return self.eager.submit(frames)
            plan.append((graphs, indices, size))
        turn = self._turn = (self._turn + 1) % len(self._lanes)
        lane = self._lanes[turn]
        upload, main = self._upload_stream, self._main_stream
        if lane.done is not None:
            upload.wait_event(lane.done)  # the lane's previous batch has left its device buffers
        parts = []
        for graphs, indices, size in plan:
            graph = graphs[turn]
            self._upload(graph, [frames[i] for i in indices])
            self.padded_frames += size - len(indices)
            # Streams are passed explicitly: each torch.cuda.current_stream() costs a device query.
            compute = lane.stream
            compute.wait_event(graph.uploaded)
            torch.cuda.set_stream(compute)
            try:
                graph.graph_start.record(compute)
                graph.graph.replay()  # on the current stream
                graph.replayed.record(compute)
                graph.host_out.copy_(graph.packed, non_blocking=True)
                drawn = self._draw_outlines(graph)
                graph.result_ready.record(compute)
            finally:
                torch.cuda.set_stream(main)
            lane.done = graph.result_ready
            parts.append((graph, indices, drawn))
        return _FusedBatch(list(frames), parts, now)

    def _upload(self, graph: BatchGraph, frames: List[Frame]) -> None:
        """The frames into the first rows of the graph's device buffer, on the upload stream (the copy engine moves
        them while the previous batch's graph computes). A frame decoded on the GPU is copied on the device; one
        decoded into the pool's page-locked buffers goes up from where it lies; any other is copied into the lane's
        own page-locked rows first. Only the frames' rows go up: padding rows hold earlier frames, never read."""
        buffers = graph.inputs
        pool = self.host_buffers
        on_device = [device_pixels(frame) for frame in frames]
        images = [frame.image if pixels is None else None for frame, pixels in zip(frames, on_device)]
        pinned = [pool.storage_of(image) if pool is not None and image is not None else None for image in images]
        copied = [row for row, image in enumerate(images) if image is not None and pinned[row] is None]
        if copied:
            if buffers.uploaded is not None:
                buffers.uploaded.synchronize()  # the previous upload out of host_in is done before it is overwritten
            for row in copied:
                np.copyto(buffers.host_in_np[row], images[row])
            self.copied_frames += len(copied)
        rows = [on_device[row] if on_device[row] is not None else pinned[row] if pinned[row] is not None
                else buffers.host_rows[row] for row in range(len(frames))]
        upload, main = self._upload_stream, self._main_stream
        torch.cuda.set_stream(upload)
        try:
            graph.upload_start.record(upload)
            if len(rows) == 1:
                buffers.device_rows[0].copy_(rows[0], non_blocking=True)
            elif len(copied) == len(rows):  # every row copied: one upload
                buffers.device_in[:len(rows)].copy_(buffers.host_in[:len(rows)], non_blocking=True)
            else:  # device-to-device and host-to-device rows in separate calls: foreach copies keep to one kind
                for kind in (True, False):
                    picked = [row for row in range(len(rows)) if (on_device[row] is not None) == kind]
                    if picked:
                        copy_rows([buffers.device_rows[row] for row in picked], [rows[row] for row in picked])
            for pixels in on_device:
                if pixels is not None:  # its memory is not handed on before this stream has read it
                    pixels.record_stream(upload)
            graph.uploaded.record(upload)
            buffers.uploaded = graph.uploaded
        finally:
            torch.cuda.set_stream(main)

    def _draw_outlines(self, graph: BatchGraph) -> Optional[np.ndarray]:
        """The frame with its box outlines drawn on the GPU, copied back into a page-locked buffer; None where the
        host draws them: when the last finished frame had fewer than GPU_OUTLINES_FROM boxes (drawing a few on
        the host is cheaper than bringing the frame back), or the pool is full."""
        if graph.outline_graph is None or self._last_boxes < GPU_OUTLINES_FROM:
            return None
        frame = graph.inputs.device_rows[0]
        drawn = self.host_buffers.take(tuple(frame.shape))
        if drawn is not None:
            graph.outline_graph.replay()
            self.host_buffers.storage_of(drawn).copy_(frame, non_blocking=True)
        return drawn

    def finish(self, work) -> List[Optional[Processed]]:
        """Each frame's result, in the order given: its row of the packed results, or the dynamic postprocessing
        of its slice of the graph's outputs where that row is not exact."""
        if isinstance(work, EagerBatch):
            return self.eager.finish(work)
        done = [None] * len(work.frames)  # type: List[Optional[Processed]]
        for graph, indices, drawn in work.parts:
            start = time.perf_counter()
            graph.result_ready.synchronize()
            packed = graph.host_out_np.copy()
            waited_ms = (time.perf_counter() - start) * 1000.0
            pre_ms = self.clock.elapsed_ms(graph.upload_start, graph.uploaded)
            infer_ms = self.clock.elapsed_ms(graph.graph_start, graph.replayed)
            for row, i in enumerate(indices):
                frame, outlined = work.frames[i], False
                start = time.perf_counter()
                result = self.adapter.unpack(packed[row])
                if result is None:
                    self.fallbacks += 1  # outlines drawn were of the inexact result: the host draws these
                    outputs = graph.outputs if row == 0 else split_outputs(graph.outputs, row)
                    result = self.adapter.postprocess(outputs, frame.hw)
                elif drawn is not None:
                    frame, outlined = dataclasses.replace(frame, image=drawn), True
                if self.outlines_on_device:
                    self._last_boxes = len(result)
                post_ms = waited_ms + (time.perf_counter() - start) * 1000.0  # each frame waited for the batch
                timing = FrameTiming(queue_wait_ms=(work.submitted - frame.capture_time) * 1000.0, pre_ms=pre_ms,
                                     infer_ms=infer_ms, post_ms=post_ms)
                done[i] = Processed(frame, result, timing, outlined)
        return done


def make_stages(adapter, engine, cuda_graph: bool, max_batch: int = 1, outline_boxes: bool = False,
                in_flight: int = 0, host_buffers: Optional[HostFramePool] = None) -> Stages:
    """The fused graphs where `cuda_graph` (pipeline.cuda_graph) asks for them and the engine declares it can be
    fused (the torch CUDA engine); the eager stages otherwise. A model whose static postprocessing cannot be captured
    falls back to the eager stages inside FusedStages, with a warning. `outline_boxes`: the graph also draws the
    detections' box outlines (the overlay is on). `in_flight`: pipeline.in_flight (0 = the default); `host_buffers`:
    frame_pool()'s pool, which the sources were built with."""
    if fuses(engine, cuda_graph):
        return FusedStages(adapter, engine, max_batch, outline_boxes, in_flight, host_buffers)
    return EagerStages(adapter, engine, max_batch, in_flight)
