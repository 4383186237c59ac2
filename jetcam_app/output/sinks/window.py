"""The OpenCV window sink, and whether a window can be shown here."""

import logging
import os
import sys
from typing import Optional

import cv2
import numpy as np

from ...errors import OutputError
from .base import Sink

log = logging.getLogger(__name__)

def _gui_backend() -> Optional[str]:
    """The GUI toolkit OpenCV was built with, or None for opencv-python-headless and similar builds."""
    info = cv2.getBuildInformation()
    section = info.split("GUI:", 1)
    if len(section) < 2:
        return None
    first = section[1].strip().splitlines()[0].strip()
    if first.upper() in ("", "NONE", "NO"):
        return None
    return first


def display_reason() -> Optional[str]:
    """None when a window can be shown here, else why not (in one line, with the fix)."""
    if _gui_backend() is None:
        return "this OpenCV has no GUI backend (opencv-python-headless?); use --headless or --record"
    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        return "no display (DISPLAY and WAYLAND_DISPLAY are unset); use --headless, or export DISPLAY=:0 on the Jetson's desktop"
    return None


def display_available() -> bool:
    return display_reason() is None


class DisplaySink(Sink):
    """cv2.imshow + waitKey(1) on the calling (main) thread; 'q', Esc or closing the window requests a stop."""

    QUIT_KEYS = (ord("q"), ord("Q"), 27)

    def __init__(self, title: str = "jetcam"):
        reason = display_reason()
        if reason is not None:
            # Checked here: Qt aborts the whole process when it cannot reach a display.
            raise OutputError("cannot open a window: %s" % reason)
        self.title = title
        self._stop = False
        self._opened = False
        self._closed = False

    def write(self, image_bgr: np.ndarray, frame_index: int) -> None:
        if self._closed:
            return
        if not self._opened:
            cv2.namedWindow(self.title, cv2.WINDOW_NORMAL)
            cv2.resizeWindow(self.title, image_bgr.shape[1], image_bgr.shape[0])
            self._opened = True
        elif cv2.getWindowProperty(self.title, cv2.WND_PROP_VISIBLE) < 1:
            self._stop = True  # the user closed the window
            return
        cv2.imshow(self.title, image_bgr)
        if (cv2.waitKey(1) & 0xFF) in self.QUIT_KEYS:
            self._stop = True

    @property
    def stop_requested(self) -> bool:
        return self._stop

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._opened:
            try:
                cv2.destroyWindow(self.title)
                cv2.waitKey(1)  # lets the GUI loop process the destroy
            except cv2.error as e:
                log.debug("window already gone: %s", e)
