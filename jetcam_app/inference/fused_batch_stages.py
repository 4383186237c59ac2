"""Several frames as one batch through one CUDA graph: upload, resize + normalise each, the network, static postprocess.

The batch counterpart of fused_stages.py, for the multi-source path: the eager batch stages spend ~60 small torch
calls a frame on the host, which caps how many cameras one process keeps up with. Batch sizes are padded up to a
few sizes (padded_sizes()), so each frame shape needs only a handful of graphs. Each batch in flight has a lane:
its own stream, and per frame shape frame buffers and a graph memory pool shared by that shape's batch sizes (a
batch replays one graph per shape). Frames of different shapes in one batch run as one sub-batch per shape, one
after the other on the lane's stream. A row whose device result is not provably exact (adapter.unpack() -> None)
is postprocessed again by the dynamic path from the same network outputs, and counted in `fallbacks`.

Stage times, as in fused_stages.py: pre = the sub-batch's upload, infer = its graph (CUDA events), post = waiting
for and unpacking the frame's result (wall time).
"""
from __future__ import annotations

import functools
import logging
import time
from typing import Dict, List, Optional, Sequence, Tuple  # noqa: F401 - Dict is used in a type comment

import numpy as np
import torch

from ..errors import first_line
from ..types import Frame, FrameTiming
from .batch_stages import BatchInFlight, BatchStages, split_outputs
from .host_buffers import DEFAULT_LIMIT_BYTES, pool_for
from .stages import Processed, StageClock

log = logging.getLogger(__name__)
MAX_SHAPES = 4  # frame shapes kept captured; a batch holding a frame of another shape runs eagerly
BYTES_PER_SOURCE = 64 * 1024 * 1024  # page-locked frame buffers a source may hold: 23 frames of 720p


_FOREACH_COPY = getattr(torch, "_foreach_copy_", None)


def copy_rows(targets: List[torch.Tensor], sources: List[torch.Tensor]) -> None:
    """targets[i].copy_(sources[i], non_blocking=True) for every i, in one call where torch has _foreach_copy_
    (2.1+): each torch call gives up the GIL and must win it back from the capture threads, and one call a frame was
    much of the inference thread's time (docs/performance.md, several sources on one H200)."""
    global _FOREACH_COPY
    if _FOREACH_COPY is not None:
        try:
            _FOREACH_COPY(targets, sources, non_blocking=True)
            return
        except (RuntimeError, TypeError) as e:  # a torch whose foreach copy refuses host-to-device: one call a row
            log.debug("torch._foreach_copy_ refused the upload (%s); copying row by row", first_line(e))
            _FOREACH_COPY = None
    for target, source in zip(targets, sources):
        target.copy_(source, non_blocking=True)


def padded_sizes(max_batch: int) -> List[int]:
    """The batch sizes graphs are captured for: powers of two below max_batch, and max_batch itself."""
    sizes, size = [], 1
    while size < max_batch:
        sizes.append(size)
        size *= 2
    return sizes + [max(1, int(max_batch))]


def padded_size(n: int, sizes: Sequence[int]) -> int:
    """The smallest of `sizes` (ascending) that holds n frames."""
    for size in sizes:
        if size >= n:
            return size
    raise ValueError("a batch of %d frames is larger than the largest batch size %d" % (n, sizes[-1]))


def group_by_shape(shapes: Sequence[Tuple[int, ...]]) -> List[Tuple[Tuple[int, ...], List[int]]]:
    """[(shape, indices of the frames of that shape)], shapes in the order they first appear."""
    groups = {}  # type: Dict[Tuple[int, ...], List[int]]
    for i, shape in enumerate(shapes):
        groups.setdefault(tuple(shape), []).append(i)
    return list(groups.items())


def batch_body(adapter, forward, dtype: torch.dtype, device_in: torch.Tensor, batch: int,
               image_hw: Tuple[int, int]) -> Tuple[Tuple[torch.Tensor, ...], torch.Tensor]:
    """What the graph captures for the first `batch` frames of device_in [rows, H, W, 3] uint8: each frame resized
    and normalised, the network on them as one batch, each frame's static postprocessing -> (outputs, packed).
    A model with batched static steps (adapter.batched_static) runs each once for the batch; any other, per frame
    (several times the kernels, each a few microseconds of the GPU's time however small)."""
    if batch > 1 and adapter.batched_static:  # one frame: its own steps are a few fewer
        outputs = forward(adapter.prepare_tensor(device_in[:batch], dtype))
        return outputs, adapter.static_postprocess_batch(outputs, image_hw)
    inputs = [adapter.prepare_tensor(device_in[i], dtype) for i in range(batch)]
    outputs = forward(inputs[0] if batch == 1 else torch.cat(inputs))
    return outputs, torch.stack([adapter.static_postprocess(split_outputs(outputs, i), image_hw) for i in range(batch)])


