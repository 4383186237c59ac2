"""`run.py summary RUN_DIR`: summary.json rebuilt from timing.csv (and predictions.jsonl) of a run that was killed
before it could write one (kill -9, the OOM killer, a pulled cable): the logs are flushed row by row, the summary
only at the end. What the logs cannot tell (the configuration, the camera's own drops after the last row) is left
out, and the summary says it was rebuilt."""
import csv
import logging
import os
from typing import Any, Dict, List, Optional

from ..errors import OutputError
from ..types import FrameTiming
from ..verdict import TimingAccumulator, build_summary
from .diskspace import write_json_atomic

log = logging.getLogger(__name__)
DEFAULT_TARGET_FPS = 30.0
STAGES = ("queue_wait_ms", "pre_ms", "infer_ms", "post_ms", "draw_ms", "sink_ms", "latency_ms")


def _float(value: str) -> Optional[float]:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _rows(path: str) -> List[Dict[str, str]]:
    try:
        with open(path, newline="") as f:
            rows = list(csv.DictReader(f))
    except OSError as e:
        raise OutputError("cannot read %s (%s); give the run folder of a run (it holds timing.csv)" % (path, e)) from e
    # the last row may have been cut by the kill: keep the rows whose every stage parsed
    return [r for r in rows if all(_float(r.get(k)) is not None for k in STAGES)]


def _source_fps(rows: List[Dict[str, str]]) -> float:
    """The source's frame rate from its own timestamps (the verdict's target when the run set none)."""
    ts = [_float(r["source_ts_s"]) for r in rows]
    idx = [int(r["frame_index"]) for r in rows]
    if len(rows) > 1 and ts[-1] is not None and ts[0] is not None and ts[-1] > ts[0] and idx[-1] > idx[0]:
        return (idx[-1] - idx[0]) / (ts[-1] - ts[0])
    return DEFAULT_TARGET_FPS


def _section(rows: List[Dict[str, str]], target_fps: Optional[float]) -> Dict[str, Any]:
    timings = TimingAccumulator()
    for r in rows:
        timings.add(FrameTiming(**{k: float(r[k]) for k in STAGES}))
    t = [_float(r.get("t_s", "")) for r in rows]
    wall_s = max(v for v in t if v is not None) if any(v is not None for v in t) else 0.0
    dropped = int(rows[-1]["dropped_so_far"]) if rows else 0
    fps = target_fps or _source_fps(rows)
    # frames captured but neither logged nor counted as dropped before the kill are unknown: not counted
    return build_summary(len(rows) + dropped, len(rows), dropped, wall_s, timings, round(fps, 3))


def rebuild_summary(run_dir: str, target_fps: Optional[float] = None) -> Dict[str, Any]:
    """Rebuild and write RUN_DIR/summary.json; the summary. OutputError when there is nothing to rebuild from."""
    timing_path = os.path.join(run_dir, "timing.csv")
    rows = _rows(timing_path)
    if not rows:
        raise OutputError("%s has no complete row: nothing to rebuild a summary from" % timing_path)
    by_source = {}  # type: Dict[str, List[Dict[str, str]]]
    for r in rows:
        by_source.setdefault(r.get("source") or "", []).append(r)
    if len(by_source) == 1 and "" in by_source:
        summary = _section(rows, target_fps)
    else:
        sections = {name: _section(own, target_fps) for name, own in by_source.items()}
        summary = _section(rows, target_fps)
        summary["sources"] = sections
        bad = [name for name, s in sections.items() if not s["realtime"]["ok"]]
        summary["realtime"]["ok"] = not bad
        summary["verdict"] = "all %d sources real-time: %s" % (len(sections), "no (%s)" % ", ".join(bad) if bad
                                                                else "yes")
    predictions = os.path.join(run_dir, "predictions.jsonl")
    if os.path.exists(predictions):
        with open(predictions, "rb") as f:
            summary["predictions_lines"] = sum(1 for line in f if line.endswith(b"\n"))
    summary.update({"rebuilt": True, "rebuilt_from": "timing.csv", "stop_reason": "unknown: the run was killed "
                    "before it wrote its summary", "out_dir": run_dir})
    write_json_atomic(os.path.join(run_dir, "summary.json"), summary)
    reserve = os.path.join(run_dir, ".summary.reserve")
    if os.path.exists(reserve):
        os.remove(reserve)  # the room the killed run kept for its summary
    return summary
