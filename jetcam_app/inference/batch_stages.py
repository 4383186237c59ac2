"""Several frames as one batch: each preprocessed, concatenated, one engine call, outputs split, each postprocessed.

Per frame, timing.csv then holds its own preprocessing and postprocessing and the whole batch's inference (the
frame waited for all of it). Fixed-shape engines (ONNX Runtime, TensorRT, torch2trt, --cuda-graph) are built
for `max_batch` frames and a smaller batch is padded to it; eager torch runs the batch as it comes.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, List, Optional, Sequence, Tuple

import torch

from ..errors import ConfigError
from ..types import Frame, FrameTiming
from .stages import Processed, StageClock


def batch_example(adapter, batch: int) -> torch.Tensor:
    """The example input a fixed-shape engine is built for: `batch` frames of the adapter's input size."""
    example = adapter.example_input()
    return example.repeat((batch,) + (1,) * (example.dim() - 1)) if batch > 1 else example


def split_outputs(outputs: Sequence[torch.Tensor], i: int) -> Tuple[torch.Tensor, ...]:
    """Frame i's outputs as a batch of one (what every adapter's postprocess reads: outputs[k][0])."""
    return tuple(o[i:i + 1] for o in outputs)


@dataclass
class BatchInFlight:
    frames: List[Frame]
    outputs: Any  # the outputs; a remote engine's request until finish()
    pre_marks: List[Tuple[Any, Any]]  # each frame's preprocessing start and end
    infer_marks: Tuple[Any, Any]
    submitted: float  # perf_counter at submit


class BatchStages:
    """submit(frames) starts one batch (on CUDA it returns before the GPU is done); finish() gives a Processed
    per frame, in the order given. Frames of any sizes may share a batch: the adapter resizes each."""

    def __init__(self, adapter, engine, max_batch: int, in_flight: int = 0):
        self.adapter = adapter
        self.engine = engine
        self.max_batch = max(1, int(max_batch))
        # A remote engine (a Triton server) answers later: four batches in flight overlap its round trips, timed on
        # the host as its requests are.
        self.remote = engine.capabilities.asynchronous
        self.clock = StageClock(torch.device("cpu") if self.remote else engine.device)
        self.in_flight = (in_flight or 4) if self.remote else ((in_flight or 2) if self.clock.cuda else 1)
        self.padded_batch = engine.fixed_batch()
        if self.padded_batch and self.padded_batch < self.max_batch:
            raise ConfigError("the %s runs batches of %d, fewer than pipeline.max_batch %d; load it with "
                              "batch_example(adapter, %d)" % (type(engine).__name__, self.padded_batch, self.max_batch,
                                                              self.max_batch))
        self.padded_frames = 0  # batch slots run without a frame (fixed-shape engines), for the summary
        self.fallbacks = None  # only the fused batch graph has results that may need the dynamic path
        self.host_buffers = None  # frames are copied from wherever they were decoded (fused_batch_stages.py has a pool)
        self.copied_frames = None  # frames copied on the inference thread: only the fused batch graph counts them

    def warm_up(self) -> None:
        """Run every batch size the engine will see once, before the clock starts: cuDNN autotuning and ONNX
        Runtime's first run of a shape happen here, not on a camera's frame."""
        sizes = [self.padded_batch] if self.padded_batch else range(1, self.max_batch + 1)
        example = self.adapter.example_input(self.engine.device, self.engine.input_dtype)
        for size in sizes:
            self.engine.infer(example.repeat((size,) + (1,) * (example.dim() - 1)))
        self.engine.synchronize()

    def prepare(self, shape_hwc: Tuple[int, int, int]) -> None:
        """Nothing to capture: frames of any shape are preprocessed as they come."""

    def submit(self, frames: Sequence[Frame]) -> BatchInFlight:
        if not 0 < len(frames) <= self.max_batch:
            raise ValueError("a batch holds 1 to %d frames, got %d" % (self.max_batch, len(frames)))
        now = time.perf_counter()
        device, dtype = self.engine.device, self.engine.input_dtype
        tensors, pre_marks = [], []
        for frame in frames:
            t0 = self.clock.mark()
            tensors.append(self.adapter.preprocess(frame.image, device, dtype))
            pre_marks.append((t0, self.clock.mark()))
        t1 = self.clock.mark()
        pad = self.padded_batch - len(tensors) if self.padded_batch else 0
        if pad > 0:  # the padding's outputs are never read: any input of the right shape will do
            tensors.extend([tensors[-1]] * pad)
            self.padded_frames += pad
        batch = tensors[0] if len(tensors) == 1 else torch.cat(tensors)
        outputs = self.engine.infer_async(batch) if self.remote else tuple(self.engine.infer(batch))
        t2 = self.clock.mark()
        return BatchInFlight(list(frames), outputs, pre_marks, (t1, t2), now)

    def finish(self, work: BatchInFlight) -> List[Optional[Processed]]:
        """Postprocess each frame of the batch on its slice of the outputs and read the timings. A remote engine's
        batch: inference is the request's round trip; every frame None when the engine dropped the request."""
        if self.remote:
            request = work.outputs
            work.outputs = self.engine.result(request)
            if work.outputs is None:
                return [None] * len(work.frames)
            work.infer_marks = (request.sent, request.received)
        infer_ms = self.clock.elapsed_ms(*work.infer_marks)
        done = []
        for i, frame in enumerate(work.frames):
            start = time.perf_counter()
            result = self.adapter.postprocess(split_outputs(work.outputs, i), frame.image.shape[:2])
            post_ms = (time.perf_counter() - start) * 1000.0
            timing = FrameTiming(queue_wait_ms=(work.submitted - frame.capture_time) * 1000.0,
                                 pre_ms=self.clock.elapsed_ms(*work.pre_marks[i]), infer_ms=infer_ms, post_ms=post_ms)
            done.append(Processed(frame, result, timing))
        return done