class _Inputs:
    """A lane's frame buffers for one shape, `rows` frames (the largest batch), page-locked and on the device: the
    graph for a batch of B reads the first B rows."""

    def __init__(self, shape: Tuple[int, ...], rows: int, device: torch.device):
        self.host_in = torch.empty((rows,) + tuple(shape), dtype=torch.uint8).pin_memory()
        self.host_in_np = self.host_in.numpy()
        self.device_in = torch.zeros((rows,) + tuple(shape), dtype=torch.uint8, device=device)
        self.host_rows = list(self.host_in.unbind(0))  # views made once, not per frame
        self.device_rows = list(self.device_in.unbind(0))
        self.uploaded = None  # type: Optional[torch.cuda.Event]  # the last upload out of host_in


class _Lane:
    """One batch in flight: its stream, its frame buffers and graph memory pools per shape, and the event saying its
    last batch's results are back (its buffers may then be reused)."""

    def __init__(self, device: torch.device, rows: int):
        self.device = device
        self.rows = rows
        self.stream = torch.cuda.Stream(device)
        self.done = None  # type: Optional[torch.cuda.Event]  # the last batch's result_ready
        self._pools = {}  # type: Dict[Tuple[int, ...], object]
        self._inputs = {}  # type: Dict[Tuple[int, ...], _Inputs]

    def inputs(self, shape: Tuple[int, ...]) -> _Inputs:
        """The frame buffers of this shape, shared by its batch sizes (a batch has one sub-batch per shape)."""
        if shape not in self._inputs:
            self._inputs[shape] = _Inputs(shape, self.rows, self.device)
        return self._inputs[shape]

    def pool(self, shape: Tuple[int, ...]):
        """The memory pool of this shape's graphs. Graphs sharing a pool overwrite each other's intermediates, which
        may lie where another's outputs do: one pool per shape, since a batch replays one graph per shape and the
        outputs are read (finish()) before the lane carries another batch."""
        if shape not in self._pools:
            self._pools[shape] = torch.cuda.graph_pool_handle()
        return self._pools[shape]


class _BatchGraph:
    """The graph and its buffers for `batch` frames of one shape on one lane."""

    def __init__(self, adapter, engine, shape: Tuple[int, ...], batch: int, lane: _Lane):
        device = engine.device
        self.inputs = lane.inputs(tuple(shape))
        device_in = self.inputs.device_in
        image_hw = (int(shape[0]), int(shape[1]))

        body = functools.partial(batch_body, adapter, engine.forward, engine.input_dtype, device_in, batch, image_hw)

        stream = lane.stream
        stream.wait_stream(torch.cuda.current_stream(device))
        with torch.inference_mode():
            with torch.cuda.stream(stream):
                for _ in range(3):  # warm-up: autotuning, lazy allocations and cached constants happen here
                    _, packed = body()
            torch.cuda.current_stream(device).wait_stream(stream)
            self.graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(self.graph, pool=lane.pool(tuple(shape)), stream=stream):
                self.outputs, self.packed = body()
        self.host_out = torch.empty(packed.shape, dtype=torch.float32).pin_memory()
        self.host_out_np = self.host_out.numpy()
        # Recorded anew for each sub-batch this graph carries, read in finish() before the lane carries the next.
        event = functools.partial(torch.cuda.Event, enable_timing=True)
        self.upload_start, self.uploaded = event(), event()  # uploaded: host_in may be overwritten
        self.graph_start, self.replayed = event(), event()
        self.result_ready = event()


class _FusedBatch:
    """A submitted batch: per sub-batch its graph and the indices of its frames."""

    def __init__(self, frames: List[Frame], parts: List[Tuple[_BatchGraph, List[int]]], submitted: float):
        self.frames = frames
        self.parts = parts
        self.submitted = submitted


