"""The Stages protocol and the eager stages: a batch of 1..N frames, each preprocessed, one engine call, each
postprocessed, with honest stage times.

One source is a batch of one; several sources share batches (the scheduler gathers them). On CUDA preprocessing and
inference are queued without waiting and timed with CUDA events (read once the result is back); postprocessing,
which waits for the result, is timed by the wall clock. On the CPU every stage is timed with perf_counter. Per
frame, timing.csv holds its own preprocessing and postprocessing and the whole batch's inference (the frame waited
for all of it). Fixed-shape engines (ONNX Runtime, TensorRT, torch2trt) are built for `max_batch` frames and a
smaller batch is padded to it; eager torch runs the batch as it comes.
"""

import time
from dataclasses import dataclass
from typing import Any, List, Optional, Sequence, Tuple

import torch

try:
    from typing import Protocol, runtime_checkable  # novermin: guarded
except ImportError:  # Python 3.6 and 3.7 (JetPack 4.6): the backport
    from typing_extensions import Protocol, runtime_checkable  # type: ignore

from ..errors import ConfigError
from ..types import Frame, FrameTiming, Result, device_pixels
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
class Processed:
    frame: Frame
    result: Result
    timing: FrameTiming
    outlined: bool = False  # frame.image already shows the result's box outlines (drawn on the GPU)
    scene: Any = None  # analytics.scene.SceneSnapshot with tracking on: lines, zones and trails to draw


@runtime_checkable
class Stages(Protocol):
    """What the pipeline may ask of the inference stages; the eager and the fused (CUDA graph) stages implement it.

    max_batch: the most frames one submit() takes (1 for one source); padded_batch: the batch a fixed-shape engine
    runs every batch at (0 = none).
    in_flight: batches the pipeline keeps submitted before it finishes the oldest (1 = one at a time).
    host_buffers: a pool of (page-locked) frame buffers for the sources to be built with and decode into, or None.
    outlines_on_device: box outlines may come back drawn on the frame (Processed.outlined says per frame).
    fallbacks: frames whose fused result was not provably exact and went through the dynamic path; None where the
    stages have no fused result (the summary's graph_fallbacks).
    padded_frames: batch slots run without a frame; copied_frames: frames copied into a page-locked buffer on the
    inference thread (None where the stages do not count them)."""

    max_batch: int
    padded_batch: int
    in_flight: int
    host_buffers: Optional[HostFramePool]
    outlines_on_device: bool
    fallbacks: Optional[int]
    padded_frames: int
    copied_frames: Optional[int]

    def warm_up(self) -> None:
        """Run what the first batches would otherwise autotune, before the clock starts."""

    def prepare(self, shape_hwc: Tuple[int, int, int]) -> None:
        """Get ready for frames of this shape (capture graphs) before the clock starts."""

    def submit(self, frames: Sequence[Frame]) -> Any:
        """Start a batch of 1..max_batch frames; may return before the device is done."""

    def finish(self, work: Any) -> "List[Optional[Processed]]":
        """Wait for a submitted batch: a Processed per frame, in the order given (None: a remote engine dropped it)."""


def batch_example(adapter, batch: int) -> torch.Tensor:
    """The example input a fixed-shape engine is built for: `batch` frames of the adapter's input size."""
    example = adapter.example_input()
    return example.repeat((batch,) + (1,) * (example.dim() - 1)) if batch > 1 else example


def padded_sizes(max_batch: int) -> List[int]:
    """The batch sizes graphs are captured for and the eager stages warm up: powers of two below max_batch, and
    max_batch itself."""
    sizes, size = [], 1
    while size < max_batch:
        sizes.append(size)
        size *= 2
    return sizes + [max(1, int(max_batch))]


def split_outputs(outputs: Sequence[torch.Tensor], i: int) -> Tuple[torch.Tensor, ...]:
    """Frame i's outputs as a batch of one (what every adapter's postprocess reads: outputs[k][0])."""
    return tuple(o[i:i + 1] for o in outputs)


@dataclass
class EagerBatch:
    frames: List[Frame]
    outputs: Any  # the outputs; a remote engine's request until finish()
    pre_marks: List[Tuple[Any, Any]]  # each frame's preprocessing start and end
    infer_marks: Tuple[Any, Any]
    submitted: float  # perf_counter at submit


