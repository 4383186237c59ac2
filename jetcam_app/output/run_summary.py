"""summary.json for 1..N sources, from their lanes: one source's keys as they always were; several sources the
aggregate, with a section per source and every source judged by its own verdict."""

import logging
import os
from typing import Any, Dict, Optional, Sequence

from ..config import Config, to_dict
from ..errors import first_line
from ..verdict import build_summary
from .diskspace import SpaceReserve, write_json_atomic

log = logging.getLogger(__name__)


class RunFacts:
    """What the pipeline knows of the run as a whole when it ends (the lanes know the rest)."""

    def __init__(self, config: Config, out_dir: str, wall_s: float, started: float, started_unix: Optional[float],
                 stop_reason: str, weights: str, stats_provider: Optional[str], engine_health: Dict[str, Any],
                 stages: Any = None, failed_to_open: Optional[Dict[str, str]] = None):
        self.config = config
        self.out_dir = out_dir
        self.wall_s = wall_s
        self.started = started  # perf_counter when the clock started
        self.started_unix = started_unix
        self.stop_reason = stop_reason
        self.weights = weights
        self.stats_provider = stats_provider
        self.engine_health = dict(engine_health or {})
        self.stages = stages
        self.failed_to_open = dict(failed_to_open or {})


def _common(facts: RunFacts) -> Dict[str, Any]:
    cfg = facts.config
    return {"stop_reason": facts.stop_reason, "model": cfg.model.name, "weights": facts.weights,
            "backend": cfg.engine.backend, "precision": cfg.engine.precision, "stats_provider": facts.stats_provider,
            "started_unix": facts.started_unix, "config": to_dict(cfg),
            # frames whose fused-graph result was not provably exact and went through the dynamic postprocessing
            "graph_fallbacks": facts.stages.fallbacks if facts.stages is not None else None}


def _analytics(lane) -> Dict[str, Any]:
    """A tracked source's counts: lines, zones, tracks and its events; {} for a source not tracked."""
    if getattr(lane, "analytics", None) is None:
        return {}
    return dict(lane.analytics.summary(), events=lane.analytics.events)


def _decode(source) -> Dict[str, Any]:
    """Where the source's frames were decoded (cpu, gpu), and why a file meant for the GPU fell back."""
    out = {"on": getattr(source, "decoded_on", "cpu")}  # type: Dict[str, Any]
    if getattr(source, "decode_note", ""):
        out["note"] = source.decode_note
    return out


def one_source_summary(facts: RunFacts, lane, timings) -> Dict[str, Any]:
    """One source: its figures at the top (`timings`: the timing log's, which holds only its frames)."""
    source = lane.source
    # frames a remote engine lost (server gone, request timed out) count as dropped, like a camera's overwrites
    dropped = lane.dropped() + int(facts.engine_health.get("engine_dropped_frames", 0))
    extra = dict(_common(facts), **{
        "unprocessed_at_stop": max(0, lane.captured() - lane.processed - dropped),
        "source": source.describe(), "decode": _decode(source), "reconnects": source.reconnects,
        "out_dir": facts.out_dir,
        "source_stop_reason": source.stop_reason, "source_skipped_frames": source.skipped_frames},
        **_analytics(lane))
    return build_summary(lane.captured(), lane.processed, dropped, facts.wall_s, timings,
                         lane.target_fps, dict(extra, **facts.engine_health))


def several_sources_summary(facts: RunFacts, lanes: Sequence[Any], processed: int, timings) -> Dict[str, Any]:
    """Several sources: the totals, a section per source (each on its own wall time: a short file that ended early is
    judged on the time it ran), and real-time only when every source is."""
    sections = {}  # type: Dict[str, Any]
    for lane in lanes:
        capture, source = lane.capture, lane.source
        own_wall_s = (lane.last_emitted - facts.started) if lane.last_emitted is not None else facts.wall_s
        dropped = lane.dropped() + lane.lost
        sections[lane.name] = build_summary(lane.captured(), lane.processed, dropped, own_wall_s, lane.accumulated,
                                            lane.target_fps, dict({
            "source": source.describe(), "decode": _decode(source), "live": bool(source.is_live),
            "reconnects": source.reconnects,
            "end_reason": lane.end_reason or facts.stop_reason,
            "error": None if capture.error is None else first_line(capture.error),
            "source_stop_reason": source.stop_reason, "source_skipped_frames": source.skipped_frames,
            "unprocessed_at_stop": max(0, lane.captured() - lane.processed - dropped),
            "engine_dropped_frames": lane.lost,
        }, **_analytics(lane)))
    for name, reason in facts.failed_to_open.items():
        sections[name] = {"error": reason, "opened": False}
    ok = [s["realtime"]["ok"] for s in sections.values() if "realtime" in s]
    stages = facts.stages
    target_fps = facts.config.pipeline.target_fps or lanes[0].target_fps
    summary = build_summary(sum(lane.captured() for lane in lanes), processed,
                            sum(lane.dropped() + lane.lost for lane in lanes), facts.wall_s, timings, target_fps,
                            dict(facts.engine_health, **dict(_common(facts), **{
                                "sources": sections, "copied_frames": stages.copied_frames,
                                "padded_batch_slots": stages.padded_frames})))
    bad = [name for name, s in sections.items() if not s.get("realtime", {}).get("ok", False)]
    summary["realtime"]["ok"] = bool(ok) and not bad
    summary["realtime"]["rule"] = "every source real-time by its own verdict"
    summary["verdict"] = "all %d sources real-time: %s" % (len(sections), "yes" if not bad else
                                                            "no (%s)" % ", ".join(bad))
    return summary


def write_summary(summary: Dict[str, Any], out_dir: str, reserve: Optional[SpaceReserve]) -> None:
    """summary.json, atomically, into the room kept for it should the disk have filled during the run."""
    path = os.path.join(out_dir, "summary.json")
    try:
        write_json_atomic(path, summary, reserve)
    except OSError as e:
        log.error("could not write %s: %s", path, e)
