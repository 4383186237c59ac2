"""How many CPU cores this process may use: one count for the engines' threads, the drawing pool and the decoders."""
from __future__ import annotations

import os


def usable_cores() -> int:
    """Cores this process may run on (sched_getaffinity sees container and taskset limits)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS and Windows have no sched_getaffinity
        return max(1, os.cpu_count() or 1)


def cpu_threads(requested: int) -> int:
    """`requested` threads, or at 0 one per usable core."""
    return requested if requested > 0 else usable_cores()
