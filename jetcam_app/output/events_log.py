"""events.jsonl: one JSON object per event (tracks started and ended, lines crossed, zones entered and left,
loitering), appended as it happens and flushed line by line, so a killed run keeps every event up to its end."""

import json
import math
import os
from typing import Any, Dict

from ..errors import OutputError
from .diskspace import LineFile


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


class EventLog:
    def __init__(self, path: str):
        self.path = path
        self.rows = 0
        try:
            os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
            self._file = LineFile(path, "event log")
        except OSError as e:
            raise OutputError("cannot write the event log %s (%s); choose a writable folder with --out DIR"
                              % (path, e.strerror or e)) from e

    def write(self, event: Dict[str, Any]) -> None:
        if self._file is None:
            raise OutputError("event log %s written after close (a pipeline bug)" % self.path)
        record = {k: _finite(round(v, 6) if isinstance(v, float) else v) for k, v in event.items()}
        self._file.append((json.dumps(record, sort_keys=True, separators=(",", ":")) + "\n").encode("utf-8"))
        self.rows += 1

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
