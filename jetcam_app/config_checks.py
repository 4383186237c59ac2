"""The checks of a loaded configuration: ranges (BOUNDS), the batch and source limits, and the values that must name
a registered model, backend or precision. Apart from config.py's parsing so each stays one screen."""

import os
import re
from typing import Any, Sequence

from .errors import ConfigError
from .files import short_value

PRECISIONS = ("fp32", "fp16")


def validate(config: Any) -> None:
    """ConfigError, one line naming the key and the fix, for any value out of range in a loaded config.Config."""
    from .registry import BACKENDS, MODELS

    if config.model.name not in MODELS:
        raise ConfigError("unknown model %s; choose one of: %s, or the path of a .onnx file" % (short_value(config.model.name), ", ".join(MODELS.choices())))
    if config.model.decoder not in ("auto", "yolov8", "yolov5", "end2end", "classify"):
        raise ConfigError("model.decoder must be auto, yolov8, yolov5, end2end or classify, got %s"
                          % short_value(config.model.decoder))
    for source in (config.source,) + tuple(config.sources):
        if source.decode not in ("auto", "gpu", "cpu"):
            raise ConfigError("source.decode must be auto, gpu or cpu, got %s" % short_value(source.decode))
    if config.engine.backend not in BACKENDS:
        raise ConfigError("unknown backend %s; choose one of: %s" % (short_value(config.engine.backend), ", ".join(BACKENDS.choices())))
    if config.engine.precision not in PRECISIONS:
        raise ConfigError("unknown precision %s; choose one of: %s" % (short_value(config.engine.precision), ", ".join(PRECISIONS)))
    check_precision(config.engine.backend, config.engine.precision, BACKENDS.get(config.engine.backend).capabilities.precisions)
    if not 0.0 <= config.model.score_threshold <= 1.0:
        raise ConfigError("model.score_threshold must be between 0 and 1, got %s" % config.model.score_threshold)
    if len(config.sources) > MAX_SOURCES:
        raise ConfigError("sources has %d entries, more than the %d one process runs; split them over several "
                          "processes, each with its own --config" % (len(config.sources), MAX_SOURCES))
    _validate_bounds(config)
    if config.pipeline.max_frames < 0 or config.pipeline.queue_size < 1:
        raise ConfigError("pipeline.max_frames must be >= 0 and pipeline.queue_size >= 1")
    if config.pipeline.draw_threads < -1:
        raise ConfigError("pipeline.draw_threads must be -1 (automatic), 0 (no pool) or a thread count")
    if config.pipeline.in_flight < 0:
        raise ConfigError("pipeline.in_flight must be 0 (automatic) or the number of frames in flight on the GPU")
    if not 0 <= config.pipeline.max_batch <= MAX_BATCH:
        raise ConfigError("pipeline.max_batch must be between 0 (one frame per source) and %d, got %s; pass "
                          "--max-batch %d or less" % (MAX_BATCH, config.pipeline.max_batch, MAX_BATCH))
    if config.pipeline.target_fps < 0:
        raise ConfigError("pipeline.target_fps must be >= 0 (0 = the source's fps)")
    if config.engine.triton_shm not in ("none", "system", "cuda"):
        raise ConfigError("engine.triton_shm must be none, system or cuda, got %r" % (config.engine.triton_shm,))
    if config.engine.triton_timeout_s <= 0:
        raise ConfigError("engine.triton_timeout_s must be > 0 (seconds a Triton request may take)")
    if not config.output.name or os.sep in config.output.name or config.output.name in (".", ".."):
        raise ConfigError("output.name must be a plain folder name (no '%s'), got %s" % (os.sep, short_value(config.output.name)))
    parse_bitrate(config.output.bitrate)
    if not 0 <= config.output.record_segment_s <= 86400:
        raise ConfigError("output.record_segment_s must be 0 (one file) or seconds per segment up to 86400")
    if config.stats.interval_s <= 0:
        raise ConfigError("stats.interval_s must be > 0")
    if config.tracker.track_low_thresh > config.tracker.track_high_thresh:
        raise ConfigError("tracker.track_low_thresh (%s) must not exceed tracker.track_high_thresh (%s)"
                          % (config.tracker.track_low_thresh, config.tracker.track_high_thresh))


