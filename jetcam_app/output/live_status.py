"""The run's latest numbers (what the HUD shows), published by the emitter and read by the web page and progress line."""
from __future__ import annotations

import time
from typing import Any, Dict, Optional

from .overlay import HudInfo


class LiveStatus:
    """publish() is one reference assignment on the frame path; readers take snapshot() whenever they like."""

    def __init__(self, info: Optional[Dict[str, Any]] = None, total_frames: Optional[int] = None):
        self.info = dict(info or {})  # fixed for the run: source, model, backend, precision
        self.total_frames = total_frames  # frames the run will process, where known (files, --max-frames)
        self.started = time.monotonic()
        self._latest = None  # type: Optional[tuple]

    def publish(self, hud: HudInfo, processed: int, frame_index: int, captured: int) -> None:
        self._latest = (hud, processed, frame_index, captured, time.monotonic())  # atomic under the GIL

    def snapshot(self) -> Dict[str, Any]:
        """A JSON-ready dict: the fixed info, the HUD's figures and the counts (None before the first frame)."""
        latest = self._latest
        out = dict(self.info)  # type: Dict[str, Any]
        out.update({"elapsed_s": round(time.monotonic() - self.started, 3), "total_frames": self.total_frames,
                    "processed": 0, "captured": 0, "frame_index": None, "fps": None,
                    "stage_ms": {}, "dropped": 0, "realtime": None, "p95_ms": None, "budget_ms": None,
                    "rss_mb": None, "ram_used_mb": None, "ram_total_mb": None, "gpu_mb": None})
        if latest is None:
            return out
        hud, processed, frame_index, captured, _ = latest
        out.update({"processed": processed, "captured": captured, "frame_index": frame_index,
                    "fps": round(hud.fps, 3), "stage_ms": {k: round(v, 3) for k, v in hud.stage_ms.items()},
                    "dropped": hud.dropped, "realtime": hud.realtime_ok, "p95_ms": hud.p95_ms,
                    "budget_ms": hud.budget_ms, "rss_mb": hud.rss_mb, "ram_used_mb": hud.ram_used_mb,
                    "ram_total_mb": hud.ram_total_mb, "gpu_mb": hud.gpu_mb, "still_images": hud.still_images})
        return out
