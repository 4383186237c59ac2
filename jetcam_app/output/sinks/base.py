"""The Sink interface, the null sink and the fan-out to several sinks."""

import logging
from typing import Any, List, Optional, Sequence

import numpy as np

log = logging.getLogger(__name__)

class Sink:
    """write(image_bgr, frame_index); close() is idempotent; stop_requested turns True when the user asks to quit."""

    def write(self, image_bgr: np.ndarray, frame_index: int) -> None:
        raise NotImplementedError

    def close(self) -> None:
        pass

    @property
    def stop_requested(self) -> bool:
        return False

    def __enter__(self) -> "Sink":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class NullSink(Sink):
    def write(self, image_bgr: np.ndarray, frame_index: int) -> None:
        pass



class FanOutSink(Sink):
    """Writes to several sinks in order; stops when any asks; closes all in reverse, raising the first error."""

    def __init__(self, sinks: Sequence[Sink]):
        self.sinks = list(sinks)

    def write(self, image_bgr: np.ndarray, frame_index: int) -> None:
        for sink in self.sinks:
            sink.write(image_bgr, frame_index)

    @property
    def stop_requested(self) -> bool:
        return any(sink.stop_requested for sink in self.sinks)

    def close(self) -> None:
        first = None  # type: Optional[BaseException]
        for sink in reversed(self.sinks):
            try:
                sink.close()
            except Exception as e:  # every sink must get its close(); the first failure is re-raised after
                if first is None:
                    first = e
                else:
                    log.error("closing %s also failed: %s", type(sink).__name__, e)
        if first is not None:
            raise first



def build_sinks(sinks: List[Sink]) -> Sink:
    """One sink for the pipeline: NullSink for none, the sink itself for one, a FanOutSink for several."""
    if not sinks:
        return NullSink()
    if len(sinks) == 1:
        return sinks[0]
    return FanOutSink(sinks)
