"""Frozen configuration: the packaged configs/default.yaml, then a user YAML, then CLI overrides; unknown keys are errors."""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from typing import Any, Dict, Mapping, Optional, Tuple

import yaml

from .errors import ConfigError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_CONFIG = os.path.join(os.path.dirname(os.path.abspath(__file__)), "configs", "default.yaml")
PRECISIONS = ("fp32", "fp16")


@dataclass(frozen=True)
class SourceConfig:
    uri: str = "sample"
    pace: bool = False
    width: int = 1280
    height: int = 720
    fps: float = 30.0
    flip: int = 0
    timeout_s: float = 5.0
    reconnect_attempts: int = 3
    capture: str = "auto"
    gst: Optional[str] = None


@dataclass(frozen=True)
class ModelConfig:
    name: str = "nanodet"
    weights: Optional[str] = None
    random_weights: bool = False
    score_threshold: float = 0.35
    iou_threshold: float = 0.5
    max_detections: int = 100
    topk: int = 5


@dataclass(frozen=True)
class EngineConfig:
    backend: str = "cpu"
    precision: str = "fp32"
    threads: int = 0
    cuda_graph: bool = False
    trt_workspace_mb: int = 1024
    cache_dir: str = "models/cache"


@dataclass(frozen=True)
class PipelineConfig:
    max_frames: int = 0
    queue_size: int = 8
    target_fps: float = 0.0
    draw_threads: int = -1
    in_flight: int = 0


@dataclass(frozen=True)
class OutputConfig:
    out_dir: str = "runs/latest"
    record: Optional[str] = None
    headless: Optional[bool] = None
    save_input: Optional[str] = None
    http_port: int = 0


@dataclass(frozen=True)
class OverlayConfig:
    enabled: bool = True
    hud: bool = True


@dataclass(frozen=True)
class StatsConfig:
    interval_s: float = 1.0


@dataclass(frozen=True)
class Config:
    source: SourceConfig = field(default_factory=SourceConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    engine: EngineConfig = field(default_factory=EngineConfig)
    pipeline: PipelineConfig = field(default_factory=PipelineConfig)
    output: OutputConfig = field(default_factory=OutputConfig)
    overlay: OverlayConfig = field(default_factory=OverlayConfig)
    stats: StatsConfig = field(default_factory=StatsConfig)


_SECTION_TYPES = {
    "source": SourceConfig, "model": ModelConfig, "engine": EngineConfig, "pipeline": PipelineConfig,
    "output": OutputConfig, "overlay": OverlayConfig, "stats": StatsConfig,
}


def _field_types(cls) -> Dict[str, Tuple[type, bool]]:
    """field name -> (base type, optional) read from the defaults, which keeps this Python 3.8-safe."""
    out = {}
    for f in dataclasses.fields(cls):
        annotation = str(f.type)
        optional = annotation.startswith("Optional")
        inner = annotation[len("Optional["):-1] if optional else annotation
        out[f.name] = ({"int": int, "float": float, "bool": bool, "str": str}[inner], optional)
    return out


def _coerce(key: str, value: Any, kind: type, optional: bool) -> Any:
    if value is None or (isinstance(value, str) and value.lower() in ("null", "none", "~") and optional):
        if optional:
            return None
        raise ConfigError("%s must not be empty" % key)
    if kind is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "yes", "1", "on", "false", "no", "0", "off"):
            return value.lower() in ("true", "yes", "1", "on")
        raise ConfigError("%s must be true or false, got %r" % (key, value))
    if isinstance(value, bool):  # YAML `true` is an int to Python; a count or a rate is never a yes/no
        raise ConfigError("%s must be %s, got %r" % (key, kind.__name__, value))
    try:
        if kind is int and isinstance(value, float) and not value.is_integer():
            raise ValueError
        return kind(value)
    except (TypeError, ValueError) as e:
        raise ConfigError("%s must be %s, got %r" % (key, kind.__name__, value)) from e


def _merge(data: Dict[str, Dict[str, Any]], update: Mapping[str, Any], origin: str) -> None:
    if not isinstance(update, Mapping):
        raise ConfigError("%s: the top level must be a mapping of sections (%s)" % (origin, ", ".join(_SECTION_TYPES)))
    for section, values in update.items():
        if section not in _SECTION_TYPES:
            raise ConfigError("%s: unknown section '%s'; valid sections: %s" % (origin, section, ", ".join(_SECTION_TYPES)))
        if values is None:
            continue
        if not isinstance(values, Mapping):
            raise ConfigError("%s: section '%s' must be a mapping" % (origin, section))
        types = _field_types(_SECTION_TYPES[section])
        for key, value in values.items():
            if key not in types:
                raise ConfigError("%s: unknown key '%s.%s'; valid keys: %s" % (origin, section, key, ", ".join(types)))
            kind, optional = types[key]
            data.setdefault(section, {})[key] = _coerce("%s.%s" % (section, key), value, kind, optional)


