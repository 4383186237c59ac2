"""Where the app's inference thread spends a frame: waiting for a decoded frame, submitting it (upload and graph
launch), finishing the oldest frame in flight (waiting for its result), handing it to the emitter (which blocks
while the emitter's queue is full), and the rest (the loop itself and the GIL it waits for between calls).

It tells which side holds the app back: a long wait for frames = decoding; a long finish = the GPU; a long hand-off
= drawing and logging; a long rest = the inference thread's own Python, or the GIL held by the other threads.
Instruments one app run by wrapping those four calls of the thread that runs Pipeline.run (bench only: the
wrappers add a little time to each call). Measured, never asserted.
"""

import threading
from typing import Callable, Dict

from common import timed  # also puts the repository on sys.path

import jetcam_app.pipeline as pipeline_module  # noqa: E402
from jetcam_app.sources.lanes import Scheduler  # noqa: E402
from jetcam_app.output.emitter import FrameEmitter  # noqa: E402

PARTS = ("wait for frame", "submit", "finish", "hand to emitter")


def main_thread_split(run_app: Callable[[], dict]) -> Dict[str, float]:
    """Microseconds per processed frame in each part of the inference thread's loop, and the rest of the frame's
    share of the run's wall time ("rest"), for one call of run_app() (which returns the app's summary)."""
    totals = dict.fromkeys(PARTS, 0.0)
    thread_id = threading.get_ident()
    originals = [(Scheduler, "gather", Scheduler.gather)]  # the lanes' frames gathered into a batch
    originals.append((FrameEmitter, "emit", FrameEmitter.emit))
    make_stages = pipeline_module.make_stages

    def instrumented_stages(*args, **kwargs):
        stages = make_stages(*args, **kwargs)
        stages.submit = timed(stages.submit, totals, "submit", thread_id)
        stages.finish = timed(stages.finish, totals, "finish", thread_id)
        return stages

    try:
        for cls, name, call in originals:
            part = "hand to emitter" if name == "emit" else "wait for frame"
            setattr(cls, name, timed(call, totals, part, thread_id))
        pipeline_module.make_stages = instrumented_stages
        summary = run_app()
    finally:
        for cls, name, call in originals:
            setattr(cls, name, call)
        pipeline_module.make_stages = make_stages
    frames = max(1, summary["frames"]["processed"])
    split = {part: totals[part] / frames * 1e6 for part in PARTS}
    split["rest"] = summary["wall_s"] / frames * 1e6 - sum(split.values())
    return split