class EagerStages:
    """The eager stages: one torch call per operation, on the engine's device. Frames of any sizes may share a
    batch: the adapter resizes each."""

    outlines_on_device = False
    copied_frames = None  # type: Optional[int]  # frames are preprocessed from wherever they were decoded

    def __init__(self, adapter, engine, max_batch: int = 1, in_flight: int = 0):
        # a remote model that takes frames or gives detections itself: the engine's view of the adapter (triton/wire.py)
        self.adapter = engine.served_adapter(adapter) or adapter
        self.engine = engine
        self.max_batch = max(1, int(max_batch))
        self.remote = engine.capabilities.asynchronous
        # a remote engine's round trip is timed on the host (Request.sent / received), so its stages are too
        self.clock = StageClock(torch.device("cpu") if self.remote else engine.device)
        # On CUDA submit() returns before the GPU is done, so with two batches in flight (unless pipeline.in_flight
        # says otherwise) the next upload overlaps the GPU's work and the previous batch is drawn meanwhile. An
        # asynchronous engine (a Triton server) answers later too: its network round trips overlap capture and
        # drawing with four in flight. Elsewhere submit() does the work: one at a time.
        self.in_flight = (in_flight or 4) if self.remote else ((in_flight or 2) if self.clock.cuda else 1)
        self.padded_batch = engine.fixed_batch()
        if self.padded_batch and self.padded_batch < self.max_batch:
            raise ConfigError("the %s runs batches of %d, fewer than pipeline.max_batch %d; load it with "
                              "batch_example(adapter, %d)" % (type(engine).__name__, self.padded_batch, self.max_batch,
                                                              self.max_batch))
        self.padded_frames = 0  # batch slots run without a frame (fixed-shape engines), for the summary
        self.fallbacks = None  # type: Optional[int]  # no fused result to fall back from
        self.host_buffers = None  # type: Optional[HostFramePool]  # frames are copied from wherever they were decoded

    def warm_up(self) -> None:
        """Run the batch sizes that matter once, before the clock starts: cuDNN autotuning and ONNX Runtime's first
        run of a shape happen here, not on a camera's frame. A fixed-shape engine sees one size; eager torch runs
        batches as they come, and every size from 1 to max_batch would be N(N+1)/2 images (125,250 for 500 sources),
        so it warms padded_sizes (log2 N + 1 sizes, under 3N images): the full batch and the small ones that come
        most, the rest tune on first sight. One frame at a time needs none: the first frame is the only new shape."""
        if self.max_batch == 1:
            return
        sizes = [self.padded_batch] if self.padded_batch else padded_sizes(self.max_batch)
        example = self.adapter.example_input(self.engine.device, self.engine.input_dtype)
        for size in sizes:
            self.engine.infer(example.repeat((size,) + (1,) * (example.dim() - 1)))
        self.engine.synchronize()

    def prepare(self, shape_hwc: Tuple[int, int, int]) -> None:
        """Nothing to capture: frames of any shape are preprocessed as they come."""

    def submit(self, frames: Sequence[Frame]) -> EagerBatch:
        """Preprocess and start inference; on CUDA this returns before the GPU is done."""
        if not 0 < len(frames) <= self.max_batch:
            raise ValueError("a batch holds 1 to %d frames, got %d" % (self.max_batch, len(frames)))
        now = time.perf_counter()
        device, dtype = self.engine.device, self.engine.input_dtype
        tensors, pre_marks = [], []
        for frame in frames:
            t0 = self.clock.mark()
            tensors.append(self._preprocess(frame, device, dtype))
            pre_marks.append((t0, self.clock.mark()))
        t1 = pre_marks[-1][1]
        pad = self.padded_batch - len(tensors) if self.padded_batch else 0
        if pad > 0:  # the padding's outputs are never read: any input of the right shape will do
            tensors.extend([tensors[-1]] * pad)
            self.padded_frames += pad
        batch = tensors[0] if len(tensors) == 1 else torch.cat(tensors)
        outputs = self.engine.infer_async(batch) if self.remote else tuple(self.engine.infer(batch))
        t2 = self.clock.mark()
        return EagerBatch(list(frames), outputs, pre_marks, (t1, t2), now)

    def _preprocess(self, frame: Frame, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
        """The frame as the network's input; one decoded on the GPU is prepared where it lies (no host round trip)
        where the engine runs on CUDA and the model prepares device tensors."""
        pixels = device_pixels(frame)
        if pixels is not None and device.type == "cuda":
            try:
                tensor = self.adapter.prepare_tensor(pixels.to(device), dtype)
            except NotImplementedError:
                pass
            else:
                pixels.record_stream(torch.cuda.current_stream(device))
                return tensor
        return self.adapter.preprocess(frame.image, device, dtype)

    def finish(self, work: EagerBatch) -> List[Optional[Processed]]:
        """Postprocess each frame on its slice of the outputs (decoding and NMS on the outputs' device) and read the
        timings. A remote engine's batch: inference is the request's round trip; every frame None when the engine
        dropped the request."""
        if self.remote:
            request = work.outputs
            work.outputs = self.engine.result(request)
            if work.outputs is None:
                return [None] * len(work.frames)
            work.infer_marks = (request.sent, request.received)
        done = []  # type: List[Optional[Processed]]
        for i, frame in enumerate(work.frames):
            start = time.perf_counter()
            # postprocess reads outputs[k][0]: the first frame needs no slice, padded or not
            outputs = work.outputs if i == 0 else split_outputs(work.outputs, i)
            result = self.adapter.postprocess(outputs, frame.hw)
            post_ms = (time.perf_counter() - start) * 1000.0  # wall time: on CUDA it includes waiting for the result
            timing = FrameTiming(queue_wait_ms=(work.submitted - frame.capture_time) * 1000.0,
                                 pre_ms=self.clock.elapsed_ms(*work.pre_marks[i]),
                                 infer_ms=self.clock.elapsed_ms(*work.infer_marks), post_ms=post_ms)
            done.append(Processed(frame, result, timing))
        return done
