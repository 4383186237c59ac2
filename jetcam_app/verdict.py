"""Percentiles, the rolling HUD numbers, the real-time verdict and the run summary."""

import array
import collections
import math
from dataclasses import dataclass
from typing import Any, Deque, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

from .types import FrameTiming

# Series kept for the summary, in the order they are printed.
SERIES = ("queue_wait_ms", "pre_ms", "infer_ms", "post_ms", "draw_ms", "sink_ms", "service_ms", "latency_ms")
SUSTAINED_SHARE = 0.95  # sustained fps must reach 95% of the target


def service_ms(timing: FrameTiming) -> float:
    """The main thread's work on one frame: pre + infer + post + draw + sink (queue wait excluded)."""
    return timing.pre_ms + timing.infer_ms + timing.post_ms + timing.draw_ms + timing.sink_ms


class TimingAccumulator:
    """Compact per-stage series (array of doubles) for the summary's percentiles; no per-frame objects kept."""

    def __init__(self) -> None:
        self.series = {name: array.array("d") for name in SERIES}  # type: Dict[str, array.array]

    def add(self, timing: FrameTiming) -> None:
        for name in SERIES:
            value = service_ms(timing) if name == "service_ms" else getattr(timing, name)
            self.series[name].append(float(value))

    def __len__(self) -> int:
        return len(self.series["service_ms"])