class FusedBatchStages:
    """BatchStages' interface (submit(frames) -> handle, finish(handle) -> [Processed]) with each batch's device
    work in one graph replay per frame shape. Batches whose frames cannot all take the graph (a capture failed, too
    many shapes) run through the eager BatchStages."""

    def __init__(self, adapter, engine, max_batch: int, in_flight: int = 0):
        self.adapter = adapter
        self.engine = engine
        self.max_batch = max(1, int(max_batch))
        self.sizes = padded_sizes(self.max_batch)
        self.clock = StageClock(engine.device)
        # Two batches in flight as the eager batch stages: a batch already fills much of the GPU, and each lane
        # holds graph memory for its largest batch.
        self.in_flight = in_flight or 2
        self.eager = BatchStages(adapter, engine, self.max_batch, self.in_flight)
        self.padded_batch = 0  # the eager path pads nothing; padding here is counted in padded_frames
        self.padded_frames = 0
        self.fallbacks = 0  # frames whose device result was not exact: postprocessed by the dynamic path
        self.copied_frames = 0  # frames not decoded into host_buffers: copied into a page-locked row on this thread
        self._lanes = [_Lane(engine.device, self.max_batch) for _ in range(self.in_flight)]
        self._graphs = {}  # type: Dict[Tuple[Tuple[int, ...], int], List[_BatchGraph]]
        self._shapes = set()  # type: set
        self._turn = 0
        self._disabled = False
        self._warned_shapes = False
        self._upload_stream = torch.cuda.Stream(engine.device)
        self._main_stream = torch.cuda.current_stream(engine.device)
        # Page-locked buffers for the sources to decode into (given to them before they start): a frame is then
        # uploaded from where it was decoded, not copied on this thread. Sized for each source's queue and batches.
        self.host_buffers = pool_for(engine.device, max(DEFAULT_LIMIT_BYTES, self.max_batch * BYTES_PER_SOURCE))

    def warm_up(self) -> None:
        """The eager path's warm-up (a batch falling back to it must not autotune on a camera's frame)."""
        self.eager.warm_up()

    def prepare(self, shape_hwc: Tuple[int, int, int]) -> None:
        """Capture every batch size's graphs for frames of this shape now, before the clock starts."""
        shape = tuple(int(v) for v in shape_hwc)
        for size in self.sizes:
            if self._graphs_for(shape, size) is None:
                return

    def _graphs_for(self, shape: Tuple[int, ...], size: int) -> Optional[List[_BatchGraph]]:
        """One graph per lane for `size` frames of this shape, captured on first need; None: run eagerly."""
        key = (shape, size)
        graphs = self._graphs.get(key)
        if graphs is not None or self._disabled:
            return graphs
        if shape not in self._shapes and len(self._shapes) >= MAX_SHAPES:
            if not self._warned_shapes:
                self._warned_shapes = True
                log.warning("more than %d frame sizes: batches with frames of new sizes run without the fused CUDA "
                            "graph", MAX_SHAPES)
            return None
        start = time.perf_counter()
        try:
            graphs = [_BatchGraph(self.adapter, self.engine, shape, size, lane) for lane in self._lanes]
        except (RuntimeError, NotImplementedError) as e:
            self._disabled = True
            log.warning("the fused CUDA graph could not be captured for batches (%s); batches run eagerly",
                        first_line(e))
            return None
        self._shapes.add(shape)
        self._graphs[key] = graphs
        log.info("cuda: batches of %d %dx%d frames captured in one CUDA graph (%.2f s)", size, shape[1], shape[0],
                 time.perf_counter() - start)
        return graphs

    def submit(self, frames: Sequence[Frame]):
        if not 0 < len(frames) <= self.max_batch:
            raise ValueError("a batch holds 1 to %d frames, got %d" % (self.max_batch, len(frames)))
        now = time.perf_counter()
        frames = list(frames)
        plan = []
        for shape, indices in group_by_shape([f.image.shape for f in frames]):
            size = padded_size(len(indices), self.sizes)
            graphs = self._graphs_for(shape, size)
            if graphs is None:
                return self.eager.submit(frames)
            plan.append((graphs, indices, size))
        self._turn = (self._turn + 1) % len(self._lanes)
        lane = self._lanes[self._turn]
        upload, main = self._upload_stream, self._main_stream
        if lane.done is not None:
            upload.wait_event(lane.done)  # the lane's previous batch has left its device buffers
        parts = []
        for graphs, indices, size in plan:
            graph = graphs[self._turn]
            self._upload(graph, [frames[i].image for i in indices])
            self.padded_frames += size - len(indices)
            compute = lane.stream
            compute.wait_event(graph.uploaded)
            torch.cuda.set_stream(compute)
            try:
                graph.graph_start.record(compute)
                graph.graph.replay()  # on the current stream
                graph.replayed.record(compute)
                graph.host_out.copy_(graph.packed, non_blocking=True)
                graph.result_ready.record(compute)
            finally:
                torch.cuda.set_stream(main)
            lane.done = graph.result_ready
            parts.append((graph, indices))
        return _FusedBatch(frames, parts, now)

    def _upload(self, graph: _BatchGraph, images: List[np.ndarray]) -> None:
        """The images into the first rows of the graph's device buffer, on the upload stream. A frame decoded into
        the pool's page-locked buffers goes up from where it lies; any other is copied into the lane's own
        page-locked rows first. Only the frames' rows go up: padding rows hold earlier frames, never read."""
        buffers = graph.inputs
        pinned = [self.host_buffers.storage_of(image) if self.host_buffers is not None else None for image in images]
        if any(storage is None for storage in pinned):
            if buffers.uploaded is not None:
                buffers.uploaded.synchronize()  # the previous upload out of host_in is done before it is overwritten
            for row, image in enumerate(images):
                if pinned[row] is None:
                    np.copyto(buffers.host_in_np[row], image)
                    self.copied_frames += 1
        upload, main = self._upload_stream, self._main_stream
        torch.cuda.set_stream(upload)
        try:
            graph.upload_start.record(upload)
            if not any(storage is not None for storage in pinned):  # every row copied: one upload
                buffers.device_in[:len(images)].copy_(buffers.host_in[:len(images)], non_blocking=True)
            else:
                rows = [buffers.host_rows[row] if storage is None else storage for row, storage in enumerate(pinned)]
                copy_rows(buffers.device_rows[:len(images)], rows)
            graph.uploaded.record(upload)
            buffers.uploaded = graph.uploaded
        finally:
            torch.cuda.set_stream(main)

    def finish(self, work) -> List[Processed]:
        """Each frame's result, in the order given: its row of the packed results, or the dynamic postprocessing
        of its slice of the graph's outputs where that row is not exact."""
        if isinstance(work, BatchInFlight):
            return self.eager.finish(work)
        done = [None] * len(work.frames)  # type: List[Optional[Processed]]
        for graph, indices in work.parts:
            start = time.perf_counter()
            graph.result_ready.synchronize()
            packed = graph.host_out_np.copy()
            waited_ms = (time.perf_counter() - start) * 1000.0
            pre_ms = self.clock.elapsed_ms(graph.upload_start, graph.uploaded)
            infer_ms = self.clock.elapsed_ms(graph.graph_start, graph.replayed)
            for row, i in enumerate(indices):
                frame = work.frames[i]
                start = time.perf_counter()
                result = self.adapter.unpack(packed[row])
                if result is None:
                    self.fallbacks += 1
                    result = self.adapter.postprocess(split_outputs(graph.outputs, row), frame.image.shape[:2])
                post_ms = waited_ms + (time.perf_counter() - start) * 1000.0  # each frame waited for the batch
                timing = FrameTiming(queue_wait_ms=(work.submitted - frame.capture_time) * 1000.0, pre_ms=pre_ms,
                                     infer_ms=infer_ms, post_ms=post_ms)
                done[i] = Processed(frame, result, timing)
        return done  # type: ignore[return-value]


def make_batch_stages(adapter, engine, max_batch: int, cuda_graph: bool, in_flight: int = 0):
    """The fused batch graph where `cuda_graph` (pipeline.cuda_graph) asks for it and the engine can be fused
    (the torch CUDA engine); the eager BatchStages otherwise."""
    if cuda_graph and engine.capabilities.fuses_stages and engine.device.type == "cuda":
        return FusedBatchStages(adapter, engine, max_batch, in_flight)
    return BatchStages(adapter, engine, max_batch, in_flight)
