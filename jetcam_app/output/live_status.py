"""The run's latest numbers (what the HUD shows), published by the emitter and read by the web page and progress line."""

import time
from typing import Any, Callable, Dict, List, Optional, Sequence

from .overlay import HudInfo


PROCESS_WIDE = ("rss_mb", "ram_used_mb", "ram_total_mb", "gpu_mb")


def _empty() -> Dict[str, Any]:
    return {"processed": 0, "captured": 0, "frame_index": None, "fps": None, "stage_ms": {}, "dropped": 0,
            "realtime": None, "p95_ms": None, "budget_ms": None, "rss_mb": None, "ram_used_mb": None,
            "ram_total_mb": None, "gpu_mb": None}


def _figures(latest: tuple) -> Dict[str, Any]:
    """The JSON-ready figures of one published (hud, processed, frame_index, captured, time, counts); "counts" only
    with tracking on, so /stats.json without it is as it was."""
    hud, processed, frame_index, captured, _, counts = latest
    out = {"processed": processed, "captured": captured, "frame_index": frame_index,
           "fps": round(hud.fps, 3), "stage_ms": {k: round(v, 3) for k, v in hud.stage_ms.items()},
           "dropped": hud.dropped, "realtime": hud.realtime_ok, "p95_ms": hud.p95_ms,
           "budget_ms": hud.budget_ms, "rss_mb": hud.rss_mb, "ram_used_mb": hud.ram_used_mb,
           "ram_total_mb": hud.ram_total_mb, "gpu_mb": hud.gpu_mb, "still_images": hud.still_images}
    if counts is not None:
        out["counts"] = counts
    return out


class SourceStatus:
    """What the page shows of one source besides its HUD: its reconnects and state, read only when asked."""

    def __init__(self, name: str, reconnects: Callable[[], int] = lambda: 0, total_frames: Optional[int] = None):
        self.name = name
        self.reconnects = reconnects
        self.total_frames = total_frames
        self.state = "running"  # set by note(): ended, failed


class LiveStatus:
    """The live figures of 1..N sources: publish() is one list item assignment on the frame path; readers take
    snapshot() whenever they like. One source's snapshot is its figures; several sources' holds the aggregate at the
    top (the keys one source's snapshot has, so the progress line reads it alike) and one section per source under
    "sources", built only when a reader asks."""

    def __init__(self, info: Optional[Dict[str, Any]] = None, sources: Sequence[SourceStatus] = ()):
        self.info = dict(info or {})  # fixed for the run: source, model, backend, precision
        self.sources = list(sources) or [SourceStatus("")]
        totals = [s.total_frames for s in self.sources]
        # frames the run will process, where known (files, --max-frames)
        self.total_frames = sum(totals) if all(totals) else None  # type: Optional[int]
        self.started = time.monotonic()
        self._latest_of = [None] * len(self.sources)  # type: List[Optional[tuple]]

    def publish(self, slot: int, hud: HudInfo, processed: int, frame_index: int, captured: int,
                counts: Optional[Dict[str, Any]] = None) -> None:
        """The newest figures of the source at `slot` (its index in `sources`). `counts`: its lines', zones' and
        tracks' counts (SourceAnalytics.live(), a dict of its own that is not changed afterwards), None without
        tracking."""
        # one tuple assignment: atomic under the GIL, and all a reader needs
        self._latest_of[slot] = (hud, processed, frame_index, captured, time.monotonic(), counts)

    def note(self, slot: int, state: str) -> None:
        """A source's state: "ended", "failed"; from any thread."""
        self.sources[slot].state = state

    def snapshot(self) -> Dict[str, Any]:
        """A JSON-ready dict: the fixed info, the HUD's figures and the counts (None before the first frame); with
        tracking on, "counts" (lines, zones, tracks) at the top for one source, in each source's section for
        several."""
        latest_of = list(self._latest_of)
        out = dict(self.info)  # type: Dict[str, Any]
        out.update({"elapsed_s": round(time.monotonic() - self.started, 3), "total_frames": self.total_frames})
        if len(self.sources) == 1:
            out.update(_empty() if latest_of[0] is None else _figures(latest_of[0]))
            return out
        sections = []
        for source, latest in zip(self.sources, latest_of):
            section = {"name": source.name, "state": source.state, "reconnects": source.reconnects(),
                       "total_frames": source.total_frames}  # type: Dict[str, Any]
            section.update(_empty() if latest is None else _figures(latest))
            for key in PROCESS_WIDE:
                del section[key]  # the aggregate's, once
            sections.append(section)
        out.update(_aggregate(sections, [x for x in latest_of if x is not None]))
        out["sources"] = sections
        return out


def _aggregate(sections: List[Dict[str, Any]], published: List[tuple]) -> Dict[str, Any]:
    """Counts and rates summed; real-time only when every source is (as summary.json's rule), measuring while any
    is; p95 and budget those of the source nearest its budget; memory and stage times from the newest frame."""
    out = _empty()
    out.update({"realtime_sources": 0, "worst_source": None})
    if not published:
        return out
    newest = _figures(max(published, key=lambda p: p[4]))
    for key in ("stage_ms", "rss_mb", "ram_used_mb", "ram_total_mb", "gpu_mb", "frame_index"):
        out[key] = newest[key]
    for key in ("processed", "captured", "dropped"):
        out[key] = sum(s[key] for s in sections)
    out["fps"] = round(sum(s["fps"] or 0.0 for s in sections), 3)
    verdicts = [s["realtime"] for s in sections]
    out["realtime"] = False if False in verdicts else (None if None in verdicts else True)
    judged = [s for s in sections if s["p95_ms"] is not None and s["budget_ms"]]
    if judged:
        worst = max(judged, key=lambda s: s["p95_ms"] / s["budget_ms"])
        out.update({"p95_ms": worst["p95_ms"], "budget_ms": worst["budget_ms"], "worst_source": worst["name"]})
    out["realtime_sources"] = sum(1 for v in verdicts if v)
    return out
