"""The per-frame inference stages (preprocess -> infer -> postprocess) with honest stage times.

On CUDA preprocessing and inference are queued without waiting and timed with CUDA events (read once the
result is back); postprocessing, which waits for the result, is timed by the wall clock. On the CPU every
stage is timed with perf_counter.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Optional, Protocol, Tuple, runtime_checkable

import torch

from ..types import Frame, FrameTiming, Result
from .host_buffers import HostFramePool


class StageClock:
    def __init__(self, device: torch.device):
        self.cuda = device.type == "cuda"

    def mark(self) -> Any:
        if self.cuda:
            event = torch.cuda.Event(enable_timing=True)
            event.record()
            return event
        return time.perf_counter()

    def elapsed_ms(self, start: Any, end: Any) -> float:
        if self.cuda:
            end.synchronize()
            return start.elapsed_time(end)
        return (end - start) * 1000.0


@dataclass
class InFlight:
    frame: Frame
    outputs: Tuple[torch.Tensor, ...]
    marks: Tuple[Any, Any, Any, Any]  # preprocessing's start and end, inference's start and end
    submitted: float  # perf_counter at submit
    slot: Any = None  # the fused graph's buffers holding this frame (fused_stages.py); None for eager stages
    drawn: Any = None  # the frame with its box outlines drawn by the fused graph, once the result is back

    def timing(self, clock: "StageClock", post_ms: float) -> FrameTiming:
        pre_start, pre_end, infer_start, infer_end = self.marks
        return FrameTiming(queue_wait_ms=(self.submitted - self.frame.capture_time) * 1000.0,
                           pre_ms=clock.elapsed_ms(pre_start, pre_end), infer_ms=clock.elapsed_ms(infer_start, infer_end),
                           post_ms=post_ms)


@dataclass
class Processed:
    frame: Frame
    result: Result
    timing: FrameTiming
    outlined: bool = False  # frame.image already shows the result's box outlines (drawn on the GPU)


@runtime_checkable
class Stages(Protocol):
    """What the pipeline may ask of the inference stages; the eager and the fused (CUDA graph) stages implement it.

    in_flight: frames the pipeline keeps submitted before it finishes the oldest (1 = one at a time).
    host_buffers: a pool of (page-locked) frame buffers for the source to be built with and decode into, or None.
    outlines_on_device: box outlines may come back drawn on the frame (Processed.outlined says per frame).
    fallbacks: frames whose fused result was not provably exact and went through the dynamic path; None where the
    stages have no fused result (the summary's graph_fallbacks)."""

    in_flight: int
    host_buffers: Optional[HostFramePool]
    outlines_on_device: bool
    fallbacks: Optional[int]

    def prepare(self, shape_hwc: Tuple[int, int, int]) -> None:
        """Get ready for frames of this shape (capture graphs) before the clock starts."""

    def submit(self, frame: Frame) -> "InFlight":
        """Start a frame; may return before the device is done."""

    def finish(self, work: "InFlight") -> "Optional[Processed]":
        """Wait for a submitted frame and return its result and timings (None: a remote engine dropped it)."""


class InferenceStages:
    """The eager stages: one torch call per operation, on the engine's device."""

    host_buffers = None  # type: Optional[HostFramePool]  # frames are copied from wherever they were decoded
    outlines_on_device = False
    fallbacks = None  # type: Optional[int]  # no fused result to fall back from

    def __init__(self, adapter, engine, in_flight: int = 0):
        self.adapter = adapter
        self.engine = engine
        self.remote = engine.capabilities.asynchronous
        # a remote engine's round trip is timed on the host (Request.sent / received), so its stages are too
        self.clock = StageClock(torch.device("cpu") if self.remote else engine.device)
        # On CUDA submit() returns before the GPU is done, so with two frames in flight (unless pipeline.in_flight
        # says otherwise) the next frame's upload overlaps the GPU's work and the previous frame is drawn
        # meanwhile. An asynchronous engine (a Triton server) answers later too: its network round trips overlap
        # capture and drawing with four frames in flight. Elsewhere submit() does the work: one frame at a time.
        self.in_flight = (in_flight or (4 if self.remote else 2)) if (self.clock.cuda or self.remote) else 1

    def prepare(self, shape_hwc: Tuple[int, int, int]) -> None:
        """Nothing to capture: the eager stages take frames of any shape as they come."""

    def submit(self, frame: Frame) -> InFlight:
        """Preprocess and start inference; on CUDA this returns before the GPU is done."""
        now = time.perf_counter()
        t0 = self.clock.mark()
        batch = self.adapter.preprocess(frame.image, self.engine.device, self.engine.input_dtype)
        t1 = self.clock.mark()
        outputs = self.engine.infer_async(batch) if self.remote else self.engine.infer(batch)
        t2 = self.clock.mark()
        return InFlight(frame, outputs, (t0, t1, t1, t2), now)

    def finish(self, work: InFlight) -> Optional[Processed]:
        """Postprocess (decoding and NMS on the outputs' device; kept boxes come back) and read the timings.
        A remote engine's frame: infer_ms is the request's round trip; None when the engine dropped the frame."""
        if self.remote:
            request = work.outputs
            work.outputs = self.engine.result(request)
            if work.outputs is None:
                return None
            work.marks = (work.marks[0], work.marks[1], request.sent, request.received)
        start = time.perf_counter()
        result = self.adapter.postprocess(work.outputs, work.frame.image.shape[:2])
        post_ms = (time.perf_counter() - start) * 1000.0  # wall time: on CUDA it includes waiting for the result
        return Processed(work.frame, result, work.timing(self.clock, post_ms))
