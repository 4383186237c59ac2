"""Which sources are tracked and with what: --track, or lines and zones of their own, turn a source's tracker on;
the detector then keeps boxes down to the tracker's low threshold (ByteTrack's second match needs them) while
--score-threshold still decides what is drawn and logged."""

import dataclasses
from typing import Any, Callable, Dict, Optional, Sequence

from ..config import Config, ModelConfig, SourceConfig
from ..errors import ConfigError
from .pool import remote_sources, spec_of, worker_count
from .scene import SourceAnalytics
from .track_states import TrackStates


def tracked(config: Config, source: SourceConfig) -> bool:
    return bool(config.tracker.enabled or source.lines or source.zones)


def any_tracked(config: Config, sources: Sequence[SourceConfig]) -> bool:
    return any(tracked(config, s) for s in sources)


def detector_config(config: Config, sources: Sequence[SourceConfig]) -> ModelConfig:
    """The model's config as the adapter needs it: its score threshold lowered to the tracker's low one when any
    source is tracked."""
    model = config.model
    if not any_tracked(config, sources):
        return model
    return dataclasses.replace(model, score_threshold=min(model.score_threshold, config.tracker.track_low_thresh))


def shown_exact(adapter: Any, config: Config) -> Any:
    """The adapter with its device results held exact down to --score-threshold, what is drawn and logged: the
    boxes below it, there for the tracker only, may be the best few hundred candidates (STATIC_TOPK) rather than
    all, where the whole low band would send most frames down the slower dynamic path (measured on the H200:
    64% of NanoDet frames at 0.1, docs/performance.md)."""
    adapter.exact_threshold = max(adapter.config.score_threshold, config.model.score_threshold)
    return adapter


def check_task(config: Config, sources: Sequence[SourceConfig], task: str) -> None:
    if task not in ("detection", "pose") and any_tracked(config, sources):  # a pose is tracked by its extent
        what = {"classification": "classifies whole images", "segmentation": "segments people"}.get(
            task, "is a %s model" % task)
        raise ConfigError("tracking, lines and zones need a detection model; %s %s: use "
                          "--model nanodet (or another detector), or leave out --track, --line and --zone"
                          % (config.model.name, what))


def sources_analytics(config: Config, entries: Sequence[Any], on_event: Optional[Callable[[Dict[str, Any]], None]],
                      cores: int) -> Dict[str, Any]:
    """{name: its analytics} for entries of (name, SourceConfig, fps): SourceAnalytics in this process, or, for
    many tracked sources on a machine with the cores (tracker.workers), pool.RemoteAnalytics in worker processes."""
    tracked_entries = [(name, source, fps) for name, source, fps in entries if tracked(config, source)]
    workers = worker_count(config.tracker.workers, len(tracked_entries), cores)
    if not workers:
        states = TrackStates()  # one for all: the emitter steps a batch's trackers together (scene.process_many)
        return {name: source_analytics(config, source, name, fps, on_event, states) for name, source, fps in entries}
    specs = [spec_of(name, config.tracker, source.lines, source.zones, fps or 30.0, config.model.score_threshold)
             for name, source, fps in tracked_entries]
    out = dict.fromkeys([name for name, _, _ in entries])  # type: Dict[str, Any]
    out.update(remote_sources(specs, workers, config.model.score_threshold, on_event))
    return out


def source_analytics(config: Config, source: SourceConfig, name: str, fps: float,
                     on_event: Optional[Callable[[Dict[str, Any]], None]],
                     states: Optional[TrackStates] = None) -> Optional[SourceAnalytics]:
    """One source's analytics, or None when it is not tracked; `states` shared with the sources batched with it."""
    if not tracked(config, source):
        return None
    return SourceAnalytics(name, config.tracker, source.lines, source.zones, fps or 30.0,
                           config.model.score_threshold, on_event, states)
