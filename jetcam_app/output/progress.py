"""The run's progress while it goes: a live tqdm status line on a terminal, else a log line every few seconds."""

import logging
import shutil
import sys
import threading
from typing import Any, Dict, Optional, TextIO

from .live_status import LiveStatus
from .overlay import rate_text

log = logging.getLogger("jetcam_app.progress")
TTY_REFRESH_S = 0.25  # a terminal line redrawn 4 times a second: live to the eye, nothing for the frame path
LOG_EVERY_S = 5.0


def _verdict(snapshot: Dict[str, Any]) -> str:
    if snapshot.get("still_images"):
        total = sum(snapshot["stage_ms"].values())
        return "%.0f ms/image" % total
    if "sources" in snapshot:  # several: the aggregate's verdict is every source's
        n = len(snapshot["sources"])
        if snapshot["realtime"] is None:
            return "%d/%d sources real-time, measuring" % (snapshot["realtime_sources"], n)
        return "%d/%d sources real-time so far" % (snapshot["realtime_sources"], n)
    if snapshot["realtime"] is None:
        return "real-time: measuring"
    return "real-time so far" if snapshot["realtime"] else "NOT real-time so far"


def describe(snapshot: Dict[str, Any]) -> str:
    """'12.3 fps, 0 dropped, real-time so far' from a LiveStatus snapshot; with several sources the rate is their
    sum ('24.6 fps in all, 0 dropped, 2/2 sources real-time so far')."""
    fps = snapshot["fps"] or 0.0
    return "%s%s, %d dropped, %s" % (rate_text(fps), " in all" if "sources" in snapshot else "",
                                     snapshot["dropped"], _verdict(snapshot))


class ProgressReporter:
    """Reads LiveStatus from a thread of its own (never from the frame path); close() is idempotent."""

    def __init__(self, status: LiveStatus, stream: Optional[TextIO] = None, tty: Optional[bool] = None,
                 log_every_s: float = LOG_EVERY_S):
        self.status = status
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty() if tty is None else tty
        self.interval_s = TTY_REFRESH_S if self.tty else float(log_every_s)
        self._stop = threading.Event()
        self._bar = None  # type: Any
        self._redirect = None  # type: Any
        self._thread = threading.Thread(target=self._run, name="progress", daemon=True)

    def start(self) -> "ProgressReporter":
        if self.tty:
            from tqdm import tqdm
            from tqdm.contrib.logging import logging_redirect_tqdm

            # a terminal that reports no size (a pty without a window) would get no bar at all
            size = {"dynamic_ncols": True} if shutil.get_terminal_size((0, 0)).columns else {"ncols": 100, "nrows": 20}
            self._bar = tqdm(total=self.status.total_frames, unit="frame", file=self.stream, leave=True,
                             mininterval=0, smoothing=0.3, **size)
            # log lines printed while the bar is up go above it instead of through it
            self._redirect = logging_redirect_tqdm()
            self._redirect.__enter__()
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.update()

    def update(self) -> None:
        snapshot = self.status.snapshot()
        if self._bar is not None:
            self._bar.n = snapshot["processed"]
            self._bar.set_postfix_str(describe(snapshot), refresh=False)
            self._bar.refresh()
            return
        total = snapshot["total_frames"]
        done = snapshot["processed"]
        line = "frame %d%s, %s" % (done, "/%d" % total if total else "", describe(snapshot))
        fps = snapshot["fps"]
        if total and fps and done < total:
            line += ", about %.0f s left" % ((total - done) / fps)
        log.info(line)

    def close(self) -> None:
        if self._stop.is_set():
            return
        self._stop.set()
        if self._thread.ident is not None:
            self._thread.join(2.0)
        if self._bar is not None:
            self.update()
            self._bar.close()
            self._bar = None
            self._redirect.__exit__(None, None, None)