def _read_yaml(path: str) -> Mapping[str, Any]:
    try:
        with open(path, encoding="utf-8") as f:
            return yaml.safe_load(f) or {}
    except FileNotFoundError as e:
        raise ConfigError("config file not found: %s" % path) from e
    except yaml.YAMLError as e:
        raise ConfigError("config file %s is not valid YAML: %s" % (path, str(e).splitlines()[0])) from e
    except UnicodeDecodeError as e:
        raise ConfigError("config file %s is not UTF-8 text (%s); save it as UTF-8 YAML" % (path, e.reason)) from e
    except OSError as e:  # a folder, no permission, a device
        raise ConfigError("cannot read the config file %s (%s); pass a readable YAML file to --config"
                          % (path, e.strerror or e)) from e


def load_config(path: Optional[str] = None, overrides: Optional[Mapping[str, Any]] = None) -> Config:
    """Defaults < configs/default.yaml < `path` < overrides ({"section.key": value}); then validate."""
    data = {}  # type: Dict[str, Dict[str, Any]]
    if os.path.exists(DEFAULT_CONFIG):
        _merge(data, _read_yaml(DEFAULT_CONFIG), DEFAULT_CONFIG)
    if path:
        _merge(data, _read_yaml(path), path)
    nested = {}  # type: Dict[str, Dict[str, Any]]
    for dotted, value in (overrides or {}).items():
        section, _, key = dotted.partition(".")
        nested.setdefault(section, {})[key] = value
    _merge(data, nested, "command line")
    config = Config(**{name: cls(**data.get(name, {})) for name, cls in _SECTION_TYPES.items()})
    validate(config)
    return config


def validate(config: Config) -> None:
    from .registry import BACKENDS, MODELS

    if config.model.name not in MODELS:
        raise ConfigError("unknown model '%s'; choose one of: %s" % (config.model.name, ", ".join(MODELS.choices())))
    if config.engine.backend not in BACKENDS:
        raise ConfigError("unknown backend '%s'; choose one of: %s" % (config.engine.backend, ", ".join(BACKENDS.choices())))
    if config.engine.precision not in PRECISIONS:
        raise ConfigError("unknown precision '%s'; choose one of: %s" % (config.engine.precision, ", ".join(PRECISIONS)))
    if config.engine.precision == "fp16" and config.engine.backend == "cpu":
        raise ConfigError("fp16 runs on CUDA only; use --precision fp32 with --backend cpu, or --backend cuda")
    if not 0.0 <= config.model.score_threshold <= 1.0:
        raise ConfigError("model.score_threshold must be between 0 and 1, got %s" % config.model.score_threshold)
    _validate_bounds(config)
    if config.pipeline.max_frames < 0 or config.pipeline.queue_size < 1:
        raise ConfigError("pipeline.max_frames must be >= 0 and pipeline.queue_size >= 1")
    if config.pipeline.draw_threads < -1:
        raise ConfigError("pipeline.draw_threads must be -1 (automatic), 0 (no pool) or a thread count")
    if config.pipeline.in_flight < 0:
        raise ConfigError("pipeline.in_flight must be 0 (automatic) or the number of frames in flight on the GPU")
    if config.pipeline.target_fps < 0:
        raise ConfigError("pipeline.target_fps must be >= 0 (0 = the source's fps)")
    if config.stats.interval_s <= 0:
        raise ConfigError("stats.interval_s must be > 0")


# key -> (lowest, highest) accepted; NaN fails every comparison and so is refused too.
BOUNDS = {
    "model.iou_threshold": (0.0, 1.0), "model.topk": (1, 1000), "model.max_detections": (1, 10000),
    "pipeline.queue_size": (1, 1024), "output.http_port": (0, 65535), "source.width": (1, 16384),
    "source.height": (1, 16384), "source.fps": (0.001, 10000.0), "source.timeout_s": (0.001, 86400.0),
    "source.reconnect_attempts": (0, 1000000), "source.flip": (0, 7), "engine.threads": (0, 4096),
    "engine.trt_workspace_mb": (1, 1 << 20),
}


def _validate_bounds(config: Config) -> None:
    for dotted, (low, high) in BOUNDS.items():
        section, _, key = dotted.partition(".")
        value = getattr(getattr(config, section), key)
        if not low <= value <= high:
            raise ConfigError("%s must be between %s and %s, got %s" % (dotted, low, high, value))


def to_dict(config: Config) -> Dict[str, Any]:
    return dataclasses.asdict(config)
