"""The captured pieces of the fused stages: a lane's frame buffers and streams, and one CUDA graph for B frames of one
shape (upload target -> resize + normalise -> the network -> static postprocessing), with the batch sizes it pads to.

At B = 1 the graph is the one-frame graph (no batch steps at all), optionally followed by a second, small graph that
draws the detections' box outlines on the uploaded frame (box_outlines.py).
"""

import functools
import logging
from typing import Dict, List, Optional, Sequence, Tuple  # noqa: F401 - Dict is used in a type comment

import torch

from ..errors import first_line
from .box_outlines import OutlinePainter
from .stages import padded_sizes, split_outputs  # noqa: F401 - padded_sizes lives with the eager warm-up

log = logging.getLogger(__name__)
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
    and normalised, the network on them as one batch, each frame's static postprocessing -> (outputs, packed
    [batch, ...]). One frame: its own steps, the packed result given its batch dimension as a view (no kernel). A
    model with batched static steps (adapter.batched_static) runs each once for the batch; any other, per frame
    (several times the kernels, each a few microseconds of the GPU's time however small)."""
    if batch == 1:
        outputs = forward(adapter.prepare_tensor(device_in[0], dtype))
        return outputs, adapter.static_postprocess(outputs, image_hw).unsqueeze(0)
    if adapter.batched_static:
        outputs = forward(adapter.prepare_tensor(device_in[:batch], dtype))
        return outputs, adapter.static_postprocess_batch(outputs, image_hw)
    outputs = forward(torch.cat([adapter.prepare_tensor(device_in[i], dtype) for i in range(batch)]))
    return outputs, torch.stack([adapter.static_postprocess(split_outputs(outputs, i), image_hw) for i in range(batch)])


class Inputs:
    """A lane's frame buffers for one shape, `rows` frames (the largest batch), page-locked and on the device: the
    graph for a batch of B reads the first B rows."""

    def __init__(self, shape: Tuple[int, ...], rows: int, device: torch.device):
        self.host_in = torch.empty((rows,) + tuple(shape), dtype=torch.uint8).pin_memory()
        self.host_in_np = self.host_in.numpy()
        self.device_in = torch.zeros((rows,) + tuple(shape), dtype=torch.uint8, device=device)
        self.host_rows = list(self.host_in.unbind(0))  # views made once, not per frame
        self.device_rows = list(self.device_in.unbind(0))
        self.uploaded = None  # type: Optional[torch.cuda.Event]  # the last upload out of host_in


class Lane:
    """One batch in flight: its stream (the graphs of two batches in flight run side by side, one's small kernels
    filling what the other's leave idle), its frame buffers and graph memory pools per shape, and the event saying
    its last batch's results are back (its buffers may then be reused)."""

    def __init__(self, device: torch.device, rows: int):
        self.device = device
        self.rows = rows
        self.stream = torch.cuda.Stream(device)
        self.done = None  # type: Optional[torch.cuda.Event]  # the last batch's result_ready
        self._pools = {}  # type: Dict[Tuple[int, ...], object]
        self._inputs = {}  # type: Dict[Tuple[int, ...], Inputs]

    def inputs(self, shape: Tuple[int, ...]) -> Inputs:
        """The frame buffers of this shape, shared by its batch sizes (a batch has one sub-batch per shape)."""
        if shape not in self._inputs:
            self._inputs[shape] = Inputs(shape, self.rows, self.device)
        return self._inputs[shape]

    def pool(self, shape: Tuple[int, ...]):
        """The memory pool of this shape's graphs. Graphs sharing a pool overwrite each other's intermediates, which
        may lie where another's outputs do: one pool per shape, since a batch replays one graph per shape and the
        outputs are read (finish()) before the lane carries another batch."""
        if shape not in self._pools:
            self._pools[shape] = torch.cuda.graph_pool_handle()
        return self._pools[shape]


class BatchGraph:
    """The graph and its buffers for `batch` frames of one shape on one lane; at batch 1 with `outline_boxes`, also
    the graph drawing the box outlines onto the uploaded frame (nothing reads it after the first graph)."""

    def __init__(self, adapter, engine, shape: Tuple[int, ...], batch: int, lane: Lane, outline_boxes: bool = False):
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
        # The painter stays on the graph: the graph reads its tensors, whose memory, once freed, would be handed on.
        self.painter = self.outline_graph = None
        if outline_boxes and batch == 1:
            frame = self.inputs.device_rows[0]
            self.painter = OutlinePainter(image_hw[0], image_hw[1], device)
            with torch.inference_mode(), torch.cuda.stream(stream):
                self.painter.draw(frame, self.packed[0])  # warm-up
            torch.cuda.current_stream(device).wait_stream(stream)
            self.outline_graph = torch.cuda.CUDAGraph()
            with torch.inference_mode(), torch.cuda.graph(self.outline_graph, stream=stream):
                self.painter.draw(frame, self.packed[0])
        # Events recorded anew for each batch this graph carries, read in finish() before the lane carries the
        # next. Made once: torch.cuda's Python wrappers cost more host time than a graph launch when made per frame.
        event = functools.partial(torch.cuda.Event, enable_timing=True)
        self.upload_start, self.uploaded = event(), event()  # uploaded: host_in may be overwritten
        self.graph_start, self.replayed = event(), event()
        self.result_ready = event()  # host_out holds the result (and a drawn frame is back): device_in is free