def parse_bitrate(text) -> int:
    """--bitrate: 4M, 800k, 2.5M or plain bits per second -> bits per second."""
    match = re.match(r"^\s*(\d+(?:\.\d+)?)\s*([kKmM]?)\s*(?:bit/s|bps|b)?\s*$", str(text))
    if not match:
        raise ConfigError("output.bitrate must be like 4M, 800k or 4000000 (bits per second), got %r" % (text,))
    value = float(match.group(1)) * {"": 1, "k": 1e3, "m": 1e6}[match.group(2).lower()]
    if not 50e3 <= value <= 200e6:
        raise ConfigError("output.bitrate must be between 50k and 200M bits per second, got %r" % (text,))
    return int(value)


def check_precision(backend: str, precision: str, precisions: Sequence[str]) -> None:
    """ConfigError unless `precision` is one the backend declares (its capabilities.precisions)."""
    if precision in precisions:
        return
    if precision == "fp16":
        raise ConfigError("fp16 runs on CUDA only; use --precision fp32 with --backend %s, or --backend cuda" % backend)
    raise ConfigError("--backend %s takes --precision %s; use one of those" % (backend, " or ".join(precisions)))


# key -> (lowest, highest) accepted; NaN fails every comparison and so is refused too.
BOUNDS = {
    "model.iou_threshold": (0.0, 1.0), "model.topk": (1, 1000), "model.max_detections": (1, 10000),
    "pipeline.queue_size": (1, 1024), "output.http_port": (0, 65535), "output.rtsp_out": (0, 65535), "source.width": (1, 16384),
    "source.height": (1, 16384), "source.fps": (0.001, 10000.0), "source.timeout_s": (0.001, 86400.0),
    "source.reconnect_attempts": (0, 1000000), "source.flip": (0, 7), "source.decode_threads": (0, 64),
    "engine.threads": (0, 4096), "engine.trt_workspace_mb": (1, 1 << 20),
    "tracker.track_high_thresh": (0.0, 1.0), "tracker.track_low_thresh": (0.0, 1.0),
    "tracker.new_track_thresh": (0.0, 1.0), "tracker.match_thresh": (0.0, 1.0), "tracker.track_buffer": (0, 100000),
    "tracker.probation_frames": (1, 1000), "tracker.trail_frames": (0, 1000),
    "tracker.workers": (-1, 64),
}


# A batch holds at most one frame per source and one H200 keeps a few dozen paced 720p sources real-time
# (docs/performance.md): 64 leaves room, and a larger batch only costs device memory (engines are built for it).
MAX_BATCH = 64
# Each source holds a capture thread, a lane and up to 64 MB of page-locked frame buffers (fused_stages.py): 256 is
# already 16 GB pinned, and more sources than any one device serves in real time.
MAX_SOURCES = 256


def _check_bounds(section: str, values: Any, name: str) -> None:
    """BOUNDS' keys of `section` on `values`, named `name`.KEY in the error (`sources[3].fps`)."""
    for dotted, (low, high) in BOUNDS.items():
        prefix, _, key = dotted.partition(".")
        if prefix == section and not low <= getattr(values, key) <= high:
            raise ConfigError("%s.%s must be between %s and %s, got %s" % (name, key, low, high, getattr(values, key)))


def _validate_bounds(config: Any) -> None:
    for section in sorted({dotted.partition(".")[0] for dotted in BOUNDS} - {"source"}):
        _check_bounds(section, getattr(config, section), section)
    for i, source in enumerate((config.source,) + config.sources):  # one check for `source:` and every entry
        _check_bounds("source", source, "sources[%d]" % (i - 1) if i else "source")
