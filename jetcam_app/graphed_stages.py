"""The inference stages as one CUDA graph per frame size: resize + normalise, the network, decoding and NMS.

Each frame then costs the host a handful of calls (copy into a pinned buffer, upload, replay, download of a
small packed result, one wait) instead of ~60 tensor operations. That matters beyond the launch overhead:
every torch call releases the GIL, and a thread that gives the GIL up 60 times a frame queues behind the
drawing and capture threads each time (the convoy effect), which is what held the app at a fraction of the
GPU's pace. Used with `--cuda-graph` on the torch CUDA engine and models with static postprocessing; a frame
whose device result is not provably equal to the dynamic postprocessing (rare: see static_nms.py) is
postprocessed again by the dynamic path from the same network outputs.

Stage times here: pre = the frame's upload, infer = the graph (resize, network, decoding, NMS; GPU time from
CUDA events), post = waiting for and unpacking the kept boxes (wall time).
"""
from __future__ import annotations

import collections
import logging
import time
from typing import Any, Dict, List, Tuple

import numpy as np
import torch

from .stages import InferenceStages, InFlight, Processed, StageClock
from .types import Frame, FrameTiming

log = logging.getLogger(__name__)
MAX_GRAPHS = 4  # frame sizes kept captured; a folder of many sizes uses the eager stages beyond that


class _CapturedSize:
    """Buffers and the graph for one frame size."""

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
        self.input_free = None  # type: Any  # event: the last upload out of host_in is done (a frame ago or two)
        self.result_ready = None  # type: Any  # event: host_out holds the last replay's result


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
        self._sizes = collections.OrderedDict()  # type: Dict[Tuple[int, ...], List[_CapturedSize]]
        self._turn = 0
        self._warned = False

    def _captured(self, shape: Tuple[int, ...]):
        size = self._sizes.get(shape)
        if size is None and len(self._sizes) < MAX_GRAPHS and not self._warned:
            start = time.perf_counter()
            try:
                size = [_CapturedSize(self.adapter, self.engine, shape) for _ in range(self.depth)]
            except RuntimeError as e:  # an older torch that cannot capture one of the operations
                self._warned = True
                log.warning("the fused CUDA graph could not be captured (%s); the stages run eagerly",
                            str(e).splitlines()[0])
                return None
            self._sizes[shape] = size
            log.info("cuda: preprocessing + %s + postprocessing captured in one CUDA graph for %dx%d frames (%.2f s)",
                     self.adapter.name, shape[1], shape[0], time.perf_counter() - start)
        elif size is None and not self._warned:
            self._warned = True
            log.warning("more than %d frame sizes: frames of new sizes run without the fused CUDA graph", MAX_GRAPHS)
        return size

    def submit(self, frame: Frame) -> InFlight:
        slots = self._captured(tuple(frame.image.shape))
        if slots is None:
            return self.eager.submit(frame)
        self._turn = (self._turn + 1) % len(slots)
        size = slots[self._turn]
        now = time.perf_counter()
        if size.input_free is not None:
            size.input_free.synchronize()
        t0 = self.clock.mark()
        np.copyto(size.host_in_np, frame.image)
        size.device_in.copy_(size.host_in, non_blocking=True)
        t1 = self.clock.mark()
        size.input_free = t1
        size.graph.replay()
        t2 = self.clock.mark()
        size.host_out.copy_(size.packed, non_blocking=True)
        size.result_ready = self.clock.mark()
        return InFlight(frame, (size,), (t0, t1, t2), now)  # type: ignore[arg-type]

    def finish(self, work: InFlight) -> Processed:
        if not (work.outputs and isinstance(work.outputs[0], _CapturedSize)):
            return self.eager.finish(work)
        size = work.outputs[0]
        start = time.perf_counter()
        size.result_ready.synchronize()
        result = self.adapter.unpack(size.host_out_np.copy())
        if result is None:
            self.fallbacks += 1
            result = self.adapter.postprocess(size.outputs, work.frame.image.shape[:2])
        post_ms = (time.perf_counter() - start) * 1000.0
        t0, t1, t2 = work.marks
        timing = FrameTiming(
            queue_wait_ms=(work.submitted - work.frame.capture_time) * 1000.0,
            pre_ms=self.clock.elapsed_ms(t0, t1), infer_ms=self.clock.elapsed_ms(t1, t2), post_ms=post_ms)
        return Processed(work.frame, result, timing)


def make_stages(adapter, engine):
    """The fused graph where the engine and the model allow it, the eager stages otherwise."""
    if getattr(engine, "fuses_stages", False) and adapter.supports_static:
        return GraphedStages(adapter, engine)
    return InferenceStages(adapter, engine)
