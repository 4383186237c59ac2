"""The signals that end a run cleanly (Ctrl-C, kill, a closed terminal or SSH session), installed and restored as one."""
from __future__ import annotations

import contextlib
import signal
from typing import Callable, Dict, Iterator, List

STOP_SIGNALS = ("SIGINT", "SIGTERM", "SIGHUP")  # SIGHUP does not exist on Windows


def stop_signals() -> List[int]:
    return [getattr(signal, name) for name in STOP_SIGNALS if hasattr(signal, name)]


@contextlib.contextmanager
def on_stop_signals(handler: Callable[[str], None]) -> Iterator[None]:
    """handler(signal name) for each stop signal while inside; the previous handlers come back on exit."""
    previous = {}  # type: Dict[int, object]
    try:
        for signum in stop_signals():
            name = signal.Signals(signum).name
            previous[signum] = signal.signal(signum, lambda *_, n=name: handler(n))
        yield
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)


def raise_keyboard_interrupt(name: str) -> None:
    """For code that already cleans up on Ctrl-C (the benchmark): every stop signal takes that path."""
    raise KeyboardInterrupt(name)
