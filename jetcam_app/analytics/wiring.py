"""Which sources are tracked and with what: --track, or lines and zones of their own, turn a source's tracker on;
the detector then keeps boxes down to the tracker's low threshold (ByteTrack's second match needs them) while
--score-threshold still decides what is drawn and logged."""

import dataclasses
from typing import Any, Callable, Dict, Optional, Sequence

from ..config import Config, ModelConfig, SourceConfig
from ..errors import ConfigError
from .scene import SourceAnalytics


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


def check_task(config: Config, sources: Sequence[SourceConfig], task: str) -> None:
    if task != "detection" and any_tracked(config, sources):
        raise ConfigError("tracking, lines and zones need a detection model; %s classifies whole images: use "
                          "--model nanodet (or another detector), or leave out --track, --line and --zone"
                          % config.model.name)


def source_analytics(config: Config, source: SourceConfig, name: str, fps: float,
                     on_event: Optional[Callable[[Dict[str, Any]], None]]) -> Optional[SourceAnalytics]:
    """One source's analytics, or None when it is not tracked."""
    if not tracked(config, source):
        return None
    return SourceAnalytics(name, config.tracker, source.lines, source.zones, fps or 30.0,
                           config.model.score_threshold, on_event)
