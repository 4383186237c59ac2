"""The bench's plain-text progress bar on stderr."""

import sys
from typing import Optional, Tuple


class ProgressBar:
    """Plain-text progress on stderr: redrawn in place on a terminal, one line per quarter otherwise."""

    def __init__(self, stream=None, width: int = 30):
        self.stream = stream or sys.stderr
        self.width = width
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self._last_line = None  # type: Optional[Tuple[str, int]]

    def update(self, label: str, phase: str, done: int, total: int) -> None:
        total = max(total, 1)
        filled = int(self.width * done / total)
        text = "%s %-10s [%s%s] %d/%d" % (label, phase, "#" * filled, "." * (self.width - filled), done, total)
        if self.tty:
            self.stream.write("\r" + text.ljust(100))
            if done >= total:
                self.stream.write("\n")
        else:
            quarter = (4 * done) // total
            if self._last_line != (label + phase, quarter):
                self._last_line = (label + phase, quarter)
                self.stream.write(text + "\n")
        self.stream.flush()

    def message(self, text: str) -> None:
        self.stream.write(text + "\n")
        self.stream.flush()