def _quantile(ordered: Sequence[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default), on an already sorted sequence."""
    pos = (len(ordered) - 1) * q
    lo = int(math.floor(pos))
    hi = min(lo + 1, len(ordered) - 1)
    frac = pos - lo
    if frac == 0.0 or ordered[lo] == ordered[hi]:
        return float(ordered[lo])
    return float(ordered[lo] + (ordered[hi] - ordered[lo]) * frac)


def percentiles(values: Iterable[float]) -> Dict[str, Optional[float]]:
    """p50 / p90 / p95 / p99 / max / mean / count; empty input gives None for every statistic and count 0."""
    ordered = sorted(float(v) for v in values)
    if not ordered:
        return {"p50": None, "p90": None, "p95": None, "p99": None, "max": None, "mean": None, "count": 0}
    return {
        "p50": _quantile(ordered, 0.50), "p90": _quantile(ordered, 0.90), "p95": _quantile(ordered, 0.95),
        "p99": _quantile(ordered, 0.99), "max": ordered[-1], "mean": math.fsum(ordered) / len(ordered),
        "count": len(ordered),
    }


@dataclass
class Verdict:
    ok: bool
    target_fps: float
    budget_ms: Optional[float]
    p99_ms: Optional[float]
    share_over_budget: Optional[float]
    sustained_fps: Optional[float]
    text: str


def _fps_text(fps: float) -> str:
    return "%g" % round(fps, 2)


def realtime_verdict(service_ms: Sequence[float], target_fps: float, wall_s: float, frames: int) -> Verdict:
    """Real-time iff p99 service time <= the frame budget AND frames / wall_s >= 95% of the target."""
    head = "real-time at %s fps" % _fps_text(target_fps) if target_fps > 0 else "real-time"
    values = list(service_ms)
    if target_fps <= 0:
        return Verdict(False, target_fps, None, None, None, None,
                       "%s: no (no target frame rate: the source has none; pass --target-fps)" % head)
    budget_ms = 1000.0 / target_fps
    if not values or frames <= 0:
        return Verdict(False, target_fps, budget_ms, None, None, None, "%s: no (no frames were processed)" % head)
    p99_ms = percentiles(values)["p99"]
    share_over = sum(1 for v in values if v > budget_ms) / float(len(values))
    sustained_fps = frames / wall_s if wall_s > 0 else None
    needed_fps = SUSTAINED_SHARE * target_fps
    fits = p99_ms <= budget_ms
    keeps_up = sustained_fps is not None and sustained_fps >= needed_fps
    if fits and keeps_up:
        text = "%s: yes (p99 %.1f ms %s %.1f ms budget, %.1f fps sustained)" % (
            head, p99_ms, "<" if p99_ms < budget_ms else "=", budget_ms, sustained_fps)
    else:
        reasons = []  # type: List[str]
        if not fits:
            reasons.append("p99 %.1f ms > %.1f ms budget; %.0f%% of frames over" % (p99_ms, budget_ms, 100 * share_over))
        if sustained_fps is None:
            reasons.append("no wall time measured, so no sustained fps")
        elif not keeps_up:
            reasons.append("%.1f fps sustained < %.1f fps needed (95%% of target)" % (sustained_fps, needed_fps))
        text = "%s: no (%s)" % (head, "; ".join(reasons))
    return Verdict(fits and keeps_up, target_fps, budget_ms, p99_ms, share_over, sustained_fps, text)


class RollingStats:
    """FPS over the last `window_s` and a rolling p95 for the HUD; memory bounded by `max_samples`.

    p95 uses at least the last `min_samples` frames even if they are older than the window, so a slow
    stream (a few fps) still gets a meaningful percentile rather than the max of two samples. Both are asked
    for on every frame: fps is O(1) while the samples all lie in the window (add() keeps it so at any rate
    above min_samples a window), and p95 is sorted again only once `refresh_s` of stream time has passed (at
    600 fps a sort of the window on every frame costs more than the frame's own host work)."""

    def __init__(self, window_s: float = 1.0, min_samples: int = 30, max_samples: int = 2048,
                 refresh_s: float = 0.1):
        self.window_s = float(window_s)
        self.min_samples = int(min_samples)
        self.refresh_s = float(refresh_s)
        self._samples = collections.deque(maxlen=max_samples)  # type: Deque[Tuple[float, float]]
        self._p95 = None  # type: Optional[Tuple[float, float]]  # (time of the newest sample used, p95)

    def add(self, t_now: float, service_ms: float) -> None:
        self._samples.append((float(t_now), float(service_ms)))
        horizon = t_now - self.window_s
        while len(self._samples) > self.min_samples and self._samples[0][0] < horizon:
            self._samples.popleft()

    def fps(self, t_now: Optional[float] = None) -> float:
        """Frames per second over the window ending at the last frame (or at `t_now`, so a stall decays to 0)."""
        samples = self._samples
        if not samples:
            return 0.0
        start = (samples[-1][0] if t_now is None else float(t_now)) - self.window_s
        if samples[0][0] >= start:  # all in the window: the common case, no scan
            count, first = len(samples), samples[0][0]
        else:
            recent = [s[0] for s in samples if s[0] >= start]
            count, first = len(recent), (recent[0] if recent else 0.0)
        if count < 2:
            if t_now is not None or len(samples) < 2:
                return 0.0
            # slower than one frame a window (0.4 fps): the rate between the last two frames
            count, first = 2, samples[-2][0]
        span_s = samples[-1][0] - first
        return (count - 1) / span_s if span_s > 0 else 0.0

    def p95_ms(self) -> Optional[float]:
        if not self._samples:
            return None
        newest = self._samples[-1][0]
        if self._p95 is None or not 0.0 <= newest - self._p95[0] < self.refresh_s:
            self._p95 = (newest, _quantile(sorted(s[1] for s in self._samples), 0.95))
        return self._p95[1]


def _rounded(stats: Mapping[str, Optional[float]]) -> Dict[str, Any]:
    return {k: (round(v, 3) if isinstance(v, float) else v) for k, v in stats.items()}


def build_summary(frames_captured: int, frames_processed: int, frames_dropped: int, wall_s: float,
                  timings: Union[TimingAccumulator, Sequence[FrameTiming]], target_fps: float,
                  extra: Optional[Mapping[str, Any]] = None) -> Dict[str, Any]:
    """The content of summary.json. `timings` is TimingLog.accumulated (or a list of FrameTiming);
    `extra` (model, backend, precision, source, stats provider, ...) is merged in under its own keys."""
    if not isinstance(timings, TimingAccumulator):
        acc = TimingAccumulator()
        for t in timings:
            acc.add(t)
        timings = acc
    series = timings.series
    verdict = realtime_verdict(series["service_ms"], target_fps, wall_s, frames_processed)
    latency_over = None  # type: Optional[float]
    if verdict.budget_ms is not None and len(series["latency_ms"]):
        latency_over = sum(1 for v in series["latency_ms"] if v > verdict.budget_ms) / float(len(series["latency_ms"]))
    summary = {
        "frames": {"captured": int(frames_captured), "processed": int(frames_processed), "dropped": int(frames_dropped)},
        "wall_s": round(wall_s, 3),
        "fps": round(frames_processed / wall_s, 3) if wall_s > 0 else None,
        "target_fps": target_fps,
        "budget_ms": round(verdict.budget_ms, 3) if verdict.budget_ms is not None else None,
        "share_over_budget": round(verdict.share_over_budget, 4) if verdict.share_over_budget is not None else None,
        "latency_share_over_budget": round(latency_over, 4) if latency_over is not None else None,
        "stages_ms": {name: _rounded(percentiles(series[name])) for name in SERIES},
        "realtime": {
            "ok": verdict.ok,
            "p99_service_ms": round(verdict.p99_ms, 3) if verdict.p99_ms is not None else None,
            "sustained_fps": round(verdict.sustained_fps, 3) if verdict.sustained_fps is not None else None,
            "rule": "p99 of pre+infer+post+draw+sink <= 1000/target_fps and processed/wall >= 95% of target_fps",
        },
        "verdict": verdict.text,
    }  # type: Dict[str, Any]
    for key, value in (extra or {}).items():
        summary[key] = value
    return summary


def _ms(value: Optional[float]) -> str:
    return "-" if value is None else "%.1f" % value


def format_summary(summary: Mapping[str, Any]) -> str:
    """A few lines for the terminal at exit."""
    frames = summary["frames"]
    stages = summary["stages_ms"]
    fps = summary.get("fps")
    lines = [
        "frames: %d captured, %d processed, %d dropped in %.1f s (%s fps)" % (
            frames["captured"], frames["processed"], frames["dropped"], summary["wall_s"],
            "-" if fps is None else "%.1f" % fps),
        "per stage p50/p99 ms: " + "  ".join(
            "%s %s/%s" % (name[:-3], _ms(stages[name]["p50"]), _ms(stages[name]["p99"]))
            for name in ("pre_ms", "infer_ms", "post_ms", "draw_ms", "sink_ms", "service_ms")),
        "capture-to-result latency ms: p50 %s  p90 %s  p99 %s  max %s" % tuple(
            _ms(stages["latency_ms"][k]) for k in ("p50", "p90", "p99", "max")),
        summary["verdict"],
    ]
    for name, section in sorted((summary.get("sources") or {}).items()):  # several sources: one line each
        if "frames" not in section:
            lines.append("  %s: did not open (%s)" % (name, section.get("error")))
            continue
        lat = section["stages_ms"]["latency_ms"]
        lines.append("  %s: %d processed, %d dropped, %s fps, latency p99 %s ms; %s" % (
            name, section["frames"]["processed"], section["frames"]["dropped"],
            "-" if section.get("fps") is None else "%.1f" % section["fps"], _ms(lat["p99"]), section["verdict"]))
    return "\n".join(lines)
